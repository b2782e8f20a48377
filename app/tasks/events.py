"""Task change fan-out: one LISTEN connection per API process, one read per change, many subscribers.

The row is the truth; a notification only says "look again". Subscribers keep just the newest snapshot, so a
slow client skips intermediate progress but never misses the terminal state.

A PENDING task's queue position changes without its row changing (tasks ahead start, are deleted, or a
higher plan's task enters ahead). Notifications name the task's pool; a change to a pool's queue marks it, and
once a second one query re-ranks the watched PENDING tasks of each marked pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg

from app.tasks.models import Task, TaskStatus
from app.tasks.repository import NOTIFY_CHANNEL

log = logging.getLogger(__name__)

REFRESH_S = 30  # a watched task is re-read at least this often, whatever the LISTEN connection does
PING_S = 5  # the LISTEN connection is checked this often (a query with a timeout), so a dead one is replaced
PING_TIMEOUT_S = 3

QUEUE_REFRESH_S = 1.0  # how often queue positions of watched PENDING tasks are re-ranked, when their pool changed


@dataclass(frozen=True, eq=False)
class Snapshot:
    """A task as read, with its queue position (`preceding_tasks`, 0 unless PENDING)."""

    task: Task
    preceding: int = 0


# Loads a task snapshot by id (None when deleted); the hub never holds a session itself.
Loader = Callable[[uuid.UUID], Awaitable[Snapshot | None]]
# Ranks tasks in one pool's queue: {task id: tasks ahead} for those of `ids` still PENDING there.
Ranker = Callable[[str, list[uuid.UUID]], Awaitable[dict[uuid.UUID, int]]]


class Deleted:
    """Delivered when the task row is gone."""


DELETED = Deleted()


@dataclass(eq=False)
class Subscription:
    task_id: uuid.UUID
    hub: TaskEventHub
    latest: Snapshot | Deleted | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    # Set by a subscriber that can take a change at once, without being woken: it returns True when it has (a
    # stream writing the encoded event to its socket), False to be woken as usual.
    deliver: Callable[[Snapshot | Deleted], bool] | None = None

    def close(self) -> None:
        self.hub.unsubscribe(self)

    async def next(self, timeout: float) -> Snapshot | Deleted | None:
        """The newest snapshot since the last call, or None after `timeout` seconds without a change."""
        if not self.changed.is_set():
            # asyncio.timeout, not wait_for: no task per wait (thousands of streams wake at once on a change)
            try:
                async with asyncio.timeout(timeout):
                    await self.changed.wait()
            except TimeoutError:
                return None
        self.changed.clear()
        value, self.latest = self.latest, None
        return value


class TaskEventHub:
    def __init__(
        self,
        dsn: str,
        loader: Loader,
        ranker: Ranker | None = None,
        *,
        channels: dict[str, Callable[[str], None]] | None = None,
        on_listening: Callable[[bool], None] | None = None,
    ) -> None:
        """`channels`: more channels to LISTEN on with the same connection, and what to call with each payload;
        `on_listening(up)`: told when the connection starts listening (True) and when it is lost (False), since
        notifications sent in between are lost."""
        self.dsn = dsn
        self.loader = loader
        self.ranker = ranker
        self._channels = dict(channels or {})
        self._on_listening = on_listening
        self._subs: dict[uuid.UUID, set[Subscription]] = {}
        # The newest snapshot of each watched task, with the number of the read behind it: reads are numbered
        # when they start, and a read that finishes after a newer one was applied is dropped.
        self._last: dict[uuid.UUID, tuple[int, Snapshot]] = {}
        self._reads = itertools.count(1)
        self._waiting: dict[str, set[uuid.UUID]] = {}  # watched PENDING tasks by pool
        self._changed_pools: set[str] = set()
        self._ranking: asyncio.Task[None] | None = None
        self._pending: set[uuid.UUID] = set()
        self._fetching: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._conn: asyncpg.Connection | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._closing = False
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        await self._connect()
        self._watchdog = asyncio.create_task(self._watch())
        if self.ranker is not None:
            self._ranking = asyncio.create_task(self._rank_loop())

    async def stop(self, grace_s: float = 5.0) -> None:
        """Let the loops and reads in flight finish (never cancel a DB call midway), then cancel what is left."""
        self._closing = True
        self._stopping.set()
        running = [t for t in (self._watchdog, self._ranking, *self._fetching.values()) if t is not None]
        if running:
            _done, late = await asyncio.wait(running, timeout=grace_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()

    def subscribe(self, task_id: uuid.UUID) -> Subscription:
        sub = Subscription(task_id, self)
        self._subs.setdefault(task_id, set()).add(sub)
        return sub

    def seed(self, task_id: uuid.UUID, snapshot: Snapshot) -> Snapshot:
        """A stream's own first read, so the hub knows a new watcher's queue before any change reaches it.

        Returns the snapshot the stream should hold: the hub's own when it has one of the same state, so that
        thousands of streams on one task share one object (and its rendering) instead of one read each.
        """
        if task_id not in self._subs:
            return snapshot
        known = self._last.get(task_id)
        if known is None:
            self._remember(task_id, snapshot, stamp=0)
            if snapshot.task.status == TaskStatus.PENDING.value:
                # The queue may have moved between that read and now, unseen: no one watched this pool yet.
                self._changed_pools.add(snapshot.task.pool)
            return snapshot
        shared = known[1]
        same = (shared.task.status, shared.task.progress, shared.preceding) == (
            snapshot.task.status, snapshot.task.progress, snapshot.preceding
        )  # fmt: skip
        return shared if same else snapshot

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.task_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.task_id]
                self._remember(sub.task_id, None)

    async def _connect(self) -> None:
        conn = await asyncpg.connect(self.dsn)
        try:
            await conn.add_listener(NOTIFY_CHANNEL, self._on_notify)
            for channel, callback in self._channels.items():
                await conn.add_listener(channel, _payload_to(callback))
        except BaseException:
            conn.terminate()
            raise
        conn.add_termination_listener(self._on_terminated)
        self._conn = conn
        self._listening(True)

    def _on_terminated(self, conn: object) -> None:
        if conn is not self._conn:
            return  # one replaced already: the current connection is what counts
        log.warning("task event listener connection closed")
        self._listening(False)

    def _listening(self, up: bool) -> None:
        if self._on_listening is not None:
            try:
                self._on_listening(up)
            except Exception:
                log.exception("the listening hook failed")

    async def _alive(self) -> bool:
        """The LISTEN connection answers a query in time (a half-open TCP connection would not)."""
        conn = self._conn
        if conn is None or conn.is_closed():
            return False
        try:
            await conn.fetchval("SELECT 1", timeout=PING_TIMEOUT_S)
        except Exception as exc:  # whatever broke it (asyncpg's internal state errors included), replace it
            log.warning("task event listener connection unresponsive (%s); replacing it", exc)
            self._listening(False)
            conn.terminate()
            return False
        return True

    async def _watch(self) -> None:
        """Reconnect a dropped LISTEN connection, then re-read every watched task (changes may be missed).

        Every REFRESH_S it also re-reads each watched task once (per process, not per stream), so even a
        connection that died without the client noticing cannot leave streams on stale state for long.
        """
        ticks = 0
        while not self._closing:
            await self._pause(1.0)
            if self._closing:
                return
            ticks += 1
            if ticks % REFRESH_S == 0:
                for task_id in list(self._subs):
                    self._schedule(task_id)
            if ticks % PING_S == 0:
                if await self._alive():
                    continue
            elif self._conn is not None and not self._conn.is_closed():
                continue
            try:
                await self._connect()
            except Exception as exc:  # the watchdog must outlive any failure to reconnect
                log.warning("task event listener reconnect failed: %s", exc)
                continue
            for task_id in list(self._subs):
                self._schedule(task_id)

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            event = json.loads(payload)
            task_id = uuid.UUID(event["id"])
        except (ValueError, KeyError, TypeError):
            return
        if task_id in self._subs:
            self._schedule(task_id)
        pool = event.get("pool")
        # Progress of a running task does not move anyone's queue position; everything else may.
        moves_queue = event.get("status") != TaskStatus.IN_PROGRESS.value or event.get("progress") == 0
        if isinstance(pool, str) and moves_queue and self._waiting.get(pool):
            self._changed_pools.add(pool)

    def _remember(self, task_id: uuid.UUID, snapshot: Snapshot | None, stamp: int = 0) -> None:
        """Keep the newest snapshot of a watched task, and which pool's queue it waits in."""
        _, previous = self._last.pop(task_id, (0, None))
        if previous is not None and previous.task.status == TaskStatus.PENDING.value:
            waiting = self._waiting.get(previous.task.pool)
            if waiting is not None:
                waiting.discard(task_id)
                if not waiting:
                    del self._waiting[previous.task.pool]
        if snapshot is None or task_id not in self._subs:
            return
        self._last[task_id] = (stamp, snapshot)
        if snapshot.task.status == TaskStatus.PENDING.value:
            self._waiting.setdefault(snapshot.task.pool, set()).add(task_id)

    def _publish(self, task_id: uuid.UUID, snapshot: Snapshot | Deleted, stamp: int) -> None:
        if isinstance(snapshot, Snapshot) and stamp < self._last.get(task_id, (0, None))[0]:
            return  # a slower, older read: what subscribers have is newer
        self._remember(task_id, snapshot if isinstance(snapshot, Snapshot) else None, stamp)
        for sub in list(self._subs.get(task_id, ())):
            deliver = sub.deliver
            if deliver is not None:
                try:
                    if deliver(snapshot):
                        continue  # taken at once: no task to wake (a fan-out is one loop, not one wake per stream)
                except Exception:
                    log.exception("delivering a change to a subscriber failed; waking it instead")
            sub.latest = snapshot
            sub.changed.set()

    async def _rank_loop(self) -> None:
        while not self._closing:
            await self._pause(QUEUE_REFRESH_S)
            if self._closing:
                return
            pools, self._changed_pools = self._changed_pools, set()
            for pool in pools:
                try:
                    await self._rank(pool)
                except Exception:  # the next change retries; positions are also re-read every REFRESH_S
                    log.exception("ranking the queue of pool %r failed", pool)

    async def _rank(self, pool: str) -> None:
        assert self.ranker is not None
        ids = list(self._waiting.get(pool, ()))
        if not ids:
            return
        stamp = next(self._reads)
        ranks = await self.ranker(pool, ids)
        for task_id in ids:
            _, last = self._last.get(task_id, (0, None))
            if last is None or last.task.status != TaskStatus.PENDING.value:
                continue  # no longer watched, or a newer read already moved it on
            if task_id not in ranks:
                self._schedule(task_id)  # it left the queue: read the row (its own notification may be late)
            elif ranks[task_id] != last.preceding:
                self._publish(task_id, Snapshot(last.task, ranks[task_id]), stamp)

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake at once when the hub stops."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    def _schedule(self, task_id: uuid.UUID) -> None:
        if self._closing:
            return
        # Coalesce: while a read is in flight, later notifications just ask for one more read.
        self._pending.add(task_id)
        if task_id not in self._fetching:
            self._fetching[task_id] = asyncio.create_task(self._fetch(task_id))

    async def _fetch(self, task_id: uuid.UUID) -> None:
        try:
            while task_id in self._pending:
                self._pending.discard(task_id)
                stamp = next(self._reads)
                try:
                    snapshot = await self.loader(task_id)
                except Exception:  # a failed read must not strand subscribers: retry while anyone watches
                    log.exception("loading task %s for subscribers failed; retrying", task_id)
                    self._pending.add(task_id)
                    await self._pause(0.5)
                    if task_id not in self._subs or self._closing:
                        return
                    continue
                self._publish(task_id, snapshot if snapshot is not None else DELETED, stamp)
        finally:
            self._fetching.pop(task_id, None)


def _payload_to(callback: Callable[[str], None]) -> Callable[[object, int, str, str], None]:
    def listener(_conn: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            callback(payload)
        except Exception:
            log.exception("a notification handler failed")

    return listener
