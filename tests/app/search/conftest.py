"""Asset search needs pgvector: the embedded Postgres has it; a server without it (this machine's PostgreSQL 15)
runs only the tests of the degraded path."""

from __future__ import annotations

import asyncpg
import pytest
import pytest_asyncio

from app.core import embedded
from tests.conftest import Services


@pytest_asyncio.fixture
async def pgvector(services: Services) -> None:
    conn = await asyncpg.connect(embedded.postgres_admin_url(services.database_url).replace("+asyncpg", ""))
    try:
        available = await conn.fetchval("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")
    finally:
        await conn.close()
    if not available:
        pytest.skip("this PostgreSQL server has no pgvector extension (the embedded one has)")
