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


def _pools(state: State) -> list[str]:
    """The pools some task type is served by: each needs a live worker."""
    return sorted({e.pool for table in state.registry.models.values() for e in table.values()})


async def _check(state: State) -> tuple[dict[str, bool], dict[str, bool]]:
    pools = _pools(state)

    async def database() -> bool:
        async with state.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return True

    async def redis() -> bool:
        return bool(await state.redis.ping())

    async def workers() -> list[bool]:
        # arq refreshes `<queue>:health-check` (with a TTL) while a worker of that pool runs.
        async with state.redis.pipeline(transaction=False) as pipe:  # one round trip for every pool
            for pool in pools:
                pipe.exists(queue_for_pool(state.settings.queue_name, pool) + ":health-check")
            return [bool(found) for found in await pipe.execute()]

    async def guarded(check, fallback):  # type: ignore[no-untyped-def]
        try:
            # Shielded: a slow check is abandoned, not cancelled inside a database call.
            return await asyncio.wait_for(asyncio.shield(check()), timeout=2.0)
        except Exception:
            return fallback

    alive = await guarded(workers, [False] * len(pools))
    results = {
        "database": bool(await guarded(database, False)),
        "redis": bool(await guarded(redis, False)),
        "workers": bool(pools) and all(alive),
    }
    return results, dict(zip(pools, alive, strict=True))


@router.get("/health", responses={503: {"description": "A dependency is down"}})
async def health(state: State) -> JSONResponse:
    """200 `{"status": "ok"}` when the database, Redis and a worker of every pool are up, else 503 with what is
    down; `pools` says which pool has a live worker."""
    checks, pools = await _check(state)
    ok = all(checks.values())
    body: dict[str, Any] = {"status": "ok" if ok else "unavailable", "version": __version__, **checks,
                            "pools": {pool: {"worker": up} for pool, up in pools.items()}}  # fmt: skip
    return JSONResponse(body, status_code=200 if ok else 503, headers=None if ok else {"Retry-After": "5"})
