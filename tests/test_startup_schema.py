"""Neither the API nor the worker starts on a database whose schema is behind the code's migrations."""

from __future__ import annotations

import asyncio
import time

import pytest
from alembic import command
from arq.worker import Worker
from asgi_lifespan import LifespanManager

from app.api.main import create_app
from app.core.db import SchemaOutOfDate, alembic_config, head_revisions

pytestmark = pytest.mark.asyncio


# Alembic's env.py runs its own event loop (asyncio.run), so migrations run in a thread, off this test's loop.
async def downgrade_one(settings) -> None:  # type: ignore[no-untyped-def]
    await asyncio.to_thread(command.downgrade, alembic_config(settings.database_url), "-1")


async def upgrade_head(settings) -> None:  # type: ignore[no-untyped-def]
    await asyncio.to_thread(command.upgrade, alembic_config(settings.database_url), "head")


def assert_says_out_of_date(error: SchemaOutOfDate) -> None:
    message = str(error)
    (head,) = head_revisions()
    assert f"code expects ['{head}']" in message
    assert f"is at ['{head}']" not in message
    assert "alembic upgrade head" in message


async def test_api_refuses_an_out_of_date_schema(settings) -> None:  # type: ignore[no-untyped-def]
    await downgrade_one(settings)
    try:
        with pytest.raises(SchemaOutOfDate) as raised:
            async with LifespanManager(create_app(settings)):
                pytest.fail("the API started on an out-of-date schema")
        assert_says_out_of_date(raised.value)
    finally:
        await upgrade_head(settings)
    # At head the same app starts: the refusal was the schema's doing, not the test's setup.
    app = create_app(settings)
    async with LifespanManager(app):
        assert app.state.mf.settings is settings


async def test_worker_refuses_an_out_of_date_schema(settings) -> None:  # type: ignore[no-untyped-def]
    from inference.worker import worker_options  # the runner stack is heavy; only worker tests pay for it

    def build() -> Worker:
        options = worker_options(settings, "default")
        options["handle_signals"] = False
        return Worker(**options)

    await downgrade_one(settings)
    try:
        worker = build()
        try:
            with pytest.raises(SchemaOutOfDate) as raised:
                await asyncio.wait_for(worker.async_run(), timeout=30)
            assert_says_out_of_date(raised.value)
            assert "job" not in worker.ctx  # startup stopped before the worker could take jobs
        finally:
            await worker.close()
    finally:
        await upgrade_head(settings)
    # At head the same worker starts (startup sets up its job context and reaper) and stops cleanly.
    worker = build()
    running = asyncio.create_task(worker.async_run())
    try:
        deadline = time.monotonic() + 30
        while "reaper" not in worker.ctx and not running.done() and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        assert "reaper" in worker.ctx, running
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await worker.close()
