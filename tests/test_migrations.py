"""The schema: migrations reach head, match the models, and out-of-date databases are refused."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from alembic import command

from app.core import embedded
from app.core.db import SchemaOutOfDate, alembic_config, create_engine, ensure_schema_current


def test_upgrade_head_then_check_finds_no_drift(database_url: str) -> None:
    config = alembic_config(database_url)
    command.upgrade(config, "head")
    command.check(config)  # raises if the models and migrations disagree


def test_downgrade_to_base_and_back(database_url: str) -> None:
    config = alembic_config(database_url)
    command.downgrade(config, "base")
    command.upgrade(config, "head")
    command.check(config)


@pytest.mark.asyncio
async def test_out_of_date_database_is_refused(database_url: str) -> None:
    await asyncio.to_thread(command.downgrade, alembic_config(database_url), "base")
    engine = create_engine(database_url)
    try:
        with pytest.raises(SchemaOutOfDate):
            await ensure_schema_current(engine)
    finally:
        await engine.dispose()


@pytest.mark.asyncio
async def test_current_database_is_accepted(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        await ensure_schema_current(engine)
    finally:
        await engine.dispose()
    admin = embedded.postgres_admin_url(database_url).replace("+asyncpg", "")
    conn = await asyncpg.connect(admin)
    assert await conn.fetchval("SELECT 1") == 1
    await conn.close()
