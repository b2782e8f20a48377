"""Progress and heartbeats of a running job, written to the task row (with NOTIFY) from the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.tasks import service as task_service

log = logging.getLogger(__name__)


class TaskGone(Exception):
    """The task was deleted or taken over by another attempt: stop working on it."""


class ProgressReporter:
    """Thread-safe progress sink for runners; writes at most every `min_interval_s`, plus heartbeats."""

    def __init__(
        self,
        maker: async_sessionmaker[AsyncSession],
        task_id: uuid.UUID,
        attempt: int,
        *,
        heartbeat_s: float,
        min_interval_s: float = 0.25,
    ) -> None:
        self.maker = maker
        self.task_id = task_id
        self.attempt = attempt
        self.heartbeat_s = heartbeat_s
        self.min_interval_s = min_interval_s
        self.lost = False
        self._value = 0
        self._written = 0
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._stopping = False
        self._stop = asyncio.Event()

    def stage(self, start: int, end: int):  # type: ignore[no-untyped-def]
        """A callback mapping a stage's fraction 0..1 onto [start, end] percent; raises TaskGone if lost."""

        def callback(fraction: float) -> None:
            if self.lost:
                raise TaskGone()
            value = int(start + (end - start) * max(0.0, min(1.0, fraction)))
            self._loop.call_soon_threadsafe(self._set, value)

        return callback

    def _set(self, value: int) -> None:
        if value > self._value:
            self._value = value
            self._wake.set()

    async def __aenter__(self) -> ProgressReporter:
        self._runner = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        # Stop between writes rather than cancel one midway: a cancelled asyncpg call can leave the pooled
        # connection hanging, and with it the job.
        self._stopping = True
        self._stop.set()
        self._wake.set()
        if exc and exc[0] is not None:
            # The job is unwinding (an error or a cancel): a runner thread still going must stop at its next call.
            self.lost = True
        if self._runner:
            try:
                await asyncio.wait_for(asyncio.shield(self._runner), timeout=30)
            except TimeoutError:
                self._runner.cancel()
                log.warning("progress writer for task %s did not stop in time", self.task_id)

    async def _run(self) -> None:
        while not self.lost:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.heartbeat_s)
            self._wake.clear()
            if self._stopping:
                return
            try:
                self.lost = not await self._write()
            except Exception:  # a transient DB error must not stop heartbeats for good
                log.exception("progress write for task %s failed", self.task_id)
            with contextlib.suppress(TimeoutError):  # pace the writes, but stop at once when asked
                await asyncio.wait_for(self._stop.wait(), self.min_interval_s)

    async def _write(self) -> bool:
        async with self.maker() as session, session.begin():
            if self._value > self._written:
                value = self._value
                ok = await task_service.report_progress(
                    session, task_id=self.task_id, attempt=self.attempt, progress=value
                )
                self._written = value
                return ok
            return await task_service.heartbeat(session, task_id=self.task_id, attempt=self.attempt)
