"""Task rules: creation with charging, ownership, listing, deletion, and the worker's state transitions."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import utcnow
from app.core.errors import Unauthorized
from app.core.ids import new_id, parse_id
from app.core.registry import Registry
from app.core.rowdb import RowPool
from app.tasks.errors import (
    InputTaskNotReady,
    InvalidInputTask,
    InvalidPreviewTask,
    PreviewNotReady,
    TaskNotFound,
    UnsupportedModel,
)
from app.tasks.kinds import COUNTED_TYPES, UNCOUNTED_TYPES, counts_toward_concurrency
from app.tasks.models import Task, TaskStatus, TaskType
from app.tasks.repository import TaskRepository
from billing import service as billing_service
from billing.errors import IdempotencyKeyReused, InsufficientCredits, NoMoreConcurrentTasks, NoMorePendingTasks
from billing.service import Principal

TEXT_TO_3D_TYPES = (TaskType.TEXT_TO_3D_PREVIEW.value, TaskType.TEXT_TO_3D_REFINE.value)
ACTIVE = (TaskStatus.PENDING.value, TaskStatus.IN_PROGRESS.value)


@dataclass(frozen=True)
class TaskView:
    """A task and its queue position, as the edge renders it."""

    task: Task
    preceding_tasks: int


@dataclass(frozen=True)
class Idempotency:
    """A create's `Idempotency-Key` and a hash of its body."""

    key: str
    request_hash: str


@dataclass(frozen=True)
class Created:
    task: Task
    replayed: bool = False  # an Idempotency-Key replay: nothing new was created or charged


IDEMPOTENCY_WINDOW = timedelta(hours=24)
# A plan's priority moves tasks ahead by at most this much (arq keeps a job for a day past its score).
MAX_HEAD_START_S = 3600.0


async def create_task(
    rows: RowPool,
    *,
    principal: Principal,
    task_type: str,
    params: dict[str, Any],
    registry: Registry,
    price: int,
    parent_id: uuid.UUID | None = None,
    idempotency: Idempotency | None = None,
    priority_head_start_s: float = 0.0,
    task_id: uuid.UUID | None = None,
    outputs: dict[str, Any] | None = None,
    retention_s: float = 0.0,
) -> Created:
    """Insert a PENDING task and charge for it, in one round trip and one transaction of its own (`mf_create_task`).

    With `outputs` (an answer found without a worker) the task is SUCCEEDED at once, its files kept `retention_s`.

    The account row is locked first, so the concurrency limit, the idempotency check and the charge of parallel
    creates see each other; the plan's limits and the key's validity are read under that lock (the principal may
    come from a cache). A 401, 402, 409 or 429 raises with nothing written. The task's queue position is now, moved
    `priority_head_start_s` earlier per point of the plan's priority.
    """
    ai_model = params.get("ai_model", "latest")
    entry = registry.resolve(task_type, ai_model)
    if entry is None:
        allowed = ", ".join(registry.ai_models(task_type))
        raise UnsupportedModel(f"Unsupported ai_model {ai_model!r}; this server offers: {allowed}")
    counted = counts_toward_concurrency(task_type)
    task = Task(
        id=task_id or new_id(), account_id=principal.account_id, type=task_type, status=TaskStatus.PENDING.value,
        progress=0, ai_model=ai_model, runner=entry.runner, pool=entry.pool, params=params, parent_id=parent_id,
        seed=int(params.get("seed", 0)), outputs={}, consumed_credits=price, attempts=0,
    )  # fmt: skip
    outcome, found_id, created_at, queued_at = await TaskRepository.create_charged(
        rows, task, price=price, key_id=principal.key_id, head_start_s=priority_head_start_s,
        max_head_start_s=MAX_HEAD_START_S, limited_types=COUNTED_TYPES if counted else UNCOUNTED_TYPES,
        # The 2D resources never hit NoMoreConcurrentTasks, but one account may not flood the shared queue with them.
        slot_factor=1 if counted else billing_service.PENDING_FACTOR,
        idempotency_key=idempotency.key if idempotency else None,
        request_hash=idempotency.request_hash if idempotency else None,
        idempotency_window_s=IDEMPOTENCY_WINDOW.total_seconds(), outputs=outputs, retention_s=retention_s,
    )  # fmt: skip
    if outcome == "created":
        task.created_at, task.queued_at = created_at, queued_at
        if outputs is not None:
            task.status, task.progress, task.outputs = TaskStatus.SUCCEEDED.value, 100, outputs
        return Created(task)
    if outcome == "replay":
        return Created(Task(id=found_id, type=task_type, pool=entry.pool), replayed=True)
    raise _CREATE_REFUSED[outcome](counted)


_CREATE_REFUSED: dict[str, Any] = {
    "unauthorized": lambda _counted: Unauthorized(),
    "idempotency_conflict": lambda _counted: IdempotencyKeyReused(),
    "replay_deleted": lambda _counted: TaskNotFound("The task created with this Idempotency-Key was deleted"),
    "no_slot": lambda counted: NoMoreConcurrentTasks() if counted else NoMorePendingTasks(),
    "insufficient_credits": lambda _counted: InsufficientCredits(),
}


def queue_position(now: datetime, priority: int, head_start_s: float) -> datetime:
    """Where a new task enters its pool's queue: `priority` × `head_start_s` ahead of now, within an hour.

    Never behind now: the position is also the job's arq score, and a score in the future would make a worker
    wait for it even with nothing else queued. A negative priority counts as 0.
    """
    ahead = max(0.0, min(MAX_HEAD_START_S, priority * head_start_s))
    return now - timedelta(seconds=ahead)


async def find_replay(session: AsyncSession, *, account_id: uuid.UUID, idempotency: Idempotency) -> Task | None:
    """The task an earlier create with this Idempotency-Key made (409 if the body differs), or None."""
    return await _replay(TaskRepository(session), account_id, idempotency)


async def _replay(repo: TaskRepository, account_id: uuid.UUID, idempotency: Idempotency) -> Task | None:
    seen = await repo.find_idempotency(account_id, idempotency.key)
    if seen is None:
        return None
    if seen.created_at < utcnow() - IDEMPOTENCY_WINDOW:
        await repo.forget_idempotency(account_id, idempotency.key)
        return None
    if seen.request_hash != idempotency.request_hash:
        raise IdempotencyKeyReused()
    task = await repo.get(seen.task_id)
    if task is None:  # deleted since: the key still names it, so a retry must not create a second one
        raise TaskNotFound("The task created with this Idempotency-Key was deleted")
    return task


async def resolve_preview(session: AsyncSession, *, account_id: uuid.UUID, preview_id: uuid.UUID | None) -> Task:
    """The SUCCEEDED preview a refine builds on (404 when unknown or another account's)."""
    repo = TaskRepository(session)
    task = await repo.get_owned(preview_id, account_id, TEXT_TO_3D_TYPES) if preview_id else None
    if task is None:
        raise TaskNotFound("Preview task not found")
    if task.type != TaskType.TEXT_TO_3D_PREVIEW.value:
        raise InvalidPreviewTask()
    if task.status != TaskStatus.SUCCEEDED.value:
        raise PreviewNotReady()
    return task


async def resolve_input_task(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    input_task_id: str,
    allowed_types: Sequence[str],
    field: str = "input_task_id",
) -> Task:
    """The SUCCEEDED task of the caller's account that `input_task_id` names, of one of `allowed_types`.

    Unknown ids and other accounts' tasks are a 404 (never a 403: no existence leak); a task of another type or
    one that has not succeeded is a 400.
    """
    parsed = parse_id(input_task_id)
    repo = TaskRepository(session)
    task = await repo.get_owned_any(parsed, account_id) if parsed else None
    if task is None:
        raise TaskNotFound(f"{field}: task not found")
    if task.type not in allowed_types:
        raise InvalidInputTask(
            f"Invalid {field}: a {task.type} task cannot be used here; expected {', '.join(allowed_types)}"
        )
    if task.status != TaskStatus.SUCCEEDED.value:
        raise InputTaskNotReady(f"Task not ready: the {field} task has not succeeded")
    if task.expires_at is not None and task.expires_at <= utcnow():
        raise InvalidInputTask(f"Invalid {field}: the task's results have expired")
    return task


async def get_task(
    session: AsyncSession, *, account_id: uuid.UUID, task_id: uuid.UUID | None, types: Sequence[str]
) -> TaskView:
    repo = TaskRepository(session)
    task = await repo.get_owned(task_id, account_id, types) if task_id else None
    if task is None:
        raise TaskNotFound()
    return TaskView(task, await repo.preceding(task))


async def peek_task(
    session: AsyncSession, *, account_id: uuid.UUID, task_id: uuid.UUID, types: Sequence[str]
) -> Task | None:
    """The account's task of one of `types`, without its queue position (a cheap read for pollers)."""
    return await TaskRepository(session).get_owned(task_id, account_id, types)


async def find_any(session: AsyncSession, *, account_id: uuid.UUID, task_id: uuid.UUID | None) -> Task | None:
    """The account's task of any type (3DAIGC-API's job routes know a job by its id alone)."""
    return await TaskRepository(session).get_owned_any(task_id, account_id) if task_id else None


async def status_counts(session: AsyncSession, *, account_id: uuid.UUID) -> dict[str, int]:
    """How many of the account's tasks are in each status."""
    return await TaskRepository(session).status_counts(account_id)


async def list_window(
    session: AsyncSession, *, account_id: uuid.UUID, types: Sequence[str], offset: int, limit: int
) -> list[Task]:
    """The account's tasks of `types`, newest first, from `offset` (3DAIGC-API's job history)."""
    rows = await TaskRepository(session).list_owned(account_id, types, offset=offset, limit=limit, ascending=False)
    return [task for task, _ in rows]


async def list_tasks(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    types: Sequence[str],
    page_num: int,
    page_size: int,
    ascending: bool,
) -> list[TaskView]:
    rows = await TaskRepository(session).list_owned(
        account_id, types, offset=(page_num - 1) * page_size, limit=page_size, ascending=ascending
    )
    return [TaskView(task, preceding) for task, preceding in rows]


async def delete_task(
    session: AsyncSession, *, account_id: uuid.UUID, task_id: uuid.UUID | None, types: Sequence[str]
) -> Task:
    """Delete the row (the caller removes the files after commit); a running job finds it gone and stops.

    The row is locked first, in the same order as a failing job takes its locks (task, then account), so a
    delete racing a failure neither deadlocks nor refunds twice, and sees the status the job left.
    """
    repo = TaskRepository(session)
    task = await repo.get_owned(task_id, account_id, types, for_update=True) if task_id else None
    if task is None:
        raise TaskNotFound()
    if task.status in ACTIVE:
        # Nothing was delivered: give the credits back rather than charge for a task the caller threw away.
        await billing_service.refund(session, task_id=task.id)
    await repo.delete(task.id)
    await repo.notify_deleted(task)
    return task


# --- worker side -------------------------------------------------------------------------------------------


async def claim(
    session: AsyncSession, *, task_id: uuid.UUID, job_timeout_s: float, heartbeat_stale_s: float
) -> Task | None:
    """Move a task to IN_PROGRESS for this worker, or None when it is finished, gone or held by a live worker."""
    now = utcnow()
    repo = TaskRepository(session)
    task = await repo.claim(
        task_id,
        now=now,
        stale_before=now - timedelta(seconds=heartbeat_stale_s),
        deadline=now + timedelta(seconds=job_timeout_s),
    )
    if task is not None:
        await repo.notify(task)
    return task


async def report_progress(session: AsyncSession, *, task_id: uuid.UUID, attempt: int, progress: int) -> bool:
    """Write progress and a heartbeat; False when this attempt no longer owns the task."""
    repo = TaskRepository(session)
    task = await repo.transition(
        task_id,
        expected=[TaskStatus.IN_PROGRESS.value],
        attempt=attempt,
        progress=max(0, min(99, progress)),
        heartbeat_at=utcnow(),
    )
    if task is not None:
        await repo.notify(task)
    return task is not None


async def heartbeat(session: AsyncSession, *, task_id: uuid.UUID, attempt: int) -> bool:
    task = await TaskRepository(session).transition(
        task_id, expected=[TaskStatus.IN_PROGRESS.value], attempt=attempt, heartbeat_at=utcnow()
    )
    return task is not None


async def succeed(
    session: AsyncSession, *, task_id: uuid.UUID, attempt: int, outputs: dict[str, Any], retention_s: int
) -> Task | None:
    now = utcnow()
    repo = TaskRepository(session)
    task = await repo.transition(
        task_id,
        expected=[TaskStatus.IN_PROGRESS.value],
        attempt=attempt,
        status=TaskStatus.SUCCEEDED.value,
        progress=100,
        outputs=outputs,
        finished_at=now,
        expires_at=now + timedelta(seconds=retention_s),
        task_error=None,
    )
    if task is not None:
        await repo.notify(task)
    return task


async def fail(
    session: AsyncSession,
    *,
    task_id: uuid.UUID,
    error: dict[str, Any],
    expected: Sequence[str] = ACTIVE,
    attempt: int | None = None,
) -> Task | None:
    """FAILED with a public task_error, and the credits refunded in the same transaction."""
    repo = TaskRepository(session)
    task = await repo.transition(
        task_id,
        expected=expected,
        attempt=attempt,
        status=TaskStatus.FAILED.value,
        finished_at=utcnow(),
        task_error=error,
        consumed_credits=0,
    )
    if task is None:
        return None
    await billing_service.refund(session, task_id=task.id)
    await repo.notify(task)
    return task


async def requeue(session: AsyncSession, *, task_id: uuid.UUID, attempt: int, release: bool = False) -> Task | None:
    """Give a task back to the queue (PENDING), fenced on `attempt`.

    `release`: the attempt ended cleanly (worker shutdown), so it does not count against MAX_ATTEMPTS; its number
    is free again because that attempt writes nothing more.
    """
    repo = TaskRepository(session)
    extra = {"attempts": attempt - 1} if release else {}
    task = await repo.transition(
        task_id,
        expected=[TaskStatus.IN_PROGRESS.value],
        attempt=attempt,
        status=TaskStatus.PENDING.value,
        progress=0,
        **extra,
    )
    if task is not None:
        await repo.notify(task)
    return task
