"""A job's metrics and log context: which task it works for, how long each stage took, how it ended."""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from app.core import logs, metrics
from app.core.clock import utcnow
from app.tasks.models import Task

log = logging.getLogger(__name__)
_current: contextvars.ContextVar[JobObserver | None] = contextvars.ContextVar("meshfoundry_job", default=None)


def bind_job(task_id: str) -> None:
    """Log records of this job carry its task id. arq runs each job in its own asyncio task, so the binding ends
    with the job."""
    logs.bind(logs.LogContext(task_id=task_id))


class JobObserver:
    """From the claim to the end of one attempt: the running-jobs gauge, the time the task waited (first attempt
    only), and the stage durations in between."""

    def __init__(self, pool: str, task: Task) -> None:
        self.pool = pool
        self.task_type = task.type
        logs.set_account(task.account_id)
        metrics.JOBS_RUNNING.labels(pool).inc()
        self._running = True
        if task.attempts == 1 and task.created_at is not None:
            metrics.observe_stage(task.type, "queue", (utcnow() - task.created_at).total_seconds())
        self._start = self._mark = time.perf_counter()
        _current.set(self)

    def stage(self, name: str) -> None:
        """Observe the time since the previous stage (or the claim) as `name`."""
        now = time.perf_counter()
        metrics.observe_stage(self.task_type, name, now - self._mark)
        self._mark = now

    def succeeded(self) -> None:
        seconds = time.perf_counter() - self._start
        metrics.task_finished(self.task_type, "SUCCEEDED")
        metrics.observe_stage(self.task_type, "total", seconds)
        log.info("%s task SUCCEEDED in %.2fs", self.task_type, seconds)  # the ids come from the job's context

    def stop(self) -> None:
        if self._running:
            self._running = False
            metrics.JOBS_RUNNING.labels(self.pool).dec()


@contextmanager
def timed(stage: str) -> Iterator[None]:
    """Observe the block as `stage` of the current job's task type, when it completes (outside a job: nothing)."""
    observer = _current.get()
    start = time.perf_counter()
    yield
    if observer is not None:
        metrics.observe_stage(observer.task_type, stage, time.perf_counter() - start)


def in_context(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` to run in an executor thread with this job's context (its log records keep the task id)."""
    context = contextvars.copy_context()
    return lambda *args: context.run(fn, *args)
