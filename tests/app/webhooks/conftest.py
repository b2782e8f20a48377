"""Webhook tests: real receivers on loopback (a tiny ASGI app under uvicorn), recording what they were sent."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio

from app.core.config import Settings
from tests.conftest import Api, Caller, serve


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Receivers on loopback over http (the development setting), fast polling, retries and disabling."""
    return settings.model_copy(
        update={
            "webhook_allow_local": True,
            "webhook_poll_interval_s": 0.05,
            "webhook_retry_schedule_s": [0.2] * 5,
            "webhook_disable_after_failures": 3,
            "webhook_timeout_s": 5.0,
            "search_index_generated": False,  # no search models to load: these workers only make small tasks
        }
    )


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    answered: int

    @property
    def task(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Records every POST; `answer` decides each status (200 unless a test says otherwise), `delay` when."""

    url: str = ""
    requests: list[Received] = field(default_factory=list)
    answer: Callable[[Received], int] = lambda _: 200
    delay: Callable[[Received], float] = lambda _: 0.0  # seconds to wait before answering
    released: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def accepted(self) -> list[Received]:
        return [r for r in self.requests if 200 <= r.answered < 300]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        received = Received(headers, body, 0)
        received.answered = self.answer(received)
        self.requests.append(received)
        with contextlib.suppress(TimeoutError):  # a held answer is let go when the test ends
            await asyncio.wait_for(self.released.wait(), self.delay(received))
        await send({"type": "http.response.start", "status": received.answered, "headers": []})
        await send({"type": "http.response.body", "body": b""})


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[Receiver]:
    hook = Receiver()
    async with serve(hook) as base_url:
        hook.url = f"{base_url}/hook"
        yield hook
        hook.released.set()


async def eventually(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 60) -> Any:
    """Poll `check` until it returns something truthy (a deadline only to fail a stuck test, not a timing check)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def create_preview(api: Api, caller: Caller) -> str:
    body = {"mode": "preview", "prompt": "a wooden chair", "seed": 3}
    response = await api.client.post("/openapi/v2/text-to-3d", json=body, headers=caller.headers)
    assert response.status_code == 202, response.text
    return str(response.json()["result"])


async def register(api: Api, caller: Caller, url: str) -> dict[str, Any]:
    response = await api.client.post("/openapi/v1/webhooks", json={"url": url}, headers=caller.headers)
    assert response.status_code == 201, response.text
    return dict(response.json())
