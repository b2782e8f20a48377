"""All SQL of the task domain, including the compare-and-set state transitions."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Float,
    Integer,
    Select,
    String,
    Uuid,
    and_,
    any_,
    bindparam,
    case,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from app.core.rowdb import RowPool, compile_statement
from app.tasks.models import IdempotencyKey, Task, TaskStatus
from app.webhooks.models import Webhook, WebhookDelivery

NOTIFY_CHANNEL = "task_events"


def _queue_order(task: Any) -> tuple[Any, Any]:
    """A pool's queue order: queue position, then id (`task` is the Task class or an alias of it)."""
    return task.queued_at, task.id


def ahead_of(ahead: Any, pool: Any, queued_at: Any, task_id: Any) -> tuple[Any, ...]:
    """Conditions on `ahead` for the PENDING tasks queued before (`queued_at`, `task_id`) in `pool`."""
    return (
        ahead.status == TaskStatus.PENDING.value,
        ahead.pool == pool,
        tuple_(*_queue_order(ahead)) < tuple_(queued_at, task_id),
    )


def preceding_count() -> Any:
    """Tasks ahead in the same pool's queue, for PENDING tasks only."""
    ahead = aliased(Task)
    return (
        select(func.count())
        .where(Task.status == TaskStatus.PENDING.value, *ahead_of(ahead, Task.pool, Task.queued_at, Task.id))
        .correlate(Task)
        .scalar_subquery()
    )


# The hot read, built once and bound per call (building it was a measurable share of a GET's CPU).
_GET_OWNED = select(Task).where(
    Task.id == bindparam("task_id"),
    Task.account_id == bindparam("account_id"),
    Task.type.in_(bindparam("types", expanding=True)),
)
_GET_OWNED_FOR_UPDATE = _GET_OWNED.with_for_update()


def _notify_statement() -> Any:
    """`pg_notify` plus the webhook outbox rows of the change, as ONE statement (one round trip, as before webhooks).

    The data-modifying CTE always runs: one outbox row per enabled webhook of the task's account, holding the row
    as it is now (`to_jsonb(tasks)`) and its queue position; none, at the cost of an index probe, when the account
    has no webhook.
    """
    ahead = aliased(Task)
    preceding = select(func.count()).where(*ahead_of(ahead, Task.pool, Task.queued_at, Task.id)).scalar_subquery()
    rows = select(
        Webhook.id,
        Task.id,
        func.to_jsonb(Task.__table__.table_valued()),
        case((Task.status == TaskStatus.PENDING.value, preceding), else_=0),
    ).where(Task.id == bindparam("task_id"), Webhook.account_id == Task.account_id, Webhook.enabled.is_(True))
    outbox = (
        insert(WebhookDelivery)
        .from_select(["webhook_id", "task_id", "snapshot", "preceding_tasks"], rows)
        .cte("webhook_outbox")
    )
    return select(func.pg_notify(bindparam("channel"), bindparam("payload"))).add_cte(outbox)


_NOTIFY_AND_RECORD = _notify_statement()

_CREATE_TASK = compile_statement(
    text(
        "SELECT outcome, task_id, created_at, queued_at FROM mf_create_task(:account_id, :key_id, :task_id, :type, "
        ":ai_model, :runner, :pool, :params, :parent_id, :seed, :price, :head_start_s, :max_head_start_s, "
        ":limited_types, :slot_factor, :idempotency_key, :request_hash, :idempotency_window_s, :channel, "
        ":outputs, :retention_s)"
    ).bindparams(
        bindparam("account_id", type_=Uuid()),
        bindparam("key_id", type_=Uuid()),
        bindparam("task_id", type_=Uuid()),
        bindparam("parent_id", type_=Uuid()),
        bindparam("params", type_=postgresql.JSONB()),
        bindparam("limited_types", type_=postgresql.ARRAY(String())),
        bindparam("head_start_s", type_=Float()),
        bindparam("max_head_start_s", type_=Float()),
        bindparam("idempotency_window_s", type_=Float()),
        bindparam("seed", type_=Integer()),
        bindparam("price", type_=Integer()),
        bindparam("slot_factor", type_=Integer()),
        bindparam("type", type_=String()),
        bindparam("ai_model", type_=String()),
        bindparam("runner", type_=String()),
        bindparam("pool", type_=String()),
        bindparam("idempotency_key", type_=String()),
        bindparam("request_hash", type_=String()),
        bindparam("outputs", type_=postgresql.JSONB()),
        bindparam("retention_s", type_=Float()),
        bindparam("channel", type_=String()),
    )  # fmt: skip
)


class TaskRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @staticmethod
    async def create_charged(
        rows: RowPool,
        task: Task,
        *,
        price: int,
        key_id: uuid.UUID,
        head_start_s: float,
        max_head_start_s: float,
        limited_types: Sequence[str],
        slot_factor: int,
        idempotency_key: str | None,
        request_hash: str | None,
        idempotency_window_s: float,
        outputs: dict[str, Any] | None = None,
        retention_s: float = 0.0,
    ) -> tuple[str, uuid.UUID | None, datetime | None, datetime | None]:
        """Create `task` (transient; its columns set) and charge `price`: `mf_create_task` (migration
        2026-11-29-2030), one round trip in autocommit. (outcome, task id, created_at, queued_at)."""
        row = await rows.fetchrow(
            _CREATE_TASK,
            {
                "account_id": task.account_id,
                "key_id": key_id,
                "task_id": task.id,
                "type": task.type,
                "ai_model": task.ai_model,
                "runner": task.runner,
                "pool": task.pool,
                "params": task.params,
                "parent_id": task.parent_id,
                "seed": task.seed,
                "price": price,
                "head_start_s": head_start_s,
                "max_head_start_s": max_head_start_s,
                "limited_types": list(limited_types),
                "slot_factor": slot_factor,
                "idempotency_key": idempotency_key,
                "request_hash": request_hash,
                "idempotency_window_s": idempotency_window_s,
                "outputs": outputs,
                "retention_s": retention_s,
                "channel": NOTIFY_CHANNEL,
            },  # fmt: skip
        )
        assert row is not None  # the function always returns one row
        return row["outcome"], row["task_id"], row["created_at"], row["queued_at"]

    async def add(self, task: Task) -> Task:
        self.session.add(task)
        await self.session.flush()
        return task

    async def get(self, task_id: uuid.UUID, *, for_update: bool = False) -> Task | None:
        stmt = select(Task).where(Task.id == task_id)
        if for_update:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def runners_of(self, task_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
        """The runner of each task that exists (a GPU worker's job selection reads them for queued job ids)."""
        rows = await self.session.execute(select(Task.id, Task.runner).where(Task.id.in_(task_ids)))
        return {task_id: runner for task_id, runner in rows.all()}

    async def get_owned(
        self, task_id: uuid.UUID, account_id: uuid.UUID, types: Sequence[str], *, for_update: bool = False
    ) -> Task | None:
        stmt = _GET_OWNED_FOR_UPDATE if for_update else _GET_OWNED
        params = {"task_id": task_id, "account_id": account_id, "types": list(types)}
        return (await self.session.execute(stmt, params)).scalar_one_or_none()

    async def status_counts(self, account_id: uuid.UUID) -> dict[str, int]:
        stmt = select(Task.status, func.count()).where(Task.account_id == account_id).group_by(Task.status)
        return {status: int(n) for status, n in (await self.session.execute(stmt)).all()}

    async def get_owned_any(self, task_id: uuid.UUID, account_id: uuid.UUID) -> Task | None:
        """The account's task of any type (for checks that span resources)."""
        result = await self.session.execute(select(Task).where(Task.id == task_id, Task.account_id == account_id))
        return result.scalar_one_or_none()

    async def preceding(self, task: Task) -> int:
        if task.status != TaskStatus.PENDING.value:
            return 0
        result = await self.session.execute(
            select(func.count()).where(*ahead_of(Task, task.pool, literal(task.queued_at), literal(task.id)))
        )
        return int(result.scalar_one())

    async def queue_positions(self, pool: str, task_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
        """How many tasks are ahead of each of `task_ids` still PENDING in `pool`: one pass over that queue."""
        ranked = (
            select(Task.id, (func.row_number().over(order_by=_queue_order(Task)) - 1).label("ahead"))
            .where(Task.status == TaskStatus.PENDING.value, Task.pool == pool)
            .subquery()
        )
        # One array parameter, not an IN list: the same SQL text (one prepared statement) for any number of ids.
        ids = bindparam("ids", list(task_ids), type_=postgresql.ARRAY(Uuid()))
        rows = await self.session.execute(select(ranked.c.id, ranked.c.ahead).where(ranked.c.id == any_(ids)))
        return {task_id: int(ahead) for task_id, ahead in rows}

    async def list_owned(
        self, account_id: uuid.UUID, types: Sequence[str], *, offset: int, limit: int, ascending: bool
    ) -> list[tuple[Task, int]]:
        order = (Task.created_at.asc(), Task.id.asc()) if ascending else (Task.created_at.desc(), Task.id.desc())
        stmt: Select[tuple[Task, int]] = (
            select(Task, preceding_count())
            .where(Task.account_id == account_id, Task.type.in_(types))
            .order_by(*order)
            .offset(offset)
            .limit(limit)
        )
        rows = await self.session.execute(stmt)
        return [(task, int(count) if task.status == TaskStatus.PENDING.value else 0) for task, count in rows]

    async def delete(self, task_id: uuid.UUID) -> None:
        await self.session.execute(delete(Task).where(Task.id == task_id))

    async def transition(
        self, task_id: uuid.UUID, *, expected: Sequence[str], attempt: int | None = None, **values: Any
    ) -> Task | None:
        """Compare-and-set: apply `values` only if the task is in one of `expected` (and at `attempt`)."""
        conditions = [Task.id == task_id, Task.status.in_(expected)]
        if attempt is not None:
            conditions.append(Task.attempts == attempt)
        result = await self.session.execute(update(Task).where(and_(*conditions)).values(**values).returning(Task))
        return result.scalar_one_or_none()

    async def claim(
        self, task_id: uuid.UUID, *, now: datetime, stale_before: datetime, deadline: datetime
    ) -> Task | None:
        """Start (or take over from a dead worker) a task: PENDING, or IN_PROGRESS with a stale heartbeat."""
        result = await self.session.execute(
            update(Task)
            .where(
                Task.id == task_id,
                or_(
                    Task.status == TaskStatus.PENDING.value,
                    and_(Task.status == TaskStatus.IN_PROGRESS.value, Task.heartbeat_at < stale_before),
                ),
            )
            .values(
                status=TaskStatus.IN_PROGRESS.value,
                attempts=Task.attempts + 1,
                started_at=func.coalesce(Task.started_at, now),
                heartbeat_at=now,
                deadline_at=deadline,
                progress=0,
            )
            .returning(Task)
        )
        return result.scalar_one_or_none()

    async def unfinished(self, status: str, *, older_than: datetime | None = None, limit: int = 500) -> list[Task]:
        stmt = select(Task).where(Task.status == status)
        if older_than is not None:
            column = Task.heartbeat_at if status == TaskStatus.IN_PROGRESS.value else Task.created_at
            stmt = stmt.where(column < older_than)
        # Queue order: after a Redis loss the reaper re-enqueues the head of each queue first.
        return list((await self.session.execute(stmt.order_by(*_queue_order(Task)).limit(limit))).scalars())

    async def past_deadline(self, now: datetime, limit: int = 500) -> list[Task]:
        stmt = select(Task).where(Task.status == TaskStatus.IN_PROGRESS.value, Task.deadline_at < now).limit(limit)
        return list((await self.session.execute(stmt)).scalars())

    async def find_idempotency(self, account_id: uuid.UUID, key: str) -> IdempotencyKey | None:
        return await self.session.get(IdempotencyKey, (account_id, key))

    async def remember_idempotency(
        self, account_id: uuid.UUID, key: str, request_hash: str, task_id: uuid.UUID
    ) -> None:
        self.session.add(IdempotencyKey(account_id=account_id, key=key, request_hash=request_hash, task_id=task_id))
        await self.session.flush()

    async def forget_idempotency(self, account_id: uuid.UUID, key: str) -> None:
        await self.session.execute(
            delete(IdempotencyKey).where(IdempotencyKey.account_id == account_id, IdempotencyKey.key == key)
        )

    async def purge_idempotency(self, before: datetime) -> int:
        result = await self.session.execute(delete(IdempotencyKey).where(IdempotencyKey.created_at < before))
        return int(result.rowcount or 0)

    async def notify(self, task: Task, *, webhooks: bool = True) -> None:
        """Tell every API process the row changed; delivered on commit, so listeners see committed state.

        With `webhooks`, the same statement writes the change to the account's webhook outbox (same transaction).
        """
        event = {"id": str(task.id), "pool": task.pool, "status": task.status, "progress": task.progress}
        if not webhooks:
            await self._notify(event)
            return
        params = {"channel": NOTIFY_CHANNEL, "payload": json.dumps(event), "task_id": task.id}
        await self.session.execute(_NOTIFY_AND_RECORD, params)

    async def notify_deleted(self, task: Task) -> None:
        await self._notify({"id": str(task.id), "pool": task.pool, "deleted": True})

    async def _notify(self, event: dict[str, Any]) -> None:
        await self.session.execute(
            text("SELECT pg_notify(:channel, :payload)"), {"channel": NOTIFY_CHANNEL, "payload": json.dumps(event)}
        )
