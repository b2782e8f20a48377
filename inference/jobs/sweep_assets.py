"""Disk hygiene beside the reaper: files of expired tasks, and work folders that killed workers left behind."""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
import uuid
from datetime import datetime
from pathlib import Path

from sqlalchemy import or_, select

from app.core.clock import utcnow
from app.tasks.models import Task, TaskStatus
from inference.jobs.generate_model import JobContext

log = logging.getLogger(__name__)
BATCH = 500


def _task_dirs(root: Path) -> list[uuid.UUID]:
    ids = []
    for entry in root.iterdir() if root.is_dir() else ():
        try:
            ids.append(uuid.UUID(entry.name))
        except ValueError:
            continue
    return ids


def _stale_work_dirs(root: Path, older_than_s: float) -> list[Path]:
    work = root / ".work"
    cutoff = time.time() - older_than_s
    return [p for p in work.iterdir() if p.stat().st_mtime < cutoff] if work.is_dir() else []


async def sweep_assets(job: JobContext, now: datetime | None = None) -> dict[str, int]:
    """Delete the folders of tasks past `expires_at` (their signed URLs have expired too) or FAILED, and stale work
    dirs.

    Folders of tasks that are not in the database are left alone: a delete removes its own files, and the API
    keeps sample folders there.
    """
    now = now or utcnow()
    root = job.store.root
    ids = await asyncio.to_thread(_task_dirs, root)
    expired: list[uuid.UUID] = []
    for start in range(0, len(ids), BATCH):
        async with job.sessionmaker() as session:
            # FAILED tasks never own files; a folder of one is left from a commit that failed after the move.
            rows = await session.execute(
                select(Task.id).where(
                    Task.id.in_(ids[start : start + BATCH]),
                    or_(Task.expires_at < now, Task.status == TaskStatus.FAILED.value),
                )
            )
            expired += list(rows.scalars())
    for task_id in expired:
        await asyncio.to_thread(job.store.delete, task_id)
    inputs = await _sweep_inputs(job)
    stale = await asyncio.to_thread(_stale_work_dirs, root, job.settings.job_timeout_s + 3600)
    for path in stale:
        await asyncio.to_thread(shutil.rmtree, path, True)
    if expired or stale or inputs:
        log.info("swept %d expired or failed task folders, %d input folders and %d stale work folders", len(expired),
                 inputs, len(stale))  # fmt: skip
    return {"tasks": len(expired), "work": len(stale), "inputs": inputs}


async def _sweep_inputs(job: JobContext) -> int:
    """Uploaded inputs are needed only until their task finishes: remove those of finished tasks, and those of tasks
    that do not exist and are older than an hour (a create whose transaction failed; a younger one may be a create
    still in flight)."""
    folder = job.store.root / ".inputs"
    ids = await asyncio.to_thread(_task_dirs, folder)
    finished = (TaskStatus.SUCCEEDED.value, TaskStatus.FAILED.value, TaskStatus.CANCELED.value)
    doomed: list[uuid.UUID] = []
    cutoff = time.time() - 3600
    for start in range(0, len(ids), BATCH):
        batch = ids[start : start + BATCH]
        async with job.sessionmaker() as session:
            rows = dict((await session.execute(select(Task.id, Task.status).where(Task.id.in_(batch)))).all())
        for task_id in batch:
            status = rows.get(task_id)
            if status in finished or (status is None and _mtime(folder / str(task_id)) < cutoff):
                doomed.append(task_id)
    for task_id in doomed:
        await asyncio.to_thread(shutil.rmtree, job.store.inputs_dir(task_id), True)
    return len(doomed)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
