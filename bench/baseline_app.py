"""The baseline: a bare FastAPI app served by uvicorn exactly like the API.

`/ping` (GET and POST) is the trivial JSON route for the request benchmarks; `/sse` is a bare sse-starlette stream
(one event, then idle) for the memory-per-stream baseline.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from fastapi import FastAPI
from sse_starlette import EventSourceResponse, ServerSentEvent

app = FastAPI()
_never = asyncio.Event()


@app.api_route("/ping", methods=["GET", "POST"])
async def ping() -> dict[str, str]:
    return {"result": "ok"}


@app.get("/sse")
async def sse() -> EventSourceResponse:
    async def events() -> AsyncIterator[ServerSentEvent]:
        yield ServerSentEvent(data='{"status":"PENDING","progress":0}', event="message")
        await _never.wait()

    return EventSourceResponse(events(), ping=15, send_timeout=30)
