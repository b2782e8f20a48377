"""Server-sent events for task streams, in the shape Meshy's clients parse (and browsers' EventSource)."""

from __future__ import annotations

import asyncio
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi import Response
from sse_starlette import EventSourceResponse, ServerSentEvent
from sse_starlette.sse import SendTimeoutError
from starlette.background import BackgroundTask
from starlette.types import Message, Send

from app.api.render import AssetLinks, render_task, to_json_line
from app.tasks.events import Deleted, Snapshot, Subscription, TaskEventHub
from app.tasks.models import TERMINAL, Task, TaskStatus

_RANK = {TaskStatus.PENDING.value: 0, TaskStatus.IN_PROGRESS.value: 1}


def event_id(task: Task) -> str:
    """Identifies a state, so a reconnecting EventSource (Last-Event-ID) can be told it has seen the last one."""
    return f"{task.status}.{task.progress}"


# Snapshots come from the hub shared by every stream of a task: render and encode each one once per base URL and
# queue position, not per stream (a fan-out to thousands of streams then writes the same bytes to each).
_rendered: weakref.WeakKeyDictionary[Task, dict[tuple[str, int], bytes]] = weakref.WeakKeyDictionary()


def message_event(snapshot: Snapshot, links: AssetLinks) -> bytes:
    """The encoded `event: message` for this snapshot (sse-starlette writes bytes as they are)."""
    task = snapshot.task
    per_base = _rendered.get(task)
    if per_base is None:
        per_base = _rendered[task] = {}
    key = (links.base_url, snapshot.preceding)
    chunk = per_base.get(key)
    if chunk is None:
        line = to_json_line(render_task(task, snapshot.preceding, links))
        chunk = per_base[key] = ServerSentEvent(data=line, event="message", id=event_id(task)).encode()
    return chunk


def error_event(status_code: int, message: str) -> ServerSentEvent:
    return ServerSentEvent(data=to_json_line({"status_code": status_code, "message": message}), event="error")


def error_stream(status_code: int, message: str) -> EventSourceResponse:
    """A 200 stream with one `event: error` (Meshy's way to report a bad id on a stream), then close."""

    async def once() -> AsyncIterator[ServerSentEvent]:
        yield error_event(status_code, message)

    return EventSourceResponse(once())


def _order(task: Task) -> tuple[int, int]:
    return _RANK.get(task.status, 2), task.progress


async def open_task_stream(
    *,
    hub: TaskEventHub,
    task_id: uuid.UUID,
    load: Callable[[], Awaitable[tuple[Task, int] | None]],
    links: AssetLinks,
    last_event_id: str | None,
    keepalive_s: float,
    max_lifetime_s: float,
) -> Response:
    """Current state first, then one event per change, a full-object keep-alive, close after the terminal one.

    Subscribes before reading the row, so no change between the read and the subscription is lost. A browser
    that reconnects after it saw the terminal event (Last-Event-ID) gets 204, which tells EventSource to stop.
    """
    sub = hub.subscribe(task_id)
    try:
        loaded = await load()
    except BaseException:
        hub.unsubscribe(sub)
        raise
    if loaded is None:
        hub.unsubscribe(sub)
        return error_stream(404, "Task not found")
    first = Snapshot(*loaded)
    if first.task.status in TERMINAL and last_event_id == event_id(first.task):
        hub.unsubscribe(sub)
        return Response(status_code=204)
    first = hub.seed(task_id, first)  # the hub's copy of the same state, when it has one: shared by the streams
    events = _follow(sub, first, links, keepalive_s, max_lifetime_s)
    # The background task also covers a client gone before the generator ever started.
    return TaskEventStream(events, ping=15, send_timeout=30, background=BackgroundTask(hub.unsubscribe, sub))


class TaskEventStream(EventSourceResponse):
    """sse-starlette's response, with the per-send timeout as one `asyncio.timeout` instead of an anyio cancel scope:
    in a fan-out to 2,000 streams the scope's set-up was about a tenth of the API's CPU (`bench.profile sse`). Same
    behaviour: a send that does not complete within `send_timeout` ends the stream (a client that stopped reading).
    """

    async def _send_with_timeout(self, send: Send, message: Message) -> None:
        if self.send_timeout is None:
            await send(message)
            return
        try:
            async with asyncio.timeout(self.send_timeout):
                await send(message)
        except TimeoutError:
            raise SendTimeoutError() from None


async def _follow(
    sub: Subscription, current: Snapshot, links: AssetLinks, keepalive_s: float, max_lifetime_s: float
) -> AsyncIterator[bytes | ServerSentEvent]:
    try:
        yield message_event(current, links)
        deadline = time.monotonic() + max_lifetime_s
        while current.task.status not in TERMINAL and time.monotonic() < deadline:
            change = await sub.next(timeout=keepalive_s)
            if isinstance(change, Deleted):
                yield error_event(404, "Task not found")
                return
            if change is not None and _order(change.task) >= _order(current.task):
                current = change
            yield message_event(current, links)  # a change, or the keep-alive: the full object again
    finally:
        sub.close()
