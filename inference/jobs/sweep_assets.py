"""Storage hygiene beside the reaper: files of expired tasks, inputs nobody needs any more, uploads that no publish
references (a lost attempt, a crash between upload and commit), and work folders that killed workers left behind."""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import or_, select

from app.core.clock import utcnow
from app.tasks.models import Task, TaskStatus
from inference.jobs.generate_model import JobContext

log = logging.getLogger(__name__)
BATCH = 500


def _stale_work_dirs(root: Path, older_than_s: float) -> list[Path]:
    work = root / ".work"
    cutoff = time.time() - older_than_s
    return [p for p in work.iterdir() if p.stat().st_mtime < cutoff] if work.is_dir() else []


async def sweep_assets(job: JobContext, now: datetime | None = None) -> dict[str, int]:
    """Delete the files of tasks past `expires_at` (their signed URLs have expired too) or FAILED, stale inputs,
    unreferenced uploads older than a job can run, and stale work dirs.

    Files of ids that are not in the database are left alone: a delete removes its own files, and the API keeps
    sample files there.
    """
    now = now or utcnow()
    store = job.store
    ids = await asyncio.to_thread(store.task_ids)
    expired: list[uuid.UUID] = []
    for start in range(0, len(ids), BATCH):
        async with job.sessionmaker() as session:
            # FAILED tasks never own files; files of one are left from a commit that failed after the publish.
            rows = await session.execute(
                select(Task.id).where(
                    Task.id.in_(ids[start : start + BATCH]),
                    or_(Task.expires_at < now, Task.status == TaskStatus.FAILED.value),
                )
            )
            expired += list(rows.scalars())
    for task_id in expired:
        await asyncio.to_thread(store.delete, task_id)
    inputs = await _sweep_inputs(job, now)
    # Older than any attempt can run: an upload that young may belong to an attempt about to commit.
    horizon = now - timedelta(seconds=job.settings.job_timeout_s + 3600)
    unreferenced = await asyncio.to_thread(store.sweep_unreferenced, horizon)
    stale = await asyncio.to_thread(_stale_work_dirs, store.root, job.settings.job_timeout_s + 3600)
    for path in stale:
        await asyncio.to_thread(shutil.rmtree, path, True)
    if expired or stale or inputs or unreferenced:
        log.info("swept %d expired or failed tasks' files, %d tasks' inputs, %d unreferenced uploads and %d stale "
                 "work folders", len(expired), inputs, unreferenced, len(stale))  # fmt: skip
    return {"tasks": len(expired), "work": len(stale), "inputs": inputs, "unreferenced": unreferenced}


async def _sweep_inputs(job: JobContext, now: datetime) -> int:
    """Uploaded inputs are needed only until their task finishes: remove those of finished tasks, and those of tasks
    that do not exist and are older than an hour (a create whose transaction failed; a younger one may be a create
    still in flight)."""
    stored = await asyncio.to_thread(job.store.input_ids)
    ids = list(stored)
    finished = (TaskStatus.SUCCEEDED.value, TaskStatus.FAILED.value, TaskStatus.CANCELED.value)
    doomed: list[uuid.UUID] = []
    cutoff = now.timestamp() - 3600
    for start in range(0, len(ids), BATCH):
        batch = ids[start : start + BATCH]
        async with job.sessionmaker() as session:
            rows = dict((await session.execute(select(Task.id, Task.status).where(Task.id.in_(batch)))).all())
        for task_id in batch:
            status = rows.get(task_id)
            if status in finished or (status is None and stored[task_id] < cutoff):
                doomed.append(task_id)
    for task_id in doomed:
        await asyncio.to_thread(job.store.delete_inputs, task_id)
    return len(doomed)
