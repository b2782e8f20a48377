"""The FastAPI application: lifespan wiring, routers, error handlers, Meshy's response headers."""

from __future__ import annotations

import asyncio
import gc
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.types import Receive, Scope, Send

from app import __version__
from app.api import (
    admin,
    aigc,
    aigc_uploads,
    assets,
    comfy,
    dice_talk,
    health,
    motion_service,
    observability,
    playground,
    stream_tokens,
    testmode,
)
from app.api.catalog import RESOURCES
from app.api.edge import Edge
from app.api.errors import install_error_handlers, install_openapi
from app.api.resources import resource_router
from app.api.sse import RAW_SEND_KEY
from app.api.state import AppState
from app.api.v1 import animation_library, asset_search, balance, capabilities, webhooks
from app.core import logs, metrics
from app.core.assets import UrlSigner
from app.core.config import Settings, get_settings
from app.core.db import open_checked_engine, reader, sessionmaker
from app.core.logs import RedactSecrets
from app.core.queue import ArqQueue
from app.core.registry import load_registry
from app.core.rowdb import RowPool
from app.core.storage import store_from_settings
from app.tasks.events import Snapshot, TaskEventHub
from app.tasks.render import RenderCache
from app.tasks.repository import TaskRepository
from billing.auth import AUTH_CHANNEL, Authenticator, PrincipalCache
from billing.quotas import RateLimiter


def asyncpg_dsn(sqlalchemy_url: str) -> str:
    return sqlalchemy_url.replace("postgresql+asyncpg://", "postgresql://", 1)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    if not settings.database_url or not settings.redis_url:
        raise RuntimeError("DATABASE_URL and REDIS_URL must be set (`meshfoundry up` sets both)")
    logs.configure(settings.log_style, settings.log_level)  # unless uvicorn's --log-config (or a test) did
    metrics.sweep_dead_processes()
    engine = await open_checked_engine(settings.database_url)
    maker = sessionmaker(engine)
    read = reader(engine)

    async def load(task_id: uuid.UUID) -> Snapshot | None:
        async with read() as session:
            repo = TaskRepository(session)
            task = await repo.get(task_id)
            return Snapshot(task, await repo.preceding(task)) if task is not None else None

    async def rank(pool: str, task_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
        async with read() as session:
            return await TaskRepository(session).queue_positions(pool, task_ids)

    secret = settings.secret()
    rows = await RowPool.open(asyncpg_dsn(settings.database_url), max_size=settings.db_read_pool_size)
    # Creates wait for their account's lock: on a pool of their own, so that they never hold up the reads.
    creates = await RowPool.open(asyncpg_dsn(settings.database_url), max_size=settings.db_read_pool_size)
    principals = PrincipalCache(ttl_s=settings.auth_cache_ttl_s)
    hub = TaskEventHub(
        asyncpg_dsn(settings.database_url), load, rank,
        channels={AUTH_CHANNEL: principals.invalidate}, on_listening=principals.listening,
    )  # fmt: skip
    await hub.start()
    queue = await ArqQueue.connect(settings.redis_url, settings.queue_name)
    store = store_from_settings(settings)
    await asyncio.to_thread(testmode.install_assets, store)  # S3: a few requests; off the loop
    app.state.mf = AppState(
        settings=settings, engine=engine, sessionmaker=maker, reader=read, redis=queue.redis, queue=queue,
        hub=hub,
        signer=UrlSigner(secret), store=store, registry=load_registry(), secret=secret,
        limiter=RateLimiter(queue.redis),
        rows=rows, creates=creates, auth=Authenticator(rows, secret, principals), renders=RenderCache(),
    )  # fmt: skip
    # Everything built so far lives as long as the process: keep it out of the collector's way, so full
    # collections stay short with thousands of open streams (measured in bench/: pauses grew to ~0.7 s).
    gc.freeze()
    # Fewer young collections, and full ones only rarely: a stream's objects live for minutes, so collecting
    # them often buys nothing and each full pass walks every open stream.
    gc.set_threshold(50_000, 20, 100)
    try:
        yield
    finally:
        await hub.stop()
        await app.state.mf.auth.drain()
        await queue.close()
        await rows.close()
        await creates.close()
        await engine.dispose()


def create_app(settings: Settings | None = None) -> FastAPI:
    app = MeshFoundryApi(
        title="MeshFoundry",
        version=__version__,
        summary="Self-hosted, Meshy-compatible 3D generation API",
        description="Meshy's REST API (`/openapi/v1`, `/openapi/v2`) on your own hardware. Authenticate with "
        '`Authorization: Bearer msy_...`. Errors are always `{"message": "..."}`. '
        "See the docs site for compatibility notes.",
        lifespan=_lifespan,
        docs_url=None,  # served by app.api.playground from vendored Swagger UI files (works offline)
        redoc_url=None,
    )
    app.state.settings = settings or get_settings()
    access_log = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactSecrets) for f in access_log.filters):
        access_log.addFilter(RedactSecrets())
    install_error_handlers(app)
    install_openapi(app)
    app.include_router(health.router)
    app.include_router(observability.router)  # /metrics, outside the OpenAPI schema
    app.include_router(animation_library.router)  # before the `animations` resource: /animations/library
    for resource in RESOURCES:  # the hot routes early: routers are tried in order
        app.include_router(resource_router(resource))
    app.include_router(motion_service.router)
    app.include_router(aigc.router)  # 3DAIGC-API's routes, over the same tasks
    app.include_router(aigc_uploads.router)
    app.include_router(dice_talk.router)  # DICE-Talk's routes, over talking-head tasks
    app.include_router(comfy.router)  # ComfyUI's upload flow (its prefix and Meshy's old paths: Edge)
    app.include_router(balance.router)
    app.include_router(capabilities.router)
    app.include_router(asset_search.router)
    app.include_router(stream_tokens.router)
    app.include_router(webhooks.router)
    app.include_router(admin.router, include_in_schema=app.state.settings.admin_token is not None)  # off: hidden
    playground.mount(app)
    app.include_router(assets.router)

    # Aliases, Meshy's headers, the log context, metrics, access line, body limit: one layer (app/api/edge.py)
    app.add_middleware(Edge, settings=app.state.settings)
    origins = app.state.settings.cors_allow_origins
    if origins:  # off by default, like Meshy; opened per origin for the API and the asset routes
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "PUT", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "X-API-KEY", "Content-Type", "Idempotency-Key", "Last-Event-ID", "Range"],
            expose_headers=["x-request-id", "x-api-version", "Retry-After", "Content-Length", "Content-Range"],
            max_age=600,
        )
    return app


class MeshFoundryApi(FastAPI):
    """Leaves the server's own `send` in the scope (`RAW_SEND_KEY`) before any middleware wraps it: a task stream's
    events are body chunks, which no middleware changes, and the event hub writes them with it directly
    (app/api/sse.py)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope[RAW_SEND_KEY] = send
        await super().__call__(scope, receive, send)


app = create_app()
