"""Task change fan-out: one LISTEN connection per API process, one read per change, many subscribers.

The row is the truth; a notification only says "look again". Subscribers keep just the newest snapshot, so a
slow client skips intermediate progress but never misses the terminal state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg

from app.tasks.models import Task
from app.tasks.repository import NOTIFY_CHANNEL

log = logging.getLogger(__name__)

REFRESH_S = 30  # a watched task is re-read at least this often, whatever the LISTEN connection does

# Loads a task snapshot by id (None when deleted); the hub never holds a session itself.
Loader = Callable[[uuid.UUID], Awaitable[Task | None]]


class Deleted:
    """Delivered when the task row is gone."""


DELETED = Deleted()


@dataclass(eq=False)
class Subscription:
    task_id: uuid.UUID
    hub: TaskEventHub
    latest: Task | Deleted | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def close(self) -> None:
        self.hub.unsubscribe(self)

    async def next(self, timeout: float) -> Task | Deleted | None:
        """The newest snapshot since the last call, or None after `timeout` seconds without a change."""
        try:
            await asyncio.wait_for(self.changed.wait(), timeout)
        except TimeoutError:
            return None
        self.changed.clear()
        value, self.latest = self.latest, None
        return value


class TaskEventHub:
    def __init__(self, dsn: str, loader: Loader) -> None:
        self.dsn = dsn
        self.loader = loader
        self._subs: dict[uuid.UUID, set[Subscription]] = {}
        self._pending: set[uuid.UUID] = set()
        self._fetching: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._conn: asyncpg.Connection | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._closing = False

    async def start(self) -> None:
        await self._connect()
        self._watchdog = asyncio.create_task(self._watch())

    async def stop(self) -> None:
        self._closing = True
        if self._watchdog:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        for fetch in list(self._fetching.values()):
            fetch.cancel()
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()

    def subscribe(self, task_id: uuid.UUID) -> Subscription:
        sub = Subscription(task_id, self)
        self._subs.setdefault(task_id, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.task_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.task_id]

    async def _connect(self) -> None:
        self._conn = await asyncpg.connect(self.dsn)
        await self._conn.add_listener(NOTIFY_CHANNEL, self._on_notify)
        self._conn.add_termination_listener(lambda _conn: log.warning("task event listener connection closed"))

    async def _watch(self) -> None:
        """Reconnect a dropped LISTEN connection, then re-read every watched task (changes may be missed).

        Every REFRESH_S it also re-reads each watched task once (per process, not per stream), so even a
        connection that died without the client noticing cannot leave streams on stale state for long.
        """
        ticks = 0
        while not self._closing:
            await asyncio.sleep(1.0)
            ticks += 1
            if ticks % REFRESH_S == 0:
                for task_id in list(self._subs):
                    self._schedule(task_id)
            if self._conn is not None and not self._conn.is_closed():
                continue
            try:
                await self._connect()
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("task event listener reconnect failed: %s", exc)
                continue
            for task_id in list(self._subs):
                self._schedule(task_id)

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            task_id = uuid.UUID(json.loads(payload)["id"])
        except (ValueError, KeyError, TypeError):
            return
        if task_id in self._subs:
            self._schedule(task_id)

    def _schedule(self, task_id: uuid.UUID) -> None:
        # Coalesce: while a read is in flight, later notifications just ask for one more read.
        self._pending.add(task_id)
        if task_id not in self._fetching:
            self._fetching[task_id] = asyncio.create_task(self._fetch(task_id))

    async def _fetch(self, task_id: uuid.UUID) -> None:
        try:
            while task_id in self._pending:
                self._pending.discard(task_id)
                try:
                    task = await self.loader(task_id)
                except Exception:  # a failed read must not strand subscribers: retry while anyone watches
                    log.exception("loading task %s for subscribers failed; retrying", task_id)
                    self._pending.add(task_id)
                    await asyncio.sleep(0.5)
                    if task_id not in self._subs:
                        return
                    continue
                snapshot: Task | Deleted = task if task is not None else DELETED
                for sub in list(self._subs.get(task_id, ())):
                    sub.latest = snapshot
                    sub.changed.set()
        finally:
            self._fetching.pop(task_id, None)
