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
    stale = await asyncio.to_thread(_stale_work_dirs, root, job.settings.job_timeout_s + 3600)
    for path in stale:
        await asyncio.to_thread(shutil.rmtree, path, True)
    if expired or stale:
        log.info("swept %d expired or failed task folders and %d stale work folders", len(expired), len(stale))
    return {"tasks": len(expired), "work": len(stale)}
