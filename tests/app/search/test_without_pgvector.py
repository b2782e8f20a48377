"""A PostgreSQL without pgvector: search says so (503), retrieve-before-generate generates, indexing is skipped.

Runs on any server: where the extension is installed (the embedded Postgres) it is dropped from this test's
database first; on a server without it (CI's second pass) the migration never created it.
"""

from __future__ import annotations

import asyncpg
import pytest

from inference.jobs.index_assets import index_missing
from tests.app.api.v2.test_text_to_3d_flow import create_preview
from tests.conftest import Api, Caller, add_succeeded_task
from tests.inference.jobs import job_context

pytestmark = pytest.mark.asyncio


async def test_search_is_503_and_generation_goes_on(api: Api, caller: Caller, settings, db) -> None:  # type: ignore[no-untyped-def]
    conn = await asyncpg.connect(settings.database_url.replace("+asyncpg", ""))
    try:
        await conn.execute("DROP EXTENSION IF EXISTS vector CASCADE")
    finally:
        await conn.close()
    response = await api.client.post("/openapi/v1/assets/search", json={"query": "a chair"}, headers=caller.headers)
    assert response.status_code == 503
    assert "pgvector" in response.json()["message"]
    task_id = await create_preview(api, caller, prompt="a chair", retrieve_min_score=0.1)
    task = (await api.client.get(f"/openapi/v2/text-to-3d/{task_id}", headers=caller.headers)).json()
    assert task["status"] == "PENDING" and "retrieved_from" not in task and task["consumed_credits"] == 20
    await add_succeeded_task(db, caller, "text-to-3d-preview", {"model": {"glb": "model.glb"}}, runner="procedural")
    assert await index_missing(job_context(settings, db)) == 0
