"""Alembic environment: async engine, URL from MeshFoundry's settings, models from every domain."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.ext.asyncio import create_async_engine

import app.search.models  # noqa: F401
import app.tasks.models  # noqa: F401  (registers the tables)
import app.webhooks.models  # noqa: F401
import billing.models  # noqa: F401
from app.core.config import Settings, normalize_database_url
from app.core.db import Base
from app.search.models import VECTOR_TABLE_PREFIX

config = context.config
target_metadata = Base.metadata


def _database_url() -> str:
    url = config.attributes.get("database_url") or Settings().database_url
    if not url:
        raise RuntimeError("DATABASE_URL is not set (meshfoundry up sets it for the embedded Postgres)")
    return normalize_database_url(url)


def _include_object(obj, name, type_, reflected, compare_to) -> bool:  # type: ignore[no-untyped-def]
    # One vector table per embedding space, made at run time (app.search.store): not part of the models.
    return not (type_ == "table" and reflected and compare_to is None and name.startswith(VECTOR_TABLE_PREFIX))


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection, target_metadata=target_metadata, compare_type=True, include_object=_include_object
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    engine = create_async_engine(_database_url())
    async with engine.connect() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    asyncio.run(_run_async())


if context.is_offline_mode():
    context.configure(url=_database_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
