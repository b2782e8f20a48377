"""Liveness of the whole service: database, Redis and at least one worker."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from app import __version__
from app.api.deps import State
from app.core.queue import queue_for_pool

router = APIRouter(tags=["Health"])


async def _check(state: State) -> dict[str, bool]:
    async def database() -> bool:
        async with state.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return True

    async def redis() -> bool:
        return bool(await state.redis.ping())

    async def workers() -> bool:
        # arq refreshes `<queue>:health-check` (with a TTL) while a worker runs.
        pools = {e.pool for table in state.registry.models.values() for e in table.values()}
        keys = [queue_for_pool(state.settings.queue_name, p) + ":health-check" for p in pools]
        return bool(keys) and bool(await state.redis.exists(*keys))

    results: dict[str, bool] = {}
    for name, check in (("database", database), ("redis", redis), ("workers", workers)):
        try:
            # Shielded: a slow check is abandoned, not cancelled inside a database call.
            results[name] = await asyncio.wait_for(asyncio.shield(check()), timeout=2.0)
        except Exception:
            results[name] = False
    return results


@router.get("/health", responses={503: {"description": "A dependency is down"}})
async def health(state: State) -> JSONResponse:
    """200 `{"status": "ok"}` when the database, Redis and a worker are up, else 503 with what is down."""
    checks = await _check(state)
    ok = all(checks.values())
    body: dict[str, Any] = {"status": "ok" if ok else "unavailable", "version": __version__, **checks}
    return JSONResponse(body, status_code=200 if ok else 503)
