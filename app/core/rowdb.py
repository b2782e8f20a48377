"""The hot-path read pool: SQLAlchemy Core statements compiled once, run on a plain asyncpg pool, rows as records.

The API's most frequent requests (GET a task, a page of tasks, a key lookup on a cold cache) are single
autocommit SELECTs. Through an ORM session each cost several times its database time in Python (py-spy on
`python -m bench.profile get`: SQLAlchemy was a quarter of the API's CPU). Here a statement is written with
SQLAlchemy Core, so it stays next to the models and typed, compiled once to asyncpg's `$n` SQL, and executed as a
prepared statement (asyncpg caches them per connection); rows come back as asyncpg records, JSONB decoded by orjson.

Reads go here, and the one-statement writes of the hot paths (a key's `last_used_at`; creates, on a pool of their
own: `mf_create_task` may wait for an account's lock, and must not take connections from the reads).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
from sqlalchemy import literal_column
from sqlalchemy.dialects.postgresql import asyncpg as pg_asyncpg
from sqlalchemy.sql import ClauseElement, visitors
from sqlalchemy.sql.elements import BindParameter

_DIALECT = pg_asyncpg.dialect()  # type: ignore[no-untyped-call]
ACQUIRE_TIMEOUT_S = 10.0


class PoolExhausted(Exception):
    """No connection became free within ACQUIRE_TIMEOUT_S: the database is too slow or gone (a 503)."""


@dataclass(frozen=True)
class Compiled:
    """A statement as asyncpg runs it: SQL text with `$1..$n` and the names of the parameters, in order."""

    sql: str
    names: tuple[str, ...]
    fixed: Mapping[str, Any]  # the values the statement was built with (literals, `bindparam(name, value)`)

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        fixed = self.fixed
        return [params[name] if name in params else fixed[name] for name in self.names]


def _constant(element: Any) -> Any:
    """An anonymous bound constant of the statement (a str or an int it was written with: `status == 'PENDING'`,
    `literal(0)`) as a SQL literal; None: unchanged. Named parameters, valued or not (`bindparam("lim", 5)`), stay
    parameters that a caller may bind."""
    if not isinstance(element, BindParameter) or element.required or not element.unique:
        return None
    value = element.effective_value
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        return None
    sql = str(element.compile(dialect=_DIALECT, compile_kwargs={"literal_binds": True}))
    return literal_column(sql, type_=element.type)


def compile_statement(statement: ClauseElement) -> Compiled:
    """Compile a Core statement once, for asyncpg: what the caller binds stays a parameter, the statement's own
    constants (`status = 'PENDING'`) are written into the SQL.

    Constants must be literals because the hot statements run as generic plans (`_init_connection`): a generic plan
    can use a partial index (`WHERE status = 'PENDING'`) only when the statement itself says the same, not when it
    compares with a parameter that happens to be 'PENDING'. As parameters, a PENDING task's queue position was a
    sequential scan of the whole tasks table."""
    statement = visitors.replacement_traverse(statement, {}, _constant)
    compiled = statement.compile(dialect=_DIALECT)
    names = tuple(compiled.positiontup or ())
    binds = compiled.binds
    fixed = {name: binds[name].effective_value for name in names if not binds[name].required}
    return Compiled(sql=str(compiled), names=names, fixed=fixed)


def _loads(text: str) -> Any:
    try:
        return orjson.loads(text)  # integers past 64 bits come back as floats: the request models bound them
    except orjson.JSONDecodeError:  # anything else orjson refuses and Postgres accepts
        return json.loads(text)


async def _init_connection(conn: asyncpg.Connection) -> None:
    # Generic plans: each hot statement is planned once per connection. Under Postgres' default (`auto`) the GET and
    # list statements were re-planned on every call once the tasks table had statistics (their generic cost estimate
    # lost to the custom one), which doubled Postgres' CPU per GET (measured in bench/). A SET, not a startup
    # parameter: poolers such as PgBouncer refuse unknown startup parameters.
    await conn.execute("SET plan_cache_mode = force_generic_plan")
    for name in ("json", "jsonb"):
        await conn.set_type_codec(name, encoder=lambda v: orjson.dumps(v).decode(), decoder=_loads,
                                  schema="pg_catalog", format="text")  # fmt: skip


async def _no_reset(_conn: asyncpg.Connection) -> None:
    """Connections here run single autocommit SELECTs and never change session state: no RESET round trip."""


class RowPool:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def open(cls, dsn: str, *, max_size: int = 10) -> RowPool:
        pool = await asyncpg.create_pool(
            dsn, min_size=1, max_size=max_size, max_inactive_connection_lifetime=300.0,
            init=_init_connection, reset=_no_reset,
        )  # fmt: skip
        return cls(pool)

    async def close(self) -> None:
        await self._pool.close()

    async def fetch(
        self,
        query: Compiled,
        params: Mapping[str, Any],
        record_class: type[asyncpg.Record] | None = None,
        *,
        idempotent: bool = False,
    ) -> list[asyncpg.Record]:
        return await self._run("fetch", query, params, record_class, idempotent)  # type: ignore[no-any-return]

    async def fetchrow(
        self,
        query: Compiled,
        params: Mapping[str, Any],
        record_class: type[asyncpg.Record] | None = None,
        *,
        idempotent: bool = False,
    ) -> asyncpg.Record | None:
        return await self._run("fetchrow", query, params, record_class, idempotent)

    async def execute(self, query: Compiled, params: Mapping[str, Any]) -> str:
        """A single idempotent statement in autocommit (a key's `last_used_at` touch)."""
        return await self._run("execute", query, params, None, True)  # type: ignore[no-any-return]

    async def _run(
        self,
        method: str,
        query: Compiled,
        params: Mapping[str, Any],
        record_class: type[asyncpg.Record] | None,
        idempotent: bool,
    ) -> Any:
        """Run on a pooled connection. A lost connection (a restart, a failover) is retried once on a fresh one
        when the statement is `idempotent` (a read): a pooled connection the server closed is met by one request
        at most, and usually by none."""
        args = query.args(params)
        for attempt in (1, 2):
            try:
                conn = await self._pool.acquire(timeout=ACQUIRE_TIMEOUT_S)
            except TimeoutError as exc:
                raise PoolExhausted("no database connection became free") from exc
            try:
                if record_class is not None:
                    return await getattr(conn, method)(query.sql, *args, record_class=record_class)
                return await getattr(conn, method)(query.sql, *args)
            except _LOST as exc:
                # Every idle connection is as dead as this one: replace them all on their next use; never reuse this.
                self._pool.expire_connections()
                conn.terminate()
                if idempotent and attempt == 1:
                    continue
                if isinstance(exc, asyncpg.exceptions.InternalClientError):
                    # asyncpg's state machine after the server closed the connection under it: an outage, a 503.
                    raise asyncpg.exceptions.ConnectionDoesNotExistError(f"connection lost: {exc}") from exc
                raise
            finally:
                await self._pool.release(conn)
        raise AssertionError("unreachable")


# What a connection the server closed (or that broke under us) raises.
_LOST = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError, asyncpg.exceptions.InternalClientError)


def as_list(values: Sequence[Any]) -> list[Any]:
    """A sequence as the list asyncpg binds to an array parameter."""
    return values if isinstance(values, list) else list(values)


__all__ = ["Compiled", "PoolExhausted", "RowPool", "as_list", "compile_statement"]
