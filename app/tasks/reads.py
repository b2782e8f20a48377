"""The task reads on the API's hot path (GET one, list a page): Core statements compiled once, rows not ORM objects.

Each read is ONE statement: the row, its version (`xmin`, which every UPDATE changes, so a rendered object can be
reused until the row changes), for a PENDING task how many tasks are ahead of it in its pool's queue, and whether
the caller's key is still unrevoked (`key_valid`: the principal came from the in-process cache, and this is what
makes a revocation take effect on the very next request). The same tenant rule as everywhere: a task is found only
with its account's id and under its resource's types.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson
from sqlalchemy import String, Text, any_, bindparam, case, cast, literal_column, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import JSONB

from app.core.rowdb import Compiled, RowPool, as_list, compile_statement
from app.tasks.models import Task, TaskStatus
from app.tasks.repository import preceding_count
from billing.auth import key_valid

_COLUMNS = tuple(Task.__table__.c)


_JSON_COLUMNS = frozenset(column.key for column in _COLUMNS if isinstance(column.type, JSONB))


class TaskRow(asyncpg.Record):
    """A task as read for rendering: the columns as attributes (what `render_task` reads of a Task), its row version
    and its queue position. Nothing is converted until it is read: a GET answered from the render cache reads only
    the id, the version and the position, so the JSON columns (fetched as text) are decoded only when rendering."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            value = self[name]
        except KeyError:
            raise AttributeError(name) from None
        if name in _JSON_COLUMNS and value is not None:
            return orjson.loads(value)  # (integers past 64 bits become floats; the request models bound them)
        return value


def _column(column: Any) -> Any:
    return cast(column, Text).label(column.key) if column.key in _JSON_COLUMNS else column


def _select() -> Any:
    preceding = case((Task.status == TaskStatus.PENDING.value, preceding_count()), else_=0)
    columns = [_column(column) for column in _COLUMNS]
    return select(
        *columns,
        literal_column("tasks.xmin").label("version"),
        preceding.label("preceding"),
        key_valid(bindparam("key_id"), bindparam("account_id")).label("key_valid"),
    ).where(
        Task.account_id == bindparam("account_id"),
        Task.type == any_(bindparam("types", type_=postgresql.ARRAY(String))),
    )


_GET = compile_statement(_select().where(Task.id == bindparam("task_id")))
_PAGE = {
    ascending: compile_statement(
        _select()
        .order_by(*((Task.created_at.asc(), Task.id.asc()) if ascending else (Task.created_at.desc(), Task.id.desc())))
        .offset(bindparam("offset"))
        .limit(bindparam("limit"))
    )
    for ascending in (True, False)
}


async def get_owned(
    rows: RowPool, *, task_id: uuid.UUID, account_id: uuid.UUID, key_id: uuid.UUID, types: Sequence[str]
) -> TaskRow | None:
    """The task, or None; the row's `key_valid` says whether `key_id` was still unrevoked when it was read."""
    params = {"task_id": task_id, "account_id": account_id, "key_id": key_id, "types": as_list(types)}
    return await rows.fetchrow(_GET, params, TaskRow, idempotent=True)  # type: ignore[return-value]


async def page(
    rows: RowPool,
    *,
    account_id: uuid.UUID,
    key_id: uuid.UUID,
    types: Sequence[str],
    offset: int,
    limit: int,
    ascending: bool,
) -> list[TaskRow]:
    query: Compiled = _PAGE[ascending]
    params = {"account_id": account_id, "key_id": key_id, "types": as_list(types), "offset": offset, "limit": limit}
    return await rows.fetch(query, params, TaskRow, idempotent=True)  # type: ignore[return-value]
