"""The reaper cron: rebuild the queue from Postgres, retry tasks whose worker died, fail overdue ones."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import timedelta
from typing import Any

from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix, job_key_prefix

from app.core import metrics
from app.core.clock import utcnow
from app.core.queue import enqueue_task
from app.tasks import service as task_service
from app.tasks.models import Task, TaskStatus
from app.tasks.repository import TaskRepository
from inference.jobs.generate_model import LOST_WORKER, TIMED_OUT, JobContext
from inference.jobs.index_assets import index_missing
from inference.jobs.sweep_assets import sweep_assets

log = logging.getLogger(__name__)

SWEEP_INTERVAL_S = 600.0


async def reap_tasks(ctx: dict[str, Any]) -> dict[str, int]:
    """One pass; every step is a compare-and-set, so several workers reaping at once do no harm."""
    job: JobContext = ctx["job"]
    redis: ArqRedis = ctx["redis"]
    settings = job.settings
    now = utcnow()
    counts = {"requeued": 0, "failed": 0, "enqueued": 0}
    async with job.sessionmaker() as session:
        repo = TaskRepository(session)
        stale = await repo.unfinished(
            TaskStatus.IN_PROGRESS.value, older_than=now - timedelta(seconds=settings.heartbeat_stale_s)
        )
        overdue = await repo.past_deadline(now)
    for task in overdue:
        async with job.sessionmaker() as session, session.begin():
            if await task_service.fail(session, task_id=task.id, error=TIMED_OUT, attempt=task.attempts):
                counts["failed"] += 1
                metrics.task_finished(task.type, "FAILED")
    requeued = []
    for task in stale:
        async with job.sessionmaker() as session, session.begin():
            if task.attempts >= settings.max_attempts:
                done = await task_service.fail(session, task_id=task.id, error=LOST_WORKER, attempt=task.attempts)
                counts["failed"] += done is not None
                if done is not None:
                    metrics.task_finished(task.type, "FAILED")
            else:
                done = await task_service.requeue(session, task_id=task.id, attempt=task.attempts)
                if done is not None:  # not one the deadline pass just failed, nor one that moved on
                    requeued.append(done)
                    counts["requeued"] += 1
    async with job.sessionmaker() as session:
        pending = await TaskRepository(session).unfinished(
            TaskStatus.PENDING.value, older_than=now - timedelta(seconds=settings.pending_requeue_s)
        )
    for task in pending + requeued:
        counts["enqueued"] += await _ensure_queued(redis, settings.queue_name, task)
    async with job.sessionmaker() as session, session.begin():
        await TaskRepository(session).purge_idempotency(now - task_service.IDEMPOTENCY_WINDOW)
    if any(counts.values()):
        log.info("reaper: %s", counts)
    return counts


async def _ensure_queued(redis: ArqRedis, base: str, task: Task) -> int:
    """Make sure a PENDING task's job is runnable: clear a dead worker's lock, enqueue if Redis lost it."""
    job_id = str(task.id)
    # The task is PENDING, so no live attempt holds it; a claim is a compare-and-set, so a race is harmless.
    await redis.delete(in_progress_key_prefix + job_id)
    if await redis.exists(job_key_prefix + job_id):
        return 0
    # At its original queue position: a task that lost its place (Redis flushed, worker died) goes back ahead.
    return int(await enqueue_task(redis, base, task.id, task.pool, task.queued_at) is not None)


async def run_reaper(ctx: dict[str, Any], stop: asyncio.Event) -> None:
    """Reap every REAPER_INTERVAL_S beside the job slots (a long job must not delay recovery), one worker at a time.

    A Redis lock (SET NX with expiry) elects the worker that reaps in each interval; the passes themselves are
    compare-and-set, so a lost lock costs only duplicate work.
    """
    job: JobContext = ctx["job"]
    redis: ArqRedis = ctx["redis"]
    interval = max(1.0, float(job.settings.reaper_interval_s))
    lock = f"{job.settings.queue_name}:reaper-lock"
    next_sweep = 0.0
    while not stop.is_set():
        try:
            if await redis.set(lock, "1", nx=True, px=int(interval * 900)):
                await reap_tasks(ctx)
                if time.monotonic() >= next_sweep:
                    await sweep_assets(job)
                    await index_missing(job)
                    next_sweep = time.monotonic() + SWEEP_INTERVAL_S
        except Exception:  # the next pass retries; a reaper that dies would leave tasks stuck
            log.exception("reaper pass failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
