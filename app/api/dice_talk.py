"""DICE-Talk's own routes, for that service's clients, over the same `talking-head` tasks.

`GET /api/health`, `POST /api/v1/synthesis/start` (multipart `image`, `audio`, `emotion`, `ref_scale`,
`emo_scale`, `crop`), `GET /api/v1/synthesis/{task_id}/status` and `/download`. Bearer keys, credits, rate limits
and tenant isolation are the Meshy routes'; errors carry the service's `error` beside `message` and `detail`.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import FileResponse
from pydantic import BaseModel

from app.api import testmode
from app.api.deps import ApiKeyAuth, DbSession, ReadSession, State
from app.api.errors import error_responses
from app.api.resources import CreateContext, Prepared, create_from
from app.api.v1 import talking_head as th
from app.core.errors import BadRequest, NotFound
from app.core.ids import parse_id
from app.core.queue import queue_for_pool
from app.tasks import service as task_service
from app.tasks.models import Task, TaskStatus

router = APIRouter(tags=["DICE-Talk service"])
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
AUDIO_SUFFIXES = (".wav", ".mp3")
# The service's task states.
_STATUS = {TaskStatus.PENDING.value: "PENDING", TaskStatus.IN_PROGRESS.value: "PROCESSING",
           TaskStatus.SUCCEEDED.value: "COMPLETED", TaskStatus.FAILED.value: "FAILED",
           TaskStatus.CANCELED.value: "CANCELLED"}  # fmt: skip


class SynthesisForm(BaseModel):
    """The multipart fields, as one body (for the shared create path)."""

    emotion: str
    ref_scale: float
    emo_scale: float
    crop: bool


async def _read(upload: UploadFile, field: str, suffixes: tuple[str, ...], max_bytes: int) -> bytes:
    name = os.path.basename(upload.filename or "")
    if os.path.splitext(name)[1].lower() not in suffixes:
        raise BadRequest(f"Invalid {field} file type: use {', '.join(s.lstrip('.') for s in suffixes)}")
    content = await upload.read(max_bytes + 1)
    if len(content) > max_bytes:
        raise BadRequest(f"{field.capitalize()} file too large: at most {max_bytes // 2**20} MB")
    if not content:
        raise BadRequest(f"{field.capitalize()} file is empty")
    return content


@router.get("/api/health")
async def health(state: State) -> dict[str, Any]:
    """The service's health: `healthy` while a worker serves the pool talking-head tasks run in. No key needed."""
    entry = state.registry.resolve("talking-head", "latest")
    pool = entry.pool if entry else "default"
    online = bool(await state.redis.exists(queue_for_pool(state.settings.queue_name, pool) + ":health-check"))
    return {"status": "healthy" if online else "unhealthy", "gpu_available": False, "model_loaded": online,
            "version": "1.0.0", "model": entry.runner if entry else None}  # fmt: skip


@router.post("/api/v1/synthesis/start", responses=error_responses(400, 401, 402, 409, 413, 429))
async def start_synthesis(
    image: Annotated[UploadFile, File(description="Portrait image file (jpg/png, < 10 MB)")],
    audio: Annotated[UploadFile, File(description="Audio file for speech (wav/mp3, < 50 MB)")],
    emotion: Annotated[str, Form(description="Emotion type")],
    principal: ApiKeyAuth,
    session: DbSession,
    state: State,
    ref_scale: Annotated[float, Form(description="Reference scale (0.0-10.0)")] = 3.0,
    emo_scale: Annotated[float, Form(description="Emotion scale (0.0-10.0)")] = 6.0,
    crop: Annotated[bool, Form(description="Whether to crop the image")] = False,
) -> dict[str, Any]:
    """Start a synthesis task (DICE-Talk's multipart form); answers `{task_id, status: "PENDING", message}`."""
    if emotion not in th.EMOTIONS:
        raise BadRequest(f"Invalid emotion {emotion!r}: use one of {', '.join(th.EMOTIONS)}")
    for name, value in (("ref_scale", ref_scale), ("emo_scale", emo_scale)):
        if not 0.0 <= value <= 10.0:
            raise BadRequest(f"{name} must be between 0.0 and 10.0")
    image_bytes = await _read(image, "image", IMAGE_SUFFIXES, th.IMAGE_MAX_BYTES)
    audio_bytes = await _read(audio, "audio", AUDIO_SUFFIXES, th.AUDIO_MAX_BYTES)
    checked = await th.checked_inputs(image_bytes, audio_bytes)
    if principal.test_mode:
        return {"task_id": str(testmode.TALKING_HEAD_ID), "status": "PENDING", "message": "Task created successfully"}
    form = SynthesisForm(emotion=emotion, ref_scale=ref_scale, emo_scale=emo_scale, crop=crop)

    async def prepare(_ctx: CreateContext, body: SynthesisForm) -> Prepared:
        params = {**body.model_dump(), "seed": 0, "ai_model": "latest", "source": "dice-talk"}
        return th.prepared_from(params, image_bytes, audio_bytes, checked,
                                image_echo=os.path.basename(image.filename or "image")[:255],
                                audio_echo=os.path.basename(audio.filename or "audio")[:255])  # fmt: skip

    resource = replace(th.TALKING_HEAD, prepare=prepare)
    task_id = await create_from(resource, form, principal, session, state, None)
    return {"task_id": task_id, "status": "PENDING", "message": "Task created successfully"}


async def _task(task_id: str, principal: Any, session: Any) -> Task:
    if principal.test_mode and parse_id(task_id) == testmode.TALKING_HEAD_ID:
        return testmode.SAMPLES[testmode.TALKING_HEAD_ID]
    parsed = parse_id(task_id)
    task = None
    if parsed is not None:
        task = await task_service.peek_task(
            session, account_id=principal.account_id, task_id=parsed, types=th.TALKING_HEAD.types
        )
    if task is None:
        raise NotFound("Task not found")
    return task


def _iso(moment: datetime | None) -> str:
    return moment.isoformat() if moment else ""


@router.get("/api/v1/synthesis/{task_id}/status", responses=error_responses(401, 404, 429))
async def synthesis_status(task_id: str, principal: ApiKeyAuth, session: ReadSession) -> dict[str, Any]:
    """The task's state as the service reports it: PENDING, PROCESSING, COMPLETED, FAILED (progress 0-1)."""
    task = await _task(task_id, principal, session)
    status = _STATUS.get(task.status, task.status)
    error = (task.task_error or {}).get("message") or None
    messages = {"PENDING": "Task is waiting in the queue", "PROCESSING": "Synthesis in progress",
                "COMPLETED": "Synthesis completed", "FAILED": error or "Synthesis failed",
                "CANCELLED": "Task was cancelled"}  # fmt: skip
    updated = task.finished_at or task.started_at or task.created_at
    return {"task_id": str(task.id), "status": status, "progress": round(task.progress / 100, 2),
            "message": messages.get(status, status), "created_at": _iso(task.created_at), "updated_at": _iso(updated),
            "error": error}  # fmt: skip


@router.get("/api/v1/synthesis/{task_id}/download", responses=error_responses(400, 401, 404, 429),
            response_class=FileResponse)  # fmt: skip
async def synthesis_download(task_id: str, principal: ApiKeyAuth, session: ReadSession, state: State) -> FileResponse:
    """The MP4 of a COMPLETED task (400 before that). The file is looked up by the task, never by a path."""
    task = await _task(task_id, principal, session)
    if task.status != TaskStatus.SUCCEEDED.value:
        raise BadRequest("Task not completed yet")
    name = ((task.outputs or {}).get("result") or {}).get("video_url", "")
    path = await asyncio.to_thread(state.store.path_of, task.id, name)  # S3: through the local cache
    if path is None:
        raise NotFound("Result file not found")
    return FileResponse(path, media_type="video/mp4", filename=f"{task.id}.mp4")
