"""Database engine, sessions, the declarative base and the schema-at-head check."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class SchemaOutOfDate(RuntimeError):
    """The database is not at the newest Alembic revision."""


def create_engine(url: str, *, pool_size: int = 20) -> AsyncEngine:
    # No pre-ping: it is a round trip on every checkout. A connection that died is invalidated on its first error
    # (that request fails once), and recycling bounds how long any connection lives.
    return create_async_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800)


def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def _migrations_dir() -> Path:
    # Found by import spec, not a path relative to this file, so a non-editable install works too.
    spec = importlib.util.find_spec("migrations")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the migrations package is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def reader(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions in autocommit mode, for request paths made of independent reads (and idempotent touches).

    Each statement is its own transaction: no BEGIN, COMMIT or ROLLBACK round trips. Never use them for anything
    that must be atomic.
    """
    return async_sessionmaker(engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False)


def alembic_config(database_url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_migrations_dir()))
    config.set_main_option("path_separator", "os")
    if database_url:
        config.attributes["database_url"] = database_url
    return config


def head_revisions() -> set[str]:
    return set(ScriptDirectory.from_config(alembic_config()).get_heads())


async def open_checked_engine(url: str, *, pool_size: int = 20) -> AsyncEngine:
    """An engine for a long-running process (API, worker): refused, and disposed, on an out-of-date schema."""
    engine = create_engine(url, pool_size=pool_size)
    try:
        await ensure_schema_current(engine)
    except BaseException:
        await engine.dispose()
        raise
    return engine


async def ensure_schema_current(engine: AsyncEngine) -> None:
    """Refuse to run against a database that is not at Alembic head."""
    async with engine.connect() as conn:
        current = await conn.run_sync(lambda sync: set(MigrationContext.configure(sync).get_current_heads()))
    heads = head_revisions()
    if current != heads:
        raise SchemaOutOfDate(
            f"database schema is at {sorted(current) or 'nothing'}, code expects {sorted(heads)}: "
            "run `alembic upgrade head` (meshfoundry up does this)"
        )
