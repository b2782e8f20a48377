"""Tiny ASGI apps for tests/app/test_serve.py (imported by the spawned API processes)."""

from __future__ import annotations

import os
from typing import Any


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers every request with the serving process's pid."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    body = str(os.getpid()).encode()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(body)).encode())]}
    )
    await send({"type": "http.response.body", "body": body})


async def broken(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An app whose startup fails."""
    await receive()
    await send({"type": "lifespan.startup.failed", "message": "no database"})
