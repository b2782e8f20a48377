"""3DAIGC-API's routes as a thin layer over MeshFoundry's tasks (its README and code describe them; the docs list
every difference).

A submit route validates the gateway's body, turns it into the Meshy-shaped body of the matching resource (uploads by
`*_file_id` and inline `*_base64` become data URIs; server-side `*_path`s are refused) and creates an ordinary task
through `create_from`: same rows, credits, queue, workers and SSE; the `job_id` is the task id, so the job is also
visible under its Meshy route, and any task of the account is a job here. The job routes render a task in the
gateway's shape (`queued|processing|completed|failed|cancelled`, progress 0-1, ISO times, `result.mesh_url`).
Unlike the seed, every route needs a bearer key, and its shutdown route is not copied.

| feature | route | MeshFoundry resource |
|---|---|---|
| text_to_raw_mesh | mesh-generation/text-to-raw-mesh | text-to-3d preview |
| text_to_textured_mesh | mesh-generation/text-to-textured-mesh | text-to-3d preview, textured in the same task |
| text_mesh_painting | mesh-generation/text-mesh-painting | retexture (text_style_prompt) |
| image_to_raw_mesh | mesh-generation/image-to-raw-mesh | image-to-3d, should_texture false |
| image_to_textured_mesh | mesh-generation/image-to-textured-mesh | image-to-3d |
| image_mesh_painting | mesh-generation/image-mesh-painting | retexture (image_style_url) |
| mesh_segmentation | mesh-segmentation/segment-mesh | mesh-segmentation |
| part_completion | mesh-generation/part-completion | part-completion |
| auto_rig | auto-rigging/generate-rig (and the test client's auto-rig/generate-rig) | rigging |
"""

from __future__ import annotations

import asyncio
import base64
import functools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import psutil
from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from app.api.aigc_uploads import UploadStore
from app.api.catalog import RESOURCES
from app.api.deps import ApiKeyAuth, DbSession, ReadSession, State
from app.api.errors import error_responses
from app.api.resources import CreateContext, Prepared, create_from
from app.api.v1.capabilities import pools_online
from app.core.assets import StoredFile
from app.core.errors import BadRequest, NotFound
from app.core.ids import parse_id
from app.tasks import service as task_service
from app.tasks.kinds import KINDS, OutputShape, shape_of
from app.tasks.models import Task, TaskStatus, TaskType

router = APIRouter(prefix="/api/v1", tags=["3DAIGC-API"])
BY_SLUG = {r.slug: r for r in RESOURCES}
STATUS = {
    TaskStatus.PENDING.value: "queued", TaskStatus.IN_PROGRESS.value: "processing",
    TaskStatus.SUCCEEDED.value: "completed", TaskStatus.FAILED.value: "failed", TaskStatus.CANCELED.value: "cancelled",
}  # fmt: skip
MEDIA_TYPES = {
    ".glb": "model/gltf-binary", ".fbx": "model/fbx", ".obj": "application/wavefront-obj", ".stl": "model/stl",
    ".usdz": "model/vnd.usdz+zip", ".png": "image/png", ".bvh": "application/octet-stream", ".json": "application/json",
}  # fmt: skip


class JobNotFound(NotFound):
    message = "Job not found"


class JobNotDone(BadRequest):
    message = "Job is not completed yet"


# --- request bodies (the gateway's field names; unknown keys such as seed or model_parameters are ignored) ---------


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")

    output_format: str = "glb"
    model_preference: str = ""

    def media(self, name: str) -> tuple[str | None, str | None, str | None]:
        return (
            getattr(self, f"{name}_path", None),
            getattr(self, f"{name}_base64", None),
            getattr(self, f"{name}_file_id", None),
        )


class TextBody(_Body):
    text_prompt: str = Field(min_length=1, max_length=600)
    texture_prompt: str = Field("", max_length=600)
    texture_resolution: int = Field(1024, ge=256, le=4096)


class _MeshInput(_Body):
    mesh_path: str | None = None
    mesh_base64: str | None = None
    mesh_file_id: str | None = None


class _ImageInput(_Body):
    image_path: str | None = None
    image_base64: str | None = None
    image_file_id: str | None = None


class TextPaintBody(_MeshInput):
    text_prompt: str = Field(min_length=1, max_length=600)
    texture_resolution: int = Field(1024, ge=256, le=4096)


class ImageBody(_ImageInput):
    texture_image_path: str | None = None
    texture_image_base64: str | None = None
    texture_image_file_id: str | None = None
    texture_resolution: int = Field(1024, ge=256, le=4096)


class ImagePaintBody(_ImageInput, _MeshInput):
    texture_resolution: int = Field(1024, ge=256, le=4096)


class SegmentBody(_MeshInput):
    num_parts: int = Field(8, ge=2, le=32)


class RigBody(_MeshInput):
    rig_mode: str = "skeleton"
    output_format: str = "fbx"


@dataclass(frozen=True)
class Feature:
    name: str
    resource: str  # the MeshFoundry resource slug
    task_type: str
    body: type[_Body]
    message: str
    to_meshy: Callable[[Any, dict[str, str]], dict[str, Any]]  # (gateway body, media data URIs) -> Meshy body
    internal: dict[str, Any] | None = None  # params the Meshy body cannot carry (text_to_textured_mesh's `_textured`)


def _text_raw(b: TextBody, _m: dict[str, str]) -> dict[str, Any]:
    return {"mode": "preview", "prompt": b.text_prompt, "target_formats": ["glb"]}


def _text_textured(b: TextBody, _m: dict[str, str]) -> dict[str, Any]:
    return {"mode": "preview", "prompt": b.text_prompt, "target_formats": ["glb"]}


def _image(textured: bool) -> Callable[[ImageBody, dict[str, str]], dict[str, Any]]:
    def build(_b: ImageBody, m: dict[str, str]) -> dict[str, Any]:
        body = {"image_url": m["image"], "should_texture": textured, "target_formats": ["glb"]}
        if textured and "texture_image" in m:
            body["texture_image_url"] = m["texture_image"]
        return body

    return build


FEATURES: dict[str, Feature] = {
    f.name: f
    for f in (
        Feature("text_to_raw_mesh", "text-to-3d", TaskType.TEXT_TO_3D_PREVIEW.value, TextBody,
                "Text-to-raw-mesh generation job queued successfully", _text_raw),
        Feature("text_to_textured_mesh", "text-to-3d", TaskType.TEXT_TO_3D_PREVIEW.value, TextBody,
                "Text-to-textured-mesh generation job queued successfully", _text_textured,
                internal={"_textured": True}),
        Feature("text_mesh_painting", "retexture", TaskType.RETEXTURE.value, TextPaintBody,
                "Text-based mesh painting job queued successfully",
                lambda b, m: {"model_url": m["mesh"], "text_style_prompt": b.text_prompt, "target_formats": ["glb"],
                              "hd_texture": b.texture_resolution > 1024}),
        Feature("image_to_raw_mesh", "image-to-3d", TaskType.IMAGE_TO_3D.value, ImageBody,
                "Image-to-raw-mesh generation job queued successfully", _image(False)),
        Feature("image_to_textured_mesh", "image-to-3d", TaskType.IMAGE_TO_3D.value, ImageBody,
                "Image-to-textured-mesh generation job queued successfully", _image(True)),
        Feature("image_mesh_painting", "retexture", TaskType.RETEXTURE.value, ImagePaintBody,
                "Image-based mesh painting job queued successfully",
                lambda b, m: {"model_url": m["mesh"], "image_style_url": m["image"], "target_formats": ["glb"],
                              "hd_texture": b.texture_resolution > 1024}),
        Feature("mesh_segmentation", "mesh-segmentation", TaskType.MESH_SEGMENTATION.value, SegmentBody,
                "Mesh segmentation job queued successfully",
                lambda b, m: {"model_url": m["mesh"], "num_parts": b.num_parts}),
        Feature("part_completion", "part-completion", TaskType.PART_COMPLETION.value, _MeshInput,
                "Part completion job queued successfully", lambda _b, m: {"model_url": m["mesh"]}),
        Feature("auto_rig", "rigging", TaskType.RIG.value, RigBody, "Auto-rigging job queued successfully",
                lambda _b, m: {"model_url": m["mesh"]}),
    )
}  # fmt: skip
# A job made through the Meshy routes is a job here too: its feature from its type.
_FEATURE_OF_TYPE = {
    TaskType.TEXT_TO_3D_PREVIEW.value: "text_to_raw_mesh", TaskType.TEXT_TO_3D_REFINE.value: "text_to_textured_mesh",
    TaskType.IMAGE_TO_3D.value: "image_to_textured_mesh", TaskType.RETEXTURE.value: "text_mesh_painting",
    TaskType.MESH_SEGMENTATION.value: "mesh_segmentation", TaskType.PART_COMPLETION.value: "part_completion",
    TaskType.RIG.value: "auto_rig",
}  # fmt: skip


def feature_models(state: Any, feature: Feature) -> dict[str, str]:
    """The gateway's model ids for a feature on this server: `<runner>_<feature>` -> the ai_model to ask for."""
    table = state.registry.models.get(feature.task_type, {})
    out: dict[str, str] = {}
    for ai_model in sorted(table, key=lambda m: (m != "latest", m)):
        model_id = f"{table[ai_model].runner.replace('-', '_')}_{feature.name}"
        out.setdefault(model_id, ai_model)
    return out


def _media(body: _Body, name: str, kind: str, store: UploadStore, account_id: uuid.UUID) -> str | None:
    """One media input as a data URI: an upload of the caller's, or inline base64; a server path is refused."""
    path, inline, file_id = body.media(name)
    given = [v for v in (path, inline, file_id) if v]
    label = name.replace("_", " ")
    if not given:
        return None
    if len(given) > 1:
        raise BadRequest(f"Only one of {name}_path, {name}_base64, or {name}_file_id should be provided")
    if path:
        raise BadRequest(f"{name}_path is not accepted here: upload the file (POST /api/v1/file-upload/{kind}) and "
                         f"send {name}_file_id")  # fmt: skip
    if inline:
        try:
            content = base64.b64decode(inline.split(",", 1)[-1], validate=True)
        except ValueError as exc:
            raise BadRequest(f"Invalid {label} data: not base64") from exc
    else:
        found = store.get(account_id, str(file_id), "mesh" if kind == "mesh" else "image")
        if found is None:
            raise NotFound(f"{label.capitalize()} file not found or expired")
        content = found[1].read_bytes()
    if kind == "mesh":
        return "data:application/octet-stream;base64," + base64.b64encode(content).decode()
    media_type = "image/png" if content.startswith(b"\x89PNG") else "image/jpeg"
    return f"data:{media_type};base64," + base64.b64encode(content).decode()


@functools.cache
def _adapter(slug: str) -> TypeAdapter:
    """The resource's request schema (a model, or text-to-3d's preview/refine union) as a validator."""
    return TypeAdapter(BY_SLUG[slug].request)


def _validation_message(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    return f"Invalid parameter {where}: {message}" if where else message


async def _submit(feature: Feature, body: _Body, principal: Any, session: Any, state: Any) -> dict[str, Any]:
    models = feature_models(state, feature)
    if body.model_preference and body.model_preference not in models:
        raise BadRequest(f"Model '{body.model_preference}' is not available for feature '{feature.name}'. "
                         f"Available models: {sorted(models)}")  # fmt: skip
    model_id = body.model_preference or next(iter(models))
    if feature.name == "auto_rig" and body.rig_mode.lower() not in ("skeleton", "skin", "full"):  # type: ignore[attr-defined]
        raise BadRequest("Invalid rig mode. Allowed: skeleton, skin, full")
    allowed_formats = ("glb", "fbx") if feature.name == "auto_rig" else ("glb",)
    if body.output_format.lower() not in allowed_formats:
        raise BadRequest(f"Output format must be one of: {list(allowed_formats)}")
    store = UploadStore(state.settings.assets_path)
    media: dict[str, str] = {}
    for name, kind in (("mesh", "mesh"), ("image", "image"), ("texture_image", "image")):
        if hasattr(body, f"{name}_file_id"):
            uri = await asyncio.to_thread(_media, body, name, kind, store, principal.account_id)
            if uri is not None:
                media[name] = uri
    for required in ("mesh", "image"):
        if hasattr(body, f"{required}_file_id") and required not in media:
            raise BadRequest(f"One of {required}_path, {required}_base64, or {required}_file_id must be provided")
    meshy = feature.to_meshy(body, media)
    ai_model = models[model_id]
    if feature.resource not in ("rigging", "part-completion"):
        meshy["ai_model"] = ai_model
    resource = BY_SLUG[feature.resource]
    try:
        request = _adapter(resource.slug).validate_python(meshy)
    except ValidationError as exc:
        raise BadRequest(_validation_message(exc)) from exc
    record = {"feature": feature.name, "model_preference": model_id, "output_format": body.output_format.lower(),
              "inputs": body.model_dump(exclude={"mesh_base64", "image_base64", "texture_image_base64"})}  # fmt: skip

    async def prepare(ctx: CreateContext, parsed: Any) -> Prepared:
        prepared = await resource.prepare(ctx, parsed)
        prepared.params = {**prepared.params, **(feature.internal or {}), "_aigc": record}
        return prepared

    job_id = await create_from(replace(resource, prepare=prepare), request, principal, session, state, None)
    return {"job_id": job_id, "status": "queued", "message": feature.message}


def _submit_route(path: str, feature_name: str) -> None:
    feature = FEATURES[feature_name]
    body_model = feature.body

    async def submit(body: body_model, principal: ApiKeyAuth, session: DbSession, state: State) -> dict[str, Any]:  # type: ignore[valid-type]
        return await _submit(feature, body, principal, session, state)

    submit.__annotations__["body"] = body_model  # a local class: FastAPI must see the object, not its name
    submit.__name__ = f"submit_{feature_name}"
    submit.__doc__ = (
        f"3DAIGC-API's {feature_name}: creates a `{feature.resource}` task; answers `{{job_id, status, message}}`."
    )
    router.post(path, responses=error_responses(400, 401, 402, 404, 429), operation_id=f"aigc_{feature_name}")(submit)


for _path, _feature in (
    ("/mesh-generation/text-to-raw-mesh", "text_to_raw_mesh"),
    ("/mesh-generation/text-to-textured-mesh", "text_to_textured_mesh"),
    ("/mesh-generation/text-mesh-painting", "text_mesh_painting"),
    ("/mesh-generation/image-to-raw-mesh", "image_to_raw_mesh"),
    ("/mesh-generation/image-to-textured-mesh", "image_to_textured_mesh"),
    ("/mesh-generation/image-mesh-painting", "image_mesh_painting"),
    ("/mesh-generation/part-completion", "part_completion"),
    ("/mesh-segmentation/segment-mesh", "mesh_segmentation"),
    ("/auto-rigging/generate-rig", "auto_rig"),
):
    _submit_route(_path, _feature)


@router.post("/auto-rig/generate-rig", include_in_schema=False)
async def submit_auto_rig_alias(
    body: RigBody, principal: ApiKeyAuth, session: DbSession, state: State
) -> dict[str, Any]:
    """The path the gateway's own test client posts rigging to."""
    return await _submit(FEATURES["auto_rig"], body, principal, session, state)


# --- jobs ---------------------------------------------------------------------------------------------------------


def _iso(moment: datetime | None) -> str | None:
    return moment.replace(tzinfo=None).isoformat() if moment else None


def _output(task: Task) -> tuple[str | None, str | None]:
    """(main file, thumbnail) names of a finished task's outputs."""
    outputs = task.outputs or {}
    record = (task.params or {}).get("_aigc") or {}
    if shape_of(task.type) is OutputShape.RESULT:
        result = outputs.get("result") or {}
        if task.type == TaskType.RIG.value:
            key = "rigged_character_glb_url" if record.get("output_format") == "glb" else "rigged_character_fbx_url"
            return result.get(key), None
        main = result.get("animation_glb_url") or result.get("motion_url")
        return main, None
    if shape_of(task.type) is OutputShape.IMAGES:
        images = outputs.get("images") or []
        return (images[0] if images else None), None
    model = outputs.get("model") or {}
    main = model.get("glb") or next((v for v in model.values() if v), None)
    return main, outputs.get("thumbnail")


def _file_info(stored: StoredFile | None, name: str) -> dict[str, Any]:
    if stored is None:
        return {"file_exists": False, "error": "Output file not found"}
    suffix = Path(name).suffix.lower()
    return {"filename": name, "file_size_bytes": stored.size, "file_size_mb": round(stored.size / 2**20, 2),
            "content_type": MEDIA_TYPES.get(suffix, "application/octet-stream"), "file_extension": suffix}  # fmt: skip


Stats = dict[tuple[uuid.UUID, str], StoredFile | None]


async def _stats(state: Any, tasks: list[Task]) -> Stats:
    """The size of each completed task's main file and thumbnail, looked up side by side (S3: one request each)."""
    wanted = [(t.id, name) for t in tasks if STATUS.get(t.status) == "completed" for name in _output(t) if name]
    found = await asyncio.gather(*(asyncio.to_thread(state.store.stat, task_id, name) for task_id, name in wanted))
    return dict(zip(wanted, found, strict=True))


def _job(task: Task, state: Any, base_url: str, stats: Stats) -> dict[str, Any]:
    record = (task.params or {}).get("_aigc") or {}
    feature = record.get("feature") or _FEATURE_OF_TYPE.get(task.type, task.type.replace("-", "_"))
    status = STATUS.get(task.status, task.status.lower())
    result = None
    if status == "completed":
        main, thumb = _output(task)
        result = {"success": True, "output_mesh_path": main, "thumbnail_path": thumb,
                  "generation_info": {"task_type": task.type, "ai_model": task.ai_model, "runner": task.runner,
                                      "consumed_credits": task.consumed_credits,
                                      "faces": (task.outputs or {}).get("faces")}}  # fmt: skip
        if main and (stored := stats.get((task.id, main))) is not None:
            result["mesh_url"] = f"{base_url}api/v1/system/jobs/{task.id}/download"
            result["mesh_file_info"] = _file_info(stored, main)
        if thumb and (stored := stats.get((task.id, thumb))) is not None:
            result["thumbnail_url"] = f"{base_url}api/v1/system/jobs/{task.id}/thumbnail"
            result["thumbnail_file_info"] = _file_info(stored, thumb)
        if parts := (task.outputs or {}).get("parts"):
            result["num_parts"] = parts.get("num_parts")
    error = (task.task_error or {}).get("message") if status == "failed" else None
    return {
        "job_id": str(task.id), "feature": feature, "inputs": record.get("inputs", {}),
        "model_preference": record.get("model_preference", ""), "priority": 1,
        "timeout_seconds": state.settings.job_timeout_s, "status": status, "progress": task.progress / 100,
        "assigned_model": record.get("model_preference") or task.runner, "created_at": _iso(task.created_at),
        "started_at": _iso(task.started_at), "completed_at": _iso(task.finished_at), "result": result,
        "error": error, "metadata": {"feature_type": feature, "task_type": task.type},
        "retry_count": max(task.attempts - 1, 0), "max_retries": state.settings.max_attempts - 1,
        "last_retry_at": None, "retry_reason": None,
    }  # fmt: skip


def _base_url(state: Any, request: Request) -> str:
    base = state.settings.public_url or str(request.base_url)
    return base if base.endswith("/") else base + "/"


async def _task(session: Any, principal: Any, job_id: str) -> Task:
    task = await task_service.find_any(session, account_id=principal.account_id, task_id=parse_id(job_id))
    if task is None:
        raise JobNotFound()
    return task


@router.get("/system/jobs/history", responses=error_responses(401, 429))
async def job_history(
    request: Request,
    principal: ApiKeyAuth,
    session: ReadSession,
    state: State,
    limit: Annotated[int, Query()] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    status: str | None = None,
    feature: str | None = None,
) -> dict[str, Any]:
    """The caller's jobs (every task of the account), newest first; `status` and `feature` filter the page."""
    limit = max(1, min(limit, 500))
    tasks = await task_service.list_window(session, account_id=principal.account_id, types=list(KINDS), offset=offset,
                                           limit=limit + 1)  # fmt: skip
    base = _base_url(state, request)
    stats = await _stats(state, tasks[:limit])
    jobs = [_job(t, state, base, stats) for t in tasks[:limit]]
    body: dict[str, Any] = {}
    if status and status not in STATUS.values():
        jobs, body["error"] = [], f"Invalid status: {status}. Valid statuses: {', '.join(STATUS.values())}"
    jobs = [j for j in jobs if (not status or j["status"] == status) and (not feature or j["feature"] == feature)]
    return {**body, "jobs": jobs, "pagination": {"limit": limit, "offset": offset, "total": len(jobs),
                                                 "has_more": len(tasks) > limit},
            "filters": {"status": status, "feature": feature, "start_date": None, "end_date": None},
            "timestamp": datetime.now().timestamp()}  # fmt: skip


@router.get("/system/jobs/{job_id}", responses=error_responses(401, 404, 429))
async def job_status(job_id: str, request: Request, principal: ApiKeyAuth, session: ReadSession, state: State) -> dict:
    """A job (any task of the caller's) in the gateway's shape."""
    task = await _task(session, principal, job_id)
    return _job(task, state, _base_url(state, request), await _stats(state, [task]))


async def _send(
    task: Task, state: Any, name: str | None, prefix: str, what: str, fmt: str, filename: str | None
) -> Any:
    status = STATUS.get(task.status, task.status.lower())
    if status != "completed":
        raise JobNotDone(f"Job is not completed yet. Current status: {status}")
    path = await asyncio.to_thread(state.store.path_of, task.id, name) if name else None  # S3: via the cache
    if path is None:
        raise NotFound(f"No {what} available for this job")
    suffix = path.suffix.lower()
    download = filename or f"{prefix}_{task.id}_{path.name}"
    if fmt == "base64":
        content = await asyncio.to_thread(path.read_bytes)
        return JSONResponse({
            "job_id": str(task.id), "filename": download, "content_type": MEDIA_TYPES.get(suffix),
            "file_size_mb": len(content) / 2**20, "base64_data": base64.b64encode(content).decode(),
            "generation_info": {"task_type": task.type}, "download_time": datetime.now().isoformat(),
        })  # fmt: skip
    elapsed = (task.finished_at - task.started_at).total_seconds() if task.finished_at and task.started_at else None
    headers = {"X-Job-ID": str(task.id), "X-Generation-Time": f"{elapsed:.2f}" if elapsed else "unknown",
               "X-File-Size": str(path.stat().st_size)}  # fmt: skip
    return FileResponse(path, media_type=MEDIA_TYPES.get(suffix, "application/octet-stream"), filename=download,
                        headers=headers)  # fmt: skip


@router.get("/system/jobs/{job_id}/download", responses=error_responses(400, 401, 404, 429))
async def job_download(
    job_id: str, principal: ApiKeyAuth, session: ReadSession, state: State,
    format: Literal["file", "base64"] = "file", filename: Annotated[str | None, Query(max_length=200)] = None,
) -> Any:  # fmt: skip
    """The job's main file (the model; for a rig the FBX or GLB asked for), as a file or base64 JSON."""
    task = await _task(session, principal, job_id)
    return await _send(task, state, _output(task)[0], "result", "result", format, _safe_name(filename))


@router.get("/system/jobs/{job_id}/thumbnail", responses=error_responses(400, 401, 404, 429))
async def job_thumbnail(
    job_id: str, principal: ApiKeyAuth, session: ReadSession, state: State,
    format: Literal["file", "base64"] = "file", filename: Annotated[str | None, Query(max_length=200)] = None,
) -> Any:  # fmt: skip
    """The job's preview picture (PNG), as a file or base64 JSON."""
    task = await _task(session, principal, job_id)
    return await _send(task, state, _output(task)[1], "thumbnail", "thumbnail", format, _safe_name(filename))


def _safe_name(name: str | None) -> str | None:
    """A download name for Content-Disposition only (never a path): its last component, printable ASCII."""
    if not name:
        return None
    cleaned = "".join(c for c in Path(name).name if c.isascii() and c.isprintable() and c not in '"\\')
    return cleaned or None


@router.get("/system/jobs/{job_id}/info", responses=error_responses(401, 404, 429))
async def job_info(job_id: str, principal: ApiKeyAuth, session: ReadSession, state: State) -> dict[str, Any]:
    """The job's result file: size, type, times, and relative download links."""
    task = await _task(session, principal, job_id)
    status = STATUS.get(task.status, task.status.lower())
    main, thumb = _output(task) if status == "completed" else (None, None)
    if not main:
        return {"job_id": str(task.id), "status": status, "has_result": False, "message": "No result available"}
    stored = await asyncio.to_thread(state.store.stat, task.id, main)
    info = _file_info(stored, main)
    if stored is not None:  # when it was published (the files are never changed afterwards)
        stamp = datetime.fromtimestamp(stored.modified).isoformat()
        info |= {"created_time": stamp, "modified_time": stamp, "file_exists": True}
    elapsed = (task.finished_at - task.started_at).total_seconds() if task.finished_at and task.started_at else None
    links = f"/api/v1/system/jobs/{task.id}"
    return {
        "job_id": str(task.id), "status": status, "has_result": True, "created_at": _iso(task.created_at),
        "completed_at": _iso(task.finished_at), "processing_time": elapsed, "file_info": info,
        "generation_info": {"task_type": task.type, "ai_model": task.ai_model, "runner": task.runner},
        "result_metadata": {"consumed_credits": task.consumed_credits},
        "mesh_download_urls": {"direct_download": f"{links}/download",
                               "base64_download": f"{links}/download?format=base64"},
        "thumbnail_download_urls": ({"direct_download": f"{links}/thumbnail",
                                     "base64_download": f"{links}/thumbnail?format=base64"} if thumb else {}),
    }  # fmt: skip


# --- system -------------------------------------------------------------------------------------------------------


def _features(state: Any) -> list[dict[str, Any]]:
    out = []
    for feature in FEATURES.values():
        models = list(feature_models(state, feature))
        out.append({"name": feature.name, "model_count": len(models), "models": models})
    return out


@router.get("/system/features", responses=error_responses(401, 429))
async def features(principal: ApiKeyAuth, state: State) -> dict[str, Any]:
    """The gateway's features and the model ids this server offers for each (`<runner>_<feature>`)."""
    listed = [f for f in _features(state) if f["model_count"]]
    return {"features": listed, "total_features": len(listed)}


@router.get("/system/models", responses=error_responses(401, 404, 429))
async def models(principal: ApiKeyAuth, state: State, feature: str | None = None) -> dict[str, Any]:
    """Model ids per feature (`?feature=` for one)."""
    table = {f["name"]: f["models"] for f in _features(state) if f["model_count"]}
    if feature is not None:
        if feature not in table:
            raise NotFound(f"Feature '{feature}' not found")
        return {"feature": feature, "models": table[feature]}
    return {"available_models": table, "total_features": len(table), "total_models": sum(map(len, table.values()))}


@router.get("/system/status", responses=error_responses(401, 429))
@router.get("/system/status/", include_in_schema=False)
async def system_status(principal: ApiKeyAuth, session: ReadSession, state: State) -> dict[str, Any]:
    """Host, workers and queue: the gateway's shape, with this server's real figures (no GPU monitor: `gpu` says
    so, as the gateway does without GPUtil)."""
    memory, disk = psutil.virtual_memory(), psutil.disk_usage(str(state.settings.assets_path))
    pools = {e.pool for table in state.registry.models.values() for e in table.values()}
    online = await pools_online(state, pools)
    counts = await task_service.status_counts(session, account_id=principal.account_id)
    return {
        "timestamp": datetime.now().isoformat(),
        "system": {"cpu_usage": psutil.cpu_percent(interval=None),
                   "memory": {"total": memory.total, "available": memory.available, "used": memory.used,
                              "percent": memory.percent},
                   "disk": {"total": disk.total, "free": disk.free, "used": disk.used, "percent": disk.percent}},
        "gpu": "GPU monitoring not available on the API server (see GET /openapi/v1/models for worker pools)",
        "models": {"loaded": 0, "available": sum(len(f["models"]) for f in _features(state)), "total_vram_used": 0,
                   "pools_online": online},
        "queue": {"pending_jobs": counts.get(TaskStatus.PENDING.value, 0),
                  "processing_jobs": counts.get(TaskStatus.IN_PROGRESS.value, 0),
                  "completed_jobs": counts.get(TaskStatus.SUCCEEDED.value, 0)},
    }  # fmt: skip
