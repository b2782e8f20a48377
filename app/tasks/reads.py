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
from sqlalchemy import (
    BigInteger,
    String,
    Text,
    any_,
    bindparam,
    case,
    cast,
    func,
    literal_column,
    select,
    tuple_,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import aliased

from app.core.rowdb import Compiled, RowPool, as_list, compile_statement
from app.tasks.models import Task, TaskStatus
from app.tasks.repository import ahead_of, preceding_count
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


def _owned() -> Any:
    """The account's tasks of the given types: every column (JSON as text), the row version and the key's validity."""
    return select(
        *(_column(column) for column in _COLUMNS),
        literal_column("tasks.xmin").label("version"),
        key_valid(bindparam("key_id"), bindparam("account_id")).label("key_valid"),
    ).where(
        Task.account_id == bindparam("account_id"),
        Task.type == any_(bindparam("types", type_=postgresql.ARRAY(String))),
    )


def _by_creation(created_at: Any, task_id: Any, ascending: bool) -> tuple[Any, Any]:
    return (created_at.asc(), task_id.asc()) if ascending else (created_at.desc(), task_id.desc())


def _page(ascending: bool) -> Any:
    """A page of the account's tasks with each PENDING row's queue position, counted in ONE pass over the queue.

    Counting each row's position on its own (as the GET does) reads the queue up to that row once per row: a page
    of ten new tasks at the end of a queue of N read 10 x N index entries. Here the page's PENDING rows are taken in
    queue order within each pool, each counts only the tasks between it and the page's previous one, and a running
    sum adds them up: N entries in all, the same numbers (one statement, one snapshot).
    """
    page = (
        _owned()
        .order_by(*_by_creation(Task.created_at, Task.id, ascending))
        .offset(bindparam("offset"))
        .limit(bindparam("limit"))
        .cte("page")
    )
    in_queue = {"partition_by": page.c.pool, "order_by": (page.c.queued_at, page.c.id)}
    pending = (
        select(
            page.c.id,
            page.c.pool,
            page.c.queued_at,
            func.lag(page.c.queued_at).over(**in_queue).label("previous_at"),
            func.lag(page.c.id).over(**in_queue).label("previous_id"),
        )
        .where(page.c.status == TaskStatus.PENDING.value)
        .subquery("pending")
    )
    ahead = aliased(Task)
    since_previous = (
        select(func.count())
        .where(
            *ahead_of(ahead, pending.c.pool, pending.c.queued_at, pending.c.id),
            tuple_(ahead.queued_at, ahead.id)
            >= tuple_(
                func.coalesce(pending.c.previous_at, literal_column("'-infinity'::timestamptz")),
                func.coalesce(pending.c.previous_id, literal_column("'00000000-0000-0000-0000-000000000000'::uuid")),
            ),
        )
        .correlate(pending)
        .scalar_subquery()
    )
    segments = select(pending.c.id, pending.c.pool, pending.c.queued_at, since_previous.label("n")).subquery("segments")
    ranked = (
        select(
            segments.c.id,
            cast(
                func.sum(segments.c.n).over(
                    partition_by=segments.c.pool, order_by=(segments.c.queued_at, segments.c.id)
                ),
                BigInteger,
            ).label("preceding"),
        )
        .cte("ranked")
        .prefix_with("MATERIALIZED")
    )  # computed once, whatever join the planner picks
    return (
        select(*page.c, func.coalesce(ranked.c.preceding, 0).label("preceding"))
        .select_from(page.outerjoin(ranked, ranked.c.id == page.c.id))
        .order_by(*_by_creation(page.c.created_at, page.c.id, ascending))
    )


_PRECEDING = case((Task.status == TaskStatus.PENDING.value, preceding_count()), else_=0).label("preceding")
_GET = compile_statement(_owned().add_columns(_PRECEDING).where(Task.id == bindparam("task_id")))
_PAGE = {ascending: compile_statement(_page(ascending)) for ascending in (True, False)}


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
