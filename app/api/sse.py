"""Server-sent events for task streams, in the shape Meshy's clients parse (and browsers' EventSource)."""

from __future__ import annotations

import asyncio
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

from fastapi import Response
from sse_starlette import EventSourceResponse, ServerSentEvent
from sse_starlette.sse import SendTimeoutError
from starlette.background import BackgroundTask
from starlette.types import Message, Receive, Scope, Send

from app.api.render import AssetLinks, render_task, to_json_line
from app.tasks.events import Deleted, Snapshot, Subscription, TaskEventHub
from app.tasks.models import TERMINAL, Task, TaskStatus

_RANK = {TaskStatus.PENDING.value: 0, TaskStatus.IN_PROGRESS.value: 1}


def event_id(task: Task) -> str:
    """Identifies a state, so a reconnecting EventSource (Last-Event-ID) can be told it has seen the last one."""
    return f"{task.status}.{task.progress}"


# Snapshots come from the hub shared by every stream of a task: render and encode each one once per base URL and
# queue position, not per stream (a fan-out to thousands of streams then writes the same bytes to each); the event
# as it is, and as the HTTP/1.1 chunk the hub writes to a stream's socket itself (`TaskEventStream.deliver`).
_encoded: weakref.WeakKeyDictionary[Task, dict[tuple[str, int, bool], bytes]] = weakref.WeakKeyDictionary()


def _encode(snapshot: Snapshot, links: AssetLinks, framed: bool) -> bytes:
    task = snapshot.task
    per_base = _encoded.get(task)
    if per_base is None:
        per_base = _encoded[task] = {}
    key = (links.base_url, snapshot.preceding, framed)
    data = per_base.get(key)
    if data is None:
        if framed:
            body = _encode(snapshot, links, False)
            data = b"%x\r\n%b\r\n" % (len(body), body)
        else:
            line = to_json_line(render_task(task, snapshot.preceding, links))
            data = ServerSentEvent(data=line, event="message", id=event_id(task)).encode()
        per_base[key] = data
    return data


def message_event(snapshot: Snapshot, links: AssetLinks) -> bytes:
    """The encoded `event: message` for this snapshot (sse-starlette writes bytes as they are)."""
    return _encode(snapshot, links, False)


def framed_event(snapshot: Snapshot, links: AssetLinks) -> bytes:
    """`message_event` as one HTTP/1.1 chunk (`<size>\r\n<event>\r\n`): what uvicorn writes for it on a chunked
    response."""
    return _encode(snapshot, links, True)


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
    # The generator needs its response (to know what it sent) and the response its generator: made in that order.
    # The background task also covers a client gone before the generator ever started.
    stream = TaskEventStream(_NOTHING, ping=15, send_timeout=30, background=BackgroundTask(hub.unsubscribe, sub))
    stream.body_iterator = _follow(stream, sub, first, links, keepalive_s, max_lifetime_s)
    return stream


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield b""  # an async generator that yields nothing


_NOTHING = _nothing()


class TaskEventStream(EventSourceResponse):
    """sse-starlette's response (headers, pings, disconnects, shutdown), with two changes measured in a fan-out to
    2,000 streams (`python -m bench.profile sse`):

    * the hub writes a change to the stream's socket itself (`deliver`), in the loop that goes over the task's
      streams, instead of waking the stream's task to do it: one wake-up per stream was most of a fan-out's cost.
      Only when it can write at once: uvicorn's send does not wait (the transport is not paused), the stream is not
      mid-send, and the change is not the last one (a terminal state or a deletion wakes the stream, which sends it
      and closes). Otherwise the stream is woken as before and sends it in order.
    * the per-send timeout is one `asyncio.timeout` instead of an anyio cancel scope (same behaviour: a send that
      does not complete within `send_timeout` ends the stream).
    """

    current: Snapshot | None = None  # what this stream sent last
    busy = False  # its own task is sending: the hub must not write in between
    _raw: Send | None = None  # uvicorn's own send, for body chunks the hub writes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._raw = scope.get(RAW_SEND_KEY)
        await super().__call__(scope, receive, send)

    def deliver(self, change: Snapshot | Deleted, links: AssetLinks) -> bool:
        current = self.current
        if self.busy or current is None or not self.active or isinstance(change, Deleted):
            return False
        if change.task.status in TERMINAL:
            return False  # the stream's task sends it and closes
        if _order(change.task) < _order(current.task):
            return True  # older than what it sent: nothing to do
        cycle = getattr(self._raw, "__self__", None)
        flow = getattr(cycle, "flow", None)
        if flow is None or flow.write_paused or getattr(cycle, "disconnected", True):
            return False
        if getattr(cycle, "chunked_encoding", None) is True and cycle.response_started and not cycle.response_complete:
            # httptools' cycle on a chunked response: write the chunk as its send would (size, body, CRLF), without
            # a message and a coroutine per stream (a fifth of a fan-out's CPU, `python -m bench.profile sse`).
            cycle.transport.write(framed_event(change, links))
            self.current = change
            return True
        message = {"type": "http.response.body", "body": message_event(change, links), "more_body": True}
        sending = self._raw(message)  # type: ignore[misc]
        try:
            sending.send(None)
        except StopIteration:
            self.current = change
            return True
        # uvicorn waited after all (not expected with an unpaused transport): let a task finish that send.
        self.busy = True
        task = asyncio.get_running_loop().create_task(self._finish(sending))
        _FINISHING.add(task)
        task.add_done_callback(_FINISHING.discard)
        self.current = change
        return True

    async def _finish(self, sending: Coroutine[Any, Any, None]) -> None:
        try:
            await _resume(sending)
        finally:
            self.busy = False

    async def _send_with_timeout(self, send: Send, message: Message) -> None:
        if self.send_timeout is None:
            await send(message)
            return
        try:
            async with asyncio.timeout(self.send_timeout):
                await send(message)
        except TimeoutError:
            raise SendTimeoutError() from None


# The scope key under which the outermost middleware leaves uvicorn's send (app/api/main.py).
RAW_SEND_KEY = "meshfoundry.raw_send"
_FINISHING: set[asyncio.Task[None]] = set()


async def _resume(coro: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine that was started by hand and is waiting on a future, to its end (what a Task would do)."""
    waiting: Any = None
    try:
        while True:
            if waiting is None:
                await asyncio.sleep(0)
            else:
                await asyncio.wait([waiting])
            waiting = coro.send(None)
    except StopIteration:
        return
    finally:
        coro.close()


async def _follow(
    stream: TaskEventStream,
    sub: Subscription,
    first: Snapshot,
    links: AssetLinks,
    keepalive_s: float,
    max_lifetime_s: float,
) -> AsyncIterator[bytes | ServerSentEvent]:
    try:
        stream.busy = True
        yield message_event(first, links)
        stream.current = first
        stream.busy = False
        sub.deliver = lambda change: stream.deliver(change, links)
        deadline = time.monotonic() + max_lifetime_s
        while time.monotonic() < deadline:
            current = stream.current
            assert current is not None
            if current.task.status in TERMINAL:
                return
            change = await sub.next(timeout=keepalive_s)
            if isinstance(change, Deleted):
                stream.busy = True
                yield error_event(404, "Task not found")
                return
            current = stream.current
            assert current is not None
            if change is not None and _order(change.task) >= _order(current.task):
                current = change
            stream.busy = True  # a keep-alive (the full object again), or a change the hub left to us
            yield message_event(current, links)
            stream.current = current
            stream.busy = False
    finally:
        sub.deliver = None
        sub.close()
