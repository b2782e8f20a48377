"""The generation job: claim the task, run its model runner and the mesh pipeline, publish, finish."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

from app.core import metrics
from app.core.assets import AssetStore, Staged
from app.core.clock import utcnow
from app.tasks import service as task_service
from app.tasks.kinds import OutputShape, shape_of
from app.tasks.models import Task, TaskStatus
from app.tasks.repository import TaskRepository
from inference.jobs.context import LOST_WORKER, OUT_OF_MEMORY, TIMED_OUT, InvalidInput, JobContext, task_error
from inference.jobs.index_assets import index_one
from inference.jobs.observe import JobObserver, bind_job
from inference.jobs.progress import ProgressReporter, TaskGone
from inference.jobs.steps import STEPS
from inference.runtime import OutOfGpuMemory

log = logging.getLogger(__name__)
_PUBLISHER = ThreadPoolExecutor(max_workers=2, thread_name_prefix="publish")
__all__ = ["LOST_WORKER", "TIMED_OUT", "InvalidInput", "JobContext", "generate_model", "task_error"]


async def generate_model(ctx: dict[str, Any], task_id: str) -> str:
    """Run one task to SUCCEEDED or FAILED. Safe to run twice: a finished or foreign-held task is skipped."""
    job: JobContext = ctx["job"]
    tid = uuid.UUID(task_id)
    bind_job(task_id)
    async with job.sessionmaker() as session, session.begin():
        task = await task_service.claim(
            session, task_id=tid, job_timeout_s=job.settings.job_timeout_s,
            heartbeat_stale_s=job.settings.heartbeat_stale_s,
        )  # fmt: skip
    if task is None:
        return "skipped"
    if task.attempts > job.settings.max_attempts:
        await _fail(job, task, LOST_WORKER)
        return "failed"
    work_dir = Path(tempfile.mkdtemp(prefix=f"{tid}-", dir=_work_root(job.store)))
    observed = JobObserver(ctx.get("pool", "default"), task)
    try:
        async with ProgressReporter(
            job.sessionmaker, tid, task.attempts, heartbeat_s=job.settings.heartbeat_interval_s
        ) as reporter:
            result, files = await _produce(job, task, work_dir, reporter)
        observed.stage("step")
        if not await _finish(job, task, result, work_dir, files):
            return "superseded"
        observed.stage("publish")
        observed.succeeded()
        await index_one(job, task)
        return "succeeded"
    except InvalidInput as exc:
        await _fail(job, task, task_error(str(exc), "invalid_input", exc.code))
        return "failed"
    except TaskGone:
        log.info("task %s was deleted or taken over; stopping attempt %s", tid, task.attempts)
        return "abandoned"
    except asyncio.CancelledError:
        # arq cancels on its timeout and on worker shutdown: fail the first, hand the second back to the queue.
        # The runner's thread cannot be cancelled; its next progress call raises TaskGone (the reporter is lost).
        await asyncio.shield(_release(job, task))
        raise
    except OutOfGpuMemory:  # already retried once after unloading idle models (inference.runtime)
        log.exception("task %s ran out of GPU memory", tid)
        await _fail(job, task, OUT_OF_MEMORY)
        return "failed"
    except Exception:
        log.exception("task %s failed", tid)
        what = _WHAT.get(task.type) or ("images" if shape_of(task.type) is OutputShape.IMAGES else "model")
        await _fail(job, task, task_error(f"Failed to generate the {what}. Please retry."))
        return "failed"
    finally:
        observed.stop()
        shutil.rmtree(work_dir, ignore_errors=True)


# What a failed task of these types says it could not make ("Failed to generate the ...").
_WHAT = {"rig": "rig", "animate": "animation", "text-to-motion": "motion", "talking-head": "video"}


def _work_root(store: AssetStore) -> Path:
    # Inside the asset root, so publishing is a rename on one filesystem.
    root = store.root / ".work"
    root.mkdir(parents=True, exist_ok=True)
    return root


async def _produce(
    job: JobContext, task: Task, work_dir: Path, reporter: ProgressReporter
) -> tuple[dict[str, Any], list[str]]:
    step = STEPS.get(task.type)
    if step is None:
        raise RuntimeError(f"no step for task type {task.type!r}")
    result = await step(job, task, work_dir, reporter)
    return dict(result.outputs), result.files


async def _finish(job: JobContext, task: Task, outputs: dict[str, Any], work_dir: Path, files: list[str]) -> bool:
    """Mark the task SUCCEEDED and publish its files as one step; False when this attempt no longer owns it.

    The files are staged first, out of sight (the local store gathers them in the work dir; the S3 store uploads
    them as a new generation that nothing references), and made the task's files (a rename; one manifest write)
    only while the compare-and-set UPDATE holds the task's row lock: an attempt that lost the task (a zombie whose
    heartbeat went stale, or one whose task was deleted) fails the compare, never makes its files live and discards
    its stage, and a DELETE, which locks the row first, waits for the commit and then removes everything. A crash
    between the two steps leaves only an unreferenced stage, which the asset sweep removes.
    The step runs to its end even when the job is cancelled meanwhile (arq's timeout, a shutdown): the caller
    deletes `work_dir` afterwards, and a move or upload cut in half would leave a partial publish.
    """
    step = asyncio.ensure_future(_publish_and_commit(job, task, outputs, work_dir, files))
    try:
        return await asyncio.shield(step)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await step
        raise


async def _publish_and_commit(
    job: JobContext, task: Task, outputs: dict[str, Any], work_dir: Path, files: list[str]
) -> bool:
    loop = asyncio.get_running_loop()
    # Its own threads: the shared pool may be busy with runner threads, and the commit holds the row lock.
    staged = await loop.run_in_executor(_PUBLISHER, job.store.stage, task.id, work_dir, files)
    published = False
    try:
        async with job.sessionmaker() as session, session.begin():
            done = await task_service.succeed(
                session, task_id=task.id, attempt=task.attempts, outputs=outputs,
                retention_s=job.settings.asset_retention_s,
            )  # fmt: skip
            if done is not None:
                await loop.run_in_executor(_PUBLISHER, job.store.commit, staged)
                published = True
    except Exception:
        if published:  # live, but the commit failed: files without a SUCCEEDED task must not stay
            await _remove_unless_succeeded(job, task.id)
        raise
    finally:
        if not published:  # a lost compare-and-set (or a failure before the commit): its stage must not stay
            await _discard(job, staged)
    return done is not None


async def _discard(job: JobContext, staged: Staged) -> None:
    try:
        await asyncio.to_thread(job.store.discard, staged)
    except Exception:  # the sweep removes unreferenced stages too
        log.exception("could not discard the staged files of task %s", staged.task_id)


async def _remove_unless_succeeded(job: JobContext, task_id: uuid.UUID) -> None:
    try:
        async with job.sessionmaker() as session:
            row = await TaskRepository(session).get(task_id)
        if row is None or row.status != TaskStatus.SUCCEEDED.value:
            await asyncio.to_thread(job.store.delete, task_id)
    except Exception:  # the sweeper removes folders of FAILED tasks too
        log.exception("could not clean up the files of task %s after a failed commit", task_id)


async def _release(job: JobContext, task: Task) -> None:
    failed = None
    async with job.sessionmaker() as session, session.begin():
        if task.deadline_at is not None and utcnow() >= task.deadline_at - timedelta(seconds=1):
            failed = await task_service.fail(session, task_id=task.id, error=TIMED_OUT, attempt=task.attempts)
        else:  # a shutdown is not the task's fault: give the attempt back
            await task_service.requeue(session, task_id=task.id, attempt=task.attempts, release=True)
    if failed is not None:
        metrics.task_finished(task.type, "FAILED")


async def _fail(job: JobContext, task: Task, error: dict[str, Any]) -> None:
    async with job.sessionmaker() as session, session.begin():
        failed = await task_service.fail(session, task_id=task.id, error=error, attempt=task.attempts)
    if failed is not None:  # counted after the commit, and once: another attempt may have finished it
        metrics.task_finished(task.type, "FAILED")
