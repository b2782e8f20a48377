"""Meshy Text to 3D v2: create (preview and refine), retrieve, list, delete and stream."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Header, Query, Response, status
from fastapi.responses import JSONResponse

from app.api import testmode
from app.api.deps import ApiKeyAuth, DbSession, Links, ReadSession, State, StreamAuth
from app.api.errors import error_responses
from app.api.render import render_task
from app.api.sse import error_stream, open_task_stream
from app.api.v2.schemas import TaskCreated, TextTo3DPreview, TextTo3DRequest, TextTo3DTask
from app.core.ids import parse_id
from app.tasks import service as task_service
from app.tasks.errors import TaskNotFound
from app.tasks.models import Task, TaskType
from app.tasks.repository import TaskRepository
from billing.prices import price_of

log = logging.getLogger(__name__)
router = APIRouter(prefix="/openapi/v2/text-to-3d", tags=["Text to 3D"])
TYPES = task_service.TEXT_TO_3D_TYPES


def _sample(task_id: str) -> Task:
    sample = testmode.SAMPLES.get(parse_id(task_id) or uuid.UUID(int=0))
    if sample is None:
        raise TaskNotFound()
    return sample


def request_hash(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _sort(sort_by: str) -> bool:
    """True for ascending. `+created_at` arrives as " created_at" when the client forgot to encode the plus."""
    return sort_by.strip() == "created_at" or sort_by.startswith("+")


IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=255,
        description="Beyond Meshy: retrying a create with the same key and body returns the same task for 24 h "
        "without a second charge; the same key with another body is a 409.",
    ),
]


@router.post("", status_code=status.HTTP_202_ACCEPTED, responses=error_responses(400, 401, 402, 404, 409, 413, 429))
async def create_text_to_3d(
    body: Annotated[TextTo3DRequest, Body()],
    principal: ApiKeyAuth,
    session: DbSession,
    state: State,
    idempotency_key: IdempotencyKeyHeader = None,
) -> TaskCreated:
    """Create a preview (`mode: "preview"`) or refine (`mode: "refine"`) task. Answers 202 with its id."""
    if principal.test_mode:
        return TaskCreated(result=str(testmode.sample_for_mode(body.mode).id))
    idempotency = (
        task_service.Idempotency(idempotency_key, request_hash(body.model_dump(mode="json")))
        if idempotency_key
        else None
    )
    async with session.begin():
        if isinstance(body, TextTo3DPreview):
            task_type, params, parent = TaskType.TEXT_TO_3D_PREVIEW.value, body.to_params(), None
        else:
            preview = await task_service.resolve_preview(
                session, account_id=principal.account_id, preview_id=parse_id(body.preview_task_id)
            )
            task_type, params, parent = TaskType.TEXT_TO_3D_REFINE.value, body.to_params(preview.params), preview.id
        price = price_of(task_type, params["ai_model"], state.settings.credit_prices)
        created = await task_service.create_task(
            session, principal=principal, task_type=task_type, params=params, registry=state.registry,
            price=price, parent_id=parent, idempotency=idempotency,
            priority_head_start_s=state.settings.priority_head_start_s,
        )  # fmt: skip
    if not created.replayed:
        try:
            await state.queue.enqueue(created.task.id, created.task.pool, created.task.queued_at)  # after the commit
        except Exception:  # the task exists and is paid for: the reaper enqueues it once Redis is back
            log.exception("enqueue of task %s failed; the reaper will retry", created.task.id)
    return TaskCreated(result=str(created.task.id))


@router.get("", response_model=None, responses={200: {"model": list[TextTo3DTask]}, **error_responses(400, 401, 429)})
async def list_text_to_3d(
    principal: ApiKeyAuth,
    session: ReadSession,
    links: Links,
    page_num: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=50)] = 10,
    sort_by: Annotated[Literal["+created_at", "-created_at", " created_at", "created_at"], Query()] = "-created_at",
) -> JSONResponse:
    """The caller's tasks as a bare JSON array, newest first unless `sort_by=%2Bcreated_at`."""
    if principal.test_mode:
        samples = sorted(testmode.SAMPLES.values(), key=lambda t: t.id, reverse=not _sort(sort_by))
        return JSONResponse([render_task(t, 0, links) for t in samples[(page_num - 1) * page_size :][:page_size]])
    views = await task_service.list_tasks(
        session, account_id=principal.account_id, types=TYPES, page_num=page_num, page_size=page_size,
        ascending=_sort(sort_by),
    )  # fmt: skip
    # Rendered straight to JSON: the dicts are built to the wire schema already, no second validation pass.
    return JSONResponse([render_task(v.task, v.preceding_tasks, links) for v in views])


@router.get(
    "/{task_id}", response_model=None, responses={200: {"model": TextTo3DTask}, **error_responses(401, 404, 429)}
)
async def get_text_to_3d(task_id: str, principal: ApiKeyAuth, session: ReadSession, links: Links) -> JSONResponse:
    """One task, preview or refine. Another account's task is a 404."""
    if principal.test_mode:
        return JSONResponse(render_task(_sample(task_id), 0, links))
    view = await task_service.get_task(session, account_id=principal.account_id, task_id=parse_id(task_id), types=TYPES)
    return JSONResponse(render_task(view.task, view.preceding_tasks, links))


@router.delete("/{task_id}", responses=error_responses(401, 404, 429))
async def delete_text_to_3d(task_id: str, principal: ApiKeyAuth, session: DbSession, state: State) -> Response:
    """Delete a task and its files for good; a later GET is a 404."""
    if principal.test_mode:
        _sample(task_id)  # canned tasks stay; Meshy's test mode answers 200 without deleting anything
        return Response(status_code=200)
    async with session.begin():
        task = await task_service.delete_task(
            session, account_id=principal.account_id, task_id=parse_id(task_id), types=TYPES
        )
    await asyncio.to_thread(state.store.delete, task.id)
    return Response(status_code=200)


@router.get(
    "/{task_id}/stream",
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "SSE: `message` events, or one `error` event"},
        204: {"description": "Reconnect after the terminal event (Last-Event-ID): EventSource stops"},
        **error_responses(401, 429),
    },
)
async def stream_text_to_3d(
    task_id: str,
    caller: StreamAuth,
    state: State,
    links: Links,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=64)] = None,
) -> Response:
    """Server-sent events: the full task object now, on each change and every ~10 s; closes after a terminal one.

    Each event is `event: message` with the task JSON on one `data:` line. An unknown (or another account's) id,
    or a refused `?token=`, gets one `event: error` with `{"status_code": ..., "message": ...}`.
    """
    principal = caller.principal
    if principal is None:
        return error_stream(401, caller.error or "Invalid stream token")
    parsed = parse_id(task_id) or uuid.UUID(int=0)

    async def load() -> tuple[Task, int] | None:
        if principal.test_mode:
            sample = testmode.SAMPLES.get(parsed)
            return (sample, 0) if sample else None
        async with state.reader() as session:
            repo = TaskRepository(session)
            task = await repo.get_owned(parsed, principal.account_id, TYPES)
            return (task, await repo.preceding(task)) if task else None

    return await open_task_stream(
        hub=state.hub, task_id=parsed, load=load, links=links,
        last_event_id=last_event_id, keepalive_s=state.settings.sse_keepalive_s,
        max_lifetime_s=state.settings.sse_max_lifetime_s,
    )  # fmt: skip
