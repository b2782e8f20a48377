"""What one API process holds for its lifetime: engine, queue, event hub, signer, store, registry."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.core.assets import AssetStore, UrlSigner
from app.core.config import Settings
from app.core.queue import Queue
from app.core.registry import Registry
from app.core.rowdb import RowPool
from app.tasks.events import TaskEventHub
from app.tasks.render import RenderCache
from billing.auth import Authenticator
from billing.quotas import RateLimiter


@dataclass
class AppState:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    # Autocommit sessions for single-statement reads: no BEGIN/COMMIT/ROLLBACK round trips on hot GETs.
    reader: async_sessionmaker[AsyncSession]
    redis: Redis
    queue: Queue
    hub: TaskEventHub
    signer: UrlSigner
    store: AssetStore
    registry: Registry
    secret: bytes
    limiter: RateLimiter
    # The hot paths: prepared reads on a plain asyncpg pool, cached principals, task objects rendered once per version.
    rows: RowPool
    creates: RowPool  # mf_create_task, which may wait for an account's lock: apart from the reads
    auth: Authenticator
    renders: RenderCache
