"""The hot-path read pool: Core statements compiled once to asyncpg's `$n` SQL, run on a plain asyncpg pool against
the real test database (JSONB decoded), surviving its connections being killed server-side, and a full pool
reported as a database outage (a 503), not a crash."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest
from sqlalchemy import bindparam, func, literal, literal_column, select

from app.api.errors import unavailable
from app.core import rowdb
from app.core.config import Settings
from app.core.rowdb import PoolExhausted, RowPool, compile_statement
from app.tasks.models import Task
from billing.models import ApiKey
from tests.conftest import Caller, add_succeeded_task

pytestmark = pytest.mark.asyncio

OUTPUTS = {"model": {"glb": "model.glb"}, "thumbnail": "preview.png", "nested": {"n": [1, 2.5, None, True]}}


def _dsn(url: str | None) -> str:
    return (url or "").replace("postgresql+asyncpg://", "postgresql://", 1)


_PID = compile_statement(select(func.pg_backend_pid().label("pid")))


async def test_compile_statement_gives_dollar_sql_with_fixed_values() -> None:
    statement = (
        select(ApiKey.id, literal(7).label("seven"))
        .where(ApiKey.name == "o'x", ApiKey.id == bindparam("key_id"))
        .limit(bindparam("lim", 5))
    )
    compiled = compile_statement(statement)
    assert "$1" in compiled.sql and "$2" in compiled.sql and "$3" not in compiled.sql
    assert ":key_id" not in compiled.sql and "%(" not in compiled.sql  # asyncpg's placeholders only
    # The statement's own constants are SQL (a generic plan can then use a partial index on them), quoted.
    assert "api_keys.name = 'o''x'" in compiled.sql and "7 AS seven" in compiled.sql
    assert compiled.names == ("key_id", "lim")
    assert dict(compiled.fixed) == {"lim": 5}  # a named bindparam with a value stays a parameter
    key = uuid.uuid4()
    assert compiled.args({"key_id": key}) == [key, 5]
    assert compiled.args({"key_id": key, "lim": 9}) == [key, 9]  # a valued bindparam can be overridden
    with pytest.raises(KeyError):  # a required parameter left out is an error, not a NULL
        compiled.args({})


async def test_fetchrow_and_fetch_decode_jsonb(settings: Settings, db, caller: Caller) -> None:  # type: ignore[no-untyped-def]
    first = uuid.UUID(await add_succeeded_task(db, caller, "text-to-3d-preview", OUTPUTS))
    second = uuid.UUID(await add_succeeded_task(db, caller, "text-to-3d-preview", {"model": {"glb": "b.glb"}}))
    one = compile_statement(select(Task.id, Task.outputs, Task.params).where(Task.id == bindparam("task_id")))
    by_account = compile_statement(
        select(Task.id, Task.outputs).where(Task.account_id == bindparam("account_id")).order_by(Task.id)
    )
    rows = await RowPool.open(_dsn(settings.database_url), max_size=2)
    try:
        row = await rows.fetchrow(one, {"task_id": first})
        assert row is not None
        assert row["id"] == first
        assert row["outputs"] == OUTPUTS and isinstance(row["outputs"], dict)
        assert row["params"] == {}
        assert await rows.fetchrow(one, {"task_id": uuid.uuid4()}) is None
        listed = await rows.fetch(by_account, {"account_id": caller.account_id})
        assert [r["id"] for r in listed] == sorted([first, second])
        assert {r["id"]: r["outputs"] for r in listed} == {first: OUTPUTS, second: {"model": {"glb": "b.glb"}}}
        assert await rows.fetch(by_account, {"account_id": uuid.uuid4()}) == []
        # Generic plans: a hot statement is planned once per connection, not re-planned on every call (custom plans
        # doubled Postgres' CPU per GET once the tasks table had statistics)
        mode = compile_statement(select(literal_column("current_setting('plan_cache_mode')").label("mode")))
        assert (await rows.fetchrow(mode, {}))["mode"] == "force_generic_plan"
    finally:
        await rows.close()


async def test_connections_killed_server_side_cost_at_most_one_call(settings: Settings) -> None:
    rows = await RowPool.open(_dsn(settings.database_url), max_size=3)
    admin = await asyncpg.connect(_dsn(settings.database_url))
    try:
        # Three calls at once, each holding its connection a moment: the pool opens all three.
        slow = compile_statement(select(func.pg_backend_pid().label("pid"), func.pg_sleep(0.1).label("slept")))
        pids = {r["pid"] for r in await asyncio.gather(*(rows.fetchrow(slow, {}) for _ in range(3)))}
        assert len(pids) == 3
        # pg_terminate_backend(pid, timeout): returns once the backend is really gone.
        killed = await admin.fetch("SELECT pid, pg_terminate_backend(pid, 5000) AS ok FROM unnest($1::int[]) AS pid",
                                   list(pids))  # fmt: skip
        assert all(r["ok"] for r in killed), killed

        error: Exception | None = None
        try:
            first = await rows.fetchrow(_PID, {})
        except Exception as exc:  # the outage may show once, as a database outage (a 503), never as something else
            error = exc
        if error is not None:
            assert unavailable(error) == "database", repr(error)
        else:
            assert first is not None and first["pid"] not in pids
        for _ in range(3):  # and not again: every dead connection was replaced
            again = await rows.fetchrow(_PID, {})
            assert again is not None and again["pid"] not in pids
        alive = await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1::int[])", list(pids)
        )  # fmt: skip
        assert alive == 0
    finally:
        await admin.close()
        await rows.close()


async def test_an_exhausted_pool_is_a_database_outage(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rowdb, "ACQUIRE_TIMEOUT_S", 0.2)
    rows = await RowPool.open(_dsn(settings.database_url), max_size=1)
    try:
        held = await rows._pool.acquire()  # the only connection, taken elsewhere
        try:
            with pytest.raises(PoolExhausted) as raised:
                await rows.fetchrow(_PID, {})
        finally:
            await rows._pool.release(held)
        assert unavailable(raised.value) == "database"  # a 503 with Retry-After, not a 500
        assert unavailable(PoolExhausted("bare")) == "database"
        assert (await rows.fetchrow(_PID, {})) is not None  # free again: works
    finally:
        await rows.close()


async def test_a_read_meets_no_error_when_the_server_closed_its_connections(settings: Settings) -> None:
    """Reads are retried once on a fresh connection: a restart of the server costs a read nothing."""
    rows = await RowPool.open(_dsn(settings.database_url), max_size=2)
    admin = await asyncpg.connect(_dsn(settings.database_url))
    try:
        before = await rows.fetchrow(_PID, {}, idempotent=True)
        assert before is not None
        assert await admin.fetchval("SELECT pg_terminate_backend($1, 5000)", before["pid"])
        after = await rows.fetchrow(_PID, {}, idempotent=True)  # no exception, whatever asyncpg noticed
        assert after is not None and after["pid"] != before["pid"]
    finally:
        await admin.close()
        await rows.close()
