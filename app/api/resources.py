"""One task resource, declared once; one factory gives it Meshy's five verbs.

A `Resource` says what differs between Meshy's task endpoints: its URL, request schema, task types, how a body
becomes a task (`prepare`: parameters, the input task it builds on, inline files, the price variant), and its
test-mode sample. Everything else is shared and lives here: create (202 `{"result": id}`, Idempotency-Key, test
mode, charge, enqueue after commit), get, list (a bare array), delete and the SSE stream. A task is found only
under the resource that owns its type, so the MCP server's "try GET on each resource" sees clean 404s.

No `from __future__ import annotations` here: the route functions are built in a closure and FastAPI must see
their annotations as objects (the request model differs per resource).
"""

import asyncio
import hashlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Body, Header, Query, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from app.api import testmode
from app.api.admission import admit_task
from app.api.comfy import inline_uploads, names_uploads
from app.api.deps import (
    READER_SECURITY,
    ApiKeyAuth,
    CachedAuth,
    DbSession,
    Links,
    ReaderAuth,
    State,
    StreamAuth,
    get_reader,
)
from app.api.errors import error_responses
from app.api.render import render_task
from app.api.retrieval import Retrieve, find_match, stage
from app.api.routing import LeanRoute, PrefixedRouter
from app.api.sse import error_stream, open_task_stream
from app.api.state import AppState
from app.api.v2.schemas import TaskCreated
from app.core import logs, metrics
from app.core.assets import Staged
from app.core.errors import Unauthorized
from app.core.ids import new_id, parse_id
from app.tasks import reads as task_reads
from app.tasks import service as task_service
from app.tasks.errors import TaskNotFound
from app.tasks.models import Task
from app.tasks.repository import TaskRepository
from billing.prices import price_of
from billing.service import Principal

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CreateContext:
    """What `prepare` may use: the open transaction, the caller and the process state."""

    session: AsyncSession
    principal: Principal
    state: AppState


@dataclass
class Prepared:
    """A create body turned into a task: its type, parameters (echoed and handed to the worker), what it builds on,
    the price variant ("textured"), how many priced units it is (animations: one per action), and inline input
    files to store under the task (name -> bytes)."""

    task_type: str
    params: dict[str, Any]
    parent_id: uuid.UUID | None = None
    variant: str | None = None
    files: dict[str, bytes] = field(default_factory=dict)
    quantity: int = 1
    retrieve: Retrieve | None = None  # retrieve-before-generate: search first, answer from a match


@dataclass(frozen=True)
class Resource:
    slug: str  # "image-to-3d": operation ids and test-mode samples
    path: str  # "/openapi/v1/image-to-3d"
    tag: str
    request: Any  # the pydantic model (or annotated union) of the create body
    types: tuple[str, ...]  # the task types listed and found under this URL
    task_model: type[BaseModel]  # the task object, for OpenAPI
    prepare: Callable[[CreateContext, Any], Awaitable[Prepared]]
    summary: str = ""


def request_hash(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _ascending(sort_by: str) -> bool:
    """`+created_at` arrives as " created_at" when the client forgot to encode the plus."""
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


async def create_from(resource: Resource, body: Any, principal: Principal, session: AsyncSession, state: AppState,
                      idempotency_key: str | None) -> str:  # fmt: skip
    """Create (or replay) a task of `resource` and enqueue it after the commit; the task id."""
    idempotency = None
    if idempotency_key:
        digest = await asyncio.to_thread(request_hash, {"resource": resource.slug, **body.model_dump(mode="json")})
        idempotency = task_service.Idempotency(idempotency_key, digest)
        # A retry gets its task back before anything is prepared again: its input task may be gone since, and its
        # data URIs need no second decode. (create_task checks again under the account lock, for racing retries.)
        async with session.begin():
            replay = await task_service.find_replay(session, account_id=principal.account_id, idempotency=idempotency)
        if replay is not None:
            if not await state.auth.still_valid(principal):  # the principal may come from the cache
                state.auth.forget(principal.key_id)
                raise Unauthorized()
            return str(replay.id)
    task_id = new_id()
    stored = False
    staged: Staged | None = None
    try:
        # ComfyUI names its uploads by their download URLs: the caller's own are read from the store, not fetched.
        if names_uploads(body):  # reads files: off the loop, and only when a body names an upload
            body = await asyncio.to_thread(inline_uploads, body, principal, state)
        # Read-only, and most creates read nothing here: the transaction begins with the first read, if any.
        prepared = await resource.prepare(CreateContext(session, principal, state), body)
        match, outputs = None, None
        if prepared.retrieve is not None:
            match = await find_match(session, state, principal.account_id, prepared.retrieve)
            if match is not None:
                found = await asyncio.to_thread(stage, state, match, task_id)
                if found is not None:  # staged under the new task's id: dropped below unless committed
                    outputs, staged = found
                match = match if found is not None else None
            if match is not None:
                prepared.variant = "retrieved"
                prepared.params = {**prepared.params, "retrieved_from": match.described()}
                prepared.files = {}  # nothing will be generated from them
        if match is None:  # a worker will run it: refused now if none can, 503 if all that can are full
            await admit_task(state, prepared.task_type, prepared.params)
        price = price_of(
            prepared.task_type, prepared.params.get("ai_model", ""), state.settings.credit_prices,
            variant=prepared.variant,
        ) * prepared.quantity  # fmt: skip
        if session.in_transaction():
            await session.commit()  # frees the connection before the create's own round trip
        # The reads above are done; the create itself is one round trip and one short transaction of its own.
        answered = match is not None and outputs is not None and staged is not None
        if prepared.files:
            stored = True  # inputs are in place before the create makes the task visible to a worker
            await asyncio.to_thread(_store_inputs, state, task_id, prepared.files)
        if answered:
            stored = True  # the found model's files are in place before the create shows the task SUCCEEDED
            await asyncio.to_thread(state.store.commit, staged)
        try:
            created = await task_service.create_task(
                state.creates, principal=principal, task_type=prepared.task_type, params=prepared.params,
                registry=state.registry, price=price, parent_id=prepared.parent_id, idempotency=idempotency,
                priority_head_start_s=state.settings.priority_head_start_s, task_id=task_id,
                outputs=outputs if answered else None, retention_s=state.settings.asset_retention_s,
            )  # fmt: skip
        except Unauthorized:  # the key was revoked (the principal came from the cache): drop it now
            state.auth.forget(principal.key_id)
            raise
        if created.replayed:  # a racing retry created it first: nothing of ours is used
            if stored:
                await asyncio.to_thread(state.store.delete, task_id)
            return str(created.task.id)
        if answered:
            _observe_created(created.task, finished=True)
            return str(created.task.id)
    except BaseException:
        if stored:
            await asyncio.to_thread(state.store.delete, task_id)
        raise
    finally:
        if staged is not None:  # committed, or abandoned: an uncommitted stage must not stay
            await asyncio.to_thread(state.store.discard, staged)
    if not created.replayed:
        _observe_created(created.task)
        try:
            await state.queue.enqueue(created.task.id, created.task.pool, created.task.queued_at)
        except Exception:  # the task exists and is paid for: the reaper enqueues it once Redis is back
            log.exception("enqueue of task %s failed; the reaper will retry", created.task.id)
    return str(created.task.id)


def _created(task_id: str) -> Response:
    """`{"result": task_id}`, 202: what `TaskCreated` serialises to, without validating our own output per request."""
    body = orjson.dumps({"result": task_id})
    return Response(body, status_code=status.HTTP_202_ACCEPTED, media_type="application/json")


def _observe_created(task: Task, *, finished: bool = False) -> None:
    logs.set_task(task.id)
    metrics.task_created(task.type)
    if finished:  # answered from a match: SUCCEEDED at once
        metrics.task_finished(task.type, "SUCCEEDED")


def _store_inputs(state: AppState, task_id: uuid.UUID, files: dict[str, bytes]) -> None:
    for name, content in files.items():
        state.store.save_input(task_id, name, content)


def resource_router(resource: Resource) -> APIRouter:
    """The five verbs for `resource`; see the module docstring."""
    router = PrefixedRouter(prefix=resource.path, tags=[resource.tag])
    types = resource.types
    op = resource.slug.replace("-", "_").replace("/", "_")

    def sample(task_id: str) -> Task:
        task = testmode.SAMPLES.get(parse_id(task_id) or uuid.UUID(int=0))
        if task is None or task.type not in types:
            raise TaskNotFound()
        return task

    @router.post(
        "", status_code=status.HTTP_202_ACCEPTED, operation_id=f"create_{op}", summary=resource.summary or None,
        response_model=TaskCreated, responses=error_responses(400, 401, 402, 404, 409, 413, 429, 503),
    )  # fmt: skip
    async def create(
        body: Annotated[resource.request, Body()],  # type: ignore[name-defined]
        principal: CachedAuth,  # the key is checked again in the statement that locks the account
        session: DbSession,
        state: State,
        idempotency_key: IdempotencyKeyHeader = None,
    ) -> Response:
        """Create a task; answers 202 with its id. Credits are charged now and refunded if it fails."""
        if principal.test_mode:  # Meshy's test key: the same canned SUCCEEDED task whatever the input
            return _created(str(testmode.sample_for(resource.slug, body).id))
        return _created(await create_from(resource, body, principal, session, state, idempotency_key))

    @router.get(
        "", response_model=None, operation_id=f"list_{op}", openapi_extra=READER_SECURITY,
        responses={200: {"model": list[resource.task_model]}, **error_responses(400, 401, 429)},  # type: ignore[name-defined]
    )  # fmt: skip
    async def list_tasks(
        reader: ReaderAuth,
        page_num: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
        page_size: Annotated[int, Query(ge=1, le=50)] = 10,
        sort_by: Annotated[Literal["+created_at", "-created_at", " created_at", "created_at"], Query()] = "-created_at",
    ) -> Response:
        """The caller's tasks as a bare JSON array, newest first unless `sort_by=%2Bcreated_at`."""
        principal, state, links = reader.principal, reader.state, reader.links
        if principal.test_mode:
            samples = sorted(
                (t for t in testmode.SAMPLES.values() if t.type in types), key=lambda t: t.id,
                reverse=not _ascending(sort_by),
            )  # fmt: skip
            page = samples[(page_num - 1) * page_size :][:page_size]
            return JSONResponse([render_task(t, 0, links) for t in page])
        rows = await task_reads.page(
            state.rows, account_id=principal.account_id, key_id=principal.key_id, types=types,
            offset=(page_num - 1) * page_size, limit=page_size, ascending=_ascending(sort_by),
        )  # fmt: skip
        await reader.check_key(rows[0].key_valid if rows else None)
        # One prepared statement; each object rendered (signed, encoded) once per row version, straight to bytes.
        return Response(state.renders.render_list(rows, links), media_type="application/json")

    async def get_task(task_id: str, reader: ReaderAuth) -> Response:
        """One task. Another account's task is a 404."""
        principal, state, links = reader.principal, reader.state, reader.links
        if principal.test_mode:
            return JSONResponse(render_task(sample(task_id), 0, links))
        parsed = parse_id(task_id)
        row = None
        if parsed is not None:
            row = await task_reads.get_owned(
                state.rows, task_id=parsed, account_id=principal.account_id, key_id=principal.key_id, types=types
            )
        await reader.check_key(row.key_valid if row is not None else None)
        if row is None:
            raise TaskNotFound()
        return Response(state.renders.render(row, links), media_type="application/json")

    async def get_task_lean(request: Request) -> Response:
        # What FastAPI would do for get_task's signature: the path parameter as is, the one dependency.
        return await get_task(request.path_params["task_id"], await get_reader(request))

    get_task.lean = get_task_lean  # type: ignore[attr-defined]
    router.add_api_route(
        "/{task_id}", get_task, methods=["GET"], response_model=None, operation_id=f"get_{op}",
        openapi_extra=READER_SECURITY, route_class_override=LeanRoute,
        responses={200: {"model": resource.task_model}, **error_responses(401, 404, 429)},
    )  # fmt: skip

    @router.delete("/{task_id}", operation_id=f"delete_{op}", responses=error_responses(401, 404, 429))
    async def delete_task(task_id: str, principal: ApiKeyAuth, session: DbSession, state: State) -> Response:
        """Delete a task and its files for good; a later GET is a 404. An unfinished task's credits come back."""
        if principal.test_mode:
            sample(task_id)  # canned tasks stay; Meshy's test mode answers 200 without deleting anything
            return Response(status_code=200)
        async with session.begin():
            task = await task_service.delete_task(
                session, account_id=principal.account_id, task_id=parse_id(task_id), types=types
            )
        await asyncio.to_thread(state.store.delete, task.id)
        return Response(status_code=200)

    @router.get(
        "/{task_id}/stream",
        operation_id=f"stream_{op}",
        responses={
            200: {"content": {"text/event-stream": {}}, "description": "SSE: `message` events, or one `error` event"},
            204: {"description": "Reconnect after the terminal event (Last-Event-ID): EventSource stops"},
            **error_responses(401, 429),
        },
    )
    async def stream_task(
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
                found = testmode.SAMPLES.get(parsed)
                return (found, 0) if found is not None and found.type in types else None
            async with state.reader() as session:
                repo = TaskRepository(session)
                task = await repo.get_owned(parsed, principal.account_id, types)
                return (task, await repo.preceding(task)) if task else None

        return await open_task_stream(
            hub=state.hub, task_id=parsed, load=load, links=links,
            last_event_id=last_event_id, keepalive_s=state.settings.sse_keepalive_s,
            max_lifetime_s=state.settings.sse_max_lifetime_s,
        )  # fmt: skip

    return router
