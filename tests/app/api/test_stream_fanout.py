"""A change reaches every stream of a task, in order, through the hub's direct writes (no task woken per stream);
the terminal state and a deletion still close each stream; a client that stops reading does not hold up the
others and gets the newest state when it reads again."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid

import pytest

from app.api.sse import TaskEventStream
from app.tasks import service as task_service
from tests.conftest import Api, Caller, unthrottle

URL = "/openapi/v2/text-to-3d"
PREVIEW = {"mode": "preview", "prompt": "a lamp", "target_formats": ["glb"]}
STREAMS = 40


class Follower:
    """One stream read in the background: every (event, data) pair, and whether it ended."""

    def __init__(self, api: Api, caller: Caller, task_id: str) -> None:
        self.events: list[tuple[str, dict]] = []
        self.ended = False
        self._task = asyncio.create_task(self._read(api, caller, task_id))

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _read(self, api: Api, caller: Caller, task_id: str) -> None:
        event = "message"
        async with api.client.stream("GET", f"{URL}/{task_id}/stream", headers=caller.headers) as response:
            async for line in response.aiter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    self.events.append((event, json.loads(line[5:])))
                    event = "message"
        self.ended = True

    def progress(self) -> list[int]:
        seen: list[int] = []
        for event, data in self.events:
            if event == "message" and data["status"] == "IN_PROGRESS" and (not seen or seen[-1] != data["progress"]):
                seen.append(data["progress"])
        return seen


async def until(check, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def _claimed_task(api: Api, caller: Caller, db) -> tuple[str, int]:  # type: ignore[no-untyped-def]
    task_id = (await api.client.post(URL, json=PREVIEW, headers=caller.headers)).json()["result"]
    async with db() as session, session.begin():
        task = await task_service.claim(session, task_id=uuid.UUID(task_id), job_timeout_s=600, heartbeat_stale_s=600)
    assert task is not None
    return task_id, task.attempts


async def _progress(db, task_id: str, attempt: int, value: int) -> None:  # type: ignore[no-untyped-def]
    async with db() as session, session.begin():
        assert await task_service.report_progress(session, task_id=uuid.UUID(task_id), attempt=attempt, progress=value)


@pytest.mark.asyncio
async def test_every_stream_gets_every_change_in_order_and_closes_at_the_end(
    api: Api, caller: Caller, db, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    written = 0
    deliver = TaskEventStream.deliver

    def counting(self: TaskEventStream, change, links) -> bool:  # type: ignore[no-untyped-def]
        nonlocal written
        done = deliver(self, change, links)
        written += done
        return done

    monkeypatch.setattr(TaskEventStream, "deliver", counting)
    await unthrottle(db, caller, max_concurrent_tasks=10)
    task_id, attempt = await _claimed_task(api, caller, db)
    followers = [Follower(api, caller, task_id) for _ in range(STREAMS)]
    await until(lambda: all(f.progress() == [0] for f in followers))
    for value in (10, 20, 30, 40):
        await _progress(db, task_id, attempt, value)
        await until(lambda value=value: all(f.progress()[-1:] == [value] for f in followers))
    assert all(f.progress() == [0, 10, 20, 30, 40] for f in followers)
    # The hub wrote the changes itself: uvicorn serves the test's API, so the direct path is the one taken.
    assert written >= STREAMS * 4 * 0.9, written

    async with db() as session, session.begin():
        outputs = {"model": {"glb": "model.glb"}, "textures": [], "thumbnail": "preview.png"}
        await task_service.succeed(session, task_id=uuid.UUID(task_id), attempt=attempt, outputs=outputs,
                                   retention_s=3600)  # fmt: skip
    await until(lambda: all(f.ended for f in followers))
    assert all(f.events[-1][1]["status"] == "SUCCEEDED" for f in followers)


@pytest.mark.asyncio
async def test_a_deleted_task_ends_every_stream_with_an_error_event(api: Api, caller: Caller, db) -> None:  # type: ignore[no-untyped-def]
    task_id, attempt = await _claimed_task(api, caller, db)
    followers = [Follower(api, caller, task_id) for _ in range(5)]
    await until(lambda: all(f.progress() == [0] for f in followers))
    await _progress(db, task_id, attempt, 50)
    await until(lambda: all(f.progress()[-1:] == [50] for f in followers))
    assert (await api.client.delete(f"{URL}/{task_id}", headers=caller.headers)).status_code == 200
    await until(lambda: all(f.ended for f in followers))
    assert all(f.events[-1] == ("error", {"status_code": 404, "message": "Task not found"}) for f in followers)


@pytest.mark.asyncio
async def test_a_client_that_stops_reading_does_not_hold_up_the_others(api: Api, caller: Caller, db) -> None:  # type: ignore[no-untyped-def]
    task_id, attempt = await _claimed_task(api, caller, db)
    # A raw client with a tiny receive buffer that reads its headers, then nothing.
    host, port = api.base_url.removeprefix("http://").split(":")
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    stalled.connect((host, int(port)))
    stalled.sendall(
        f"GET {URL}/{task_id}/stream HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {caller.key}\r\n\r\n".encode()
    )
    reader = Follower(api, caller, task_id)
    try:
        await until(lambda: reader.progress() == [0])
        # Many changes while one client reads nothing (its buffers may fill and uvicorn pause its writes, then the
        # hub leaves its changes to its own task): the reader keeps up.
        for value in range(1, 61):
            await _progress(db, task_id, attempt, value)
        await until(lambda: reader.progress()[-1:] == [60])
        # Reading again, the stalled client gets through to the newest state (intermediate ones may be skipped).
        stalled.setblocking(False)
        received = b""
        deadline = time.monotonic() + 15
        while b'"progress":60' not in received:
            assert time.monotonic() < deadline, received[-300:]
            try:
                chunk = stalled.recv(65536)
            except BlockingIOError:
                await asyncio.sleep(0.05)
                continue
            assert chunk, "the server closed the stalled stream"
            received += chunk
    finally:
        stalled.close()
        await reader.close()


class _Flow:
    write_paused = False


class _Cycle:
    """What the hub sees of uvicorn's request cycle: a send bound to it, its flow control and disconnect flag."""

    def __init__(self) -> None:
        self.flow = _Flow()
        self.disconnected = False
        self.sent: list[bytes] = []
        self.gate: asyncio.Event | None = None

    async def send(self, message: dict) -> None:
        if self.gate is not None:
            await self.gate.wait()
        self.sent.append(message["body"])


def _snapshot(status: str, progress: int):  # type: ignore[no-untyped-def]
    from app.tasks.events import Snapshot
    from app.tasks.models import Task

    task = Task(id=uuid.UUID(int=7), type="text-to-3d-preview", status=status, progress=progress, params={},
                outputs={}, seed=0, consumed_credits=5, task_error=None)  # fmt: skip
    return Snapshot(task, 0)


@pytest.mark.asyncio
async def test_deliver_writes_only_when_it_can_at_once() -> None:
    from app.api.render import AssetLinks
    from app.api.sse import _NOTHING
    from app.core.assets import UrlSigner
    from app.tasks.events import DELETED

    links = AssetLinks(signer=UrlSigner(b"k" * 32), base_url="http://testserver/")
    cycle = _Cycle()
    stream = TaskEventStream(_NOTHING)
    stream._raw = cycle.send
    stream.current = _snapshot("IN_PROGRESS", 10)

    assert stream.deliver(_snapshot("IN_PROGRESS", 20), links) is True  # written at once
    assert len(cycle.sent) == 1 and b'"progress":20' in cycle.sent[0]
    assert stream.deliver(_snapshot("IN_PROGRESS", 5), links) is True and len(cycle.sent) == 1  # older: dropped
    assert stream.deliver(_snapshot("SUCCEEDED", 100), links) is False  # the stream's task sends it and closes
    assert stream.deliver(DELETED, links) is False
    cycle.flow.write_paused = True
    assert stream.deliver(_snapshot("IN_PROGRESS", 30), links) is False  # paused: left to the stream's task
    cycle.flow.write_paused = False
    stream.busy = True
    assert stream.deliver(_snapshot("IN_PROGRESS", 30), links) is False  # mid-send: left to the stream's task
    stream.busy = False

    cycle.gate = asyncio.Event()  # a send that waits after all: finished by a task, nothing written meanwhile
    assert stream.deliver(_snapshot("IN_PROGRESS", 40), links) is True
    assert stream.busy and len(cycle.sent) == 1
    cycle.gate.set()
    await until(lambda: not stream.busy, timeout=5)
    assert len(cycle.sent) == 2 and b'"progress":40' in cycle.sent[1]
