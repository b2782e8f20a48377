"""The HY-Motion service's own shape, for clients written against it: `POST /generate-motion`.

Its body (`prompt` at most 60 characters and 30 words, `duration_sec` 1-5, `model_type` standard|lite,
`output_format` fbx|bvh) becomes an ordinary `text-to-motion` task of the caller's (same bearer keys, credits, rate
limits and queue; visible under `/openapi/v1/text-to-motion`), and the answer waits for it, as that service's
synchronous endpoint does: `{status, output_url, duration_sec, inference_time_sec, model_used}` plus `task_id`
(`model_used` names the model that really ran; the requested `model_type` is echoed beside it).
Its errors are 400s with that service's words; a failed task is a 500 "Inference error: ..." (refunded); a task still
running after `WAIT_S` is a 504 naming the task id, to be polled on the Meshy route.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Request

from app.api import testmode
from app.api.deps import ApiKeyAuth, DbSession, Links, State
from app.api.errors import error_responses
from app.api.resources import CreateContext, IdempotencyKeyHeader, Prepared, Resource, create_from
from app.api.v1.character_schemas import GenerateMotionRequest, MotionTask
from app.core.errors import AppError, BadRequest
from app.core.ids import parse_id
from app.tasks import service as task_service
from app.tasks.models import Task, TaskStatus, TaskType

router = APIRouter(tags=["HY-Motion service"])
WAIT_S = 300.0
POLL_S = 0.25  # first poll delay; it grows by half each time up to POLL_MAX_S
POLL_MAX_S = 2.0
MAX_WORDS = 30


class InferenceError(AppError):
    status_code = 500
    message = "Inference error"


class StillRunning(AppError):
    status_code = 504
    message = "The motion is still being generated"


async def _prepare(ctx: CreateContext, body: GenerateMotionRequest) -> Prepared:
    mode = "prime" if body.output_format == "fbx" else "swift"
    params = {"prompt": body.prompt, "duration": body.duration_sec, "mode": mode, "ai_model": "latest",
              "model_type": body.model_type, "source": "generate-motion"}  # fmt: skip
    return Prepared(TaskType.TEXT_TO_MOTION.value, params, variant=mode)


GENERATE_MOTION = Resource(
    slug="generate-motion", path="/generate-motion", tag="HY-Motion service", request=GenerateMotionRequest,
    types=(TaskType.TEXT_TO_MOTION.value,), task_model=MotionTask, prepare=_prepare,
)  # fmt: skip


@router.post("/generate-motion", responses=error_responses(400, 401, 402, 409, 429, 500, 504))
async def generate_motion(
    body: GenerateMotionRequest,
    request: Request,
    principal: ApiKeyAuth,
    session: DbSession,
    state: State,
    links: Links,
    idempotency_key: IdempotencyKeyHeader = None,
) -> dict[str, Any]:
    """Generate a motion clip and wait for it (the HY-Motion service's synchronous endpoint). With an
    Idempotency-Key, a client retrying after its own timeout waits for the same task instead of paying again."""
    if not body.prompt.strip():
        raise BadRequest("Prompt cannot be empty")
    if len(body.prompt.split()) > MAX_WORDS:
        raise BadRequest("Prompt must contain ≤30 words")
    if principal.test_mode:  # Meshy's test key: the canned text-to-motion sample, nothing charged
        sample = testmode.SAMPLES[testmode.TEXT_TO_MOTION_ID]
        return _answer(sample, body, links, 0.0)
    task_id = parse_id(await create_from(GENERATE_MOTION, body, principal, session, state, idempotency_key))
    deadline = time.monotonic() + WAIT_S
    delay = POLL_S
    while True:
        async with state.sessionmaker() as poll:  # a short read per poll: no connection is held while waiting
            task = await task_service.peek_task(
                poll, account_id=principal.account_id, task_id=task_id, types=GENERATE_MOTION.types
            )
        if task is None:  # deleted meanwhile
            raise InferenceError(f"Inference error: the task was deleted (task {task_id})")
        if task.status == TaskStatus.SUCCEEDED.value:
            ran = (task.started_at, task.finished_at)
            return _answer(task, body, links, (ran[1] - ran[0]).total_seconds() if all(ran) else 0.0)
        if task.status in (TaskStatus.FAILED.value, TaskStatus.CANCELED.value):
            reason = (task.task_error or {}).get("message") or task.status.lower()
            raise InferenceError(f"Inference error: {reason} (task {task_id})")
        if time.monotonic() > deadline or await request.is_disconnected():
            raise StillRunning(f"The motion is still being generated: poll GET /openapi/v1/text-to-motion/{task_id}")
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, POLL_MAX_S)


def _answer(task: Task, body: GenerateMotionRequest, links: Links, elapsed: float) -> dict[str, Any]:
    result = (task.outputs or {}).get("result", {})
    return {
        "status": "success", "output_url": links.url(task, result["motion_url"]), "duration_sec": body.duration_sec,
        "inference_time_sec": round(elapsed, 2),
        # What really made it (the seed's service answers with its model_type; ours may run another model).
        "model_used": task.runner or body.model_type, "model_type": body.model_type, "task_id": str(task.id),
        "output_format": result.get("motion_format"),
    }  # fmt: skip
