"""Rendering task rows as Meshy's task objects, with freshly signed asset URLs.

In the task domain, not the HTTP edge: GET, the SSE stream and the worker's webhook deliveries render with this
one function, so a webhook's payload is exactly what GET answers for the same state.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from app.core.assets import UrlSigner
from app.core.clock import to_ms
from app.tasks.kinds import OutputShape, shape_of
from app.tasks.models import Task, TaskStatus, TaskType

# Inputs echoed on the task object when the task has them (internal keys such as `_inputs` never are).
_ECHOED = ("prompt", "negative_prompt", "art_style", "texture_prompt", "texture_image_url", "seed", "ai_model",
           "mode", "model_type", "should_remesh", "topology", "target_polycount", "symmetry_mode", "pose_mode",
           "enable_pbr", "hd_texture", "remove_lighting", "target_formats", "preview_task_id", "moderation",
           "auto_size", "origin_at", "decimation_mode", "alpha_thumbnail", "image_url",
           "input_task_id", "should_texture", "save_pre_remeshed_model", "image_enhancement",
           "multi_view_thumbnails", "model_url", "resize_height", "resize_longest_side", "convert_format_only",
           "text_style_prompt", "image_style_url", "enable_original_uv", "object_prompt", "style_prompt",
           "resolution", "max_colors", "max_depth", "retrieved_from")  # fmt: skip
_IMAGE_ECHOED = ("ai_model", "prompt", "generate_multi_view", "aspect_ratio", "pose_mode", "remove_background",
                 "reference_image_urls", "input_task_id", "moderation")  # fmt: skip
# MeshFoundry's result-shaped resources echo their inputs (inline files as a short description, never in full).
_RESULT_ECHOED = {
    TaskType.TALKING_HEAD.value: ("image_url", "audio_url", "emotion", "ref_scale", "emo_scale", "crop", "seed",
                                  "audio_duration_ms"),
}  # fmt: skip
_TEXT_TO_3D = (TaskType.TEXT_TO_3D_PREVIEW.value, TaskType.TEXT_TO_3D_REFINE.value)
# Inputs shown as "" when not given, per type (Meshy's objects carry them empty).
_TEXT_TO_3D_STRINGS = ("prompt", "negative_prompt", "art_style", "texture_prompt", "texture_image_url")
_IMAGE_TO_3D_STRINGS = ("texture_prompt", "texture_image_url")
_STRING_DEFAULTS = {
    TaskType.TEXT_TO_3D_PREVIEW.value: _TEXT_TO_3D_STRINGS,
    TaskType.TEXT_TO_3D_REFINE.value: _TEXT_TO_3D_STRINGS,
    TaskType.IMAGE_TO_3D.value: _IMAGE_TO_3D_STRINGS,
    TaskType.MULTI_IMAGE_TO_3D.value: _IMAGE_TO_3D_STRINGS,
}
_CONVERT_KEYS = ("glb", "fbx", "obj", "usdz", "stl", "3mf")


@dataclass(frozen=True)
class AssetLinks:
    signer: UrlSigner
    base_url: str

    def url(self, task: Task, filename: str) -> str:
        expires = int(task.expires_at.timestamp()) if task.expires_at else 0
        return self.signer.url(self.base_url, task.id, filename, expires)


def render_task(task: Task, preceding_tasks: int, links: AssetLinks) -> dict[str, Any]:
    """The Meshy task object: ms timestamps with 0 for unset, only produced outputs, task_error always set.

    The outputs' shape follows the task type: model_urls/texture_urls/thumbnails for 3D, image_urls for 2D.
    """
    params = task.params or {}
    body: dict[str, Any] = {"id": str(task.id), "type": task.type}
    outputs = (task.outputs or {}) if task.status == TaskStatus.SUCCEEDED.value else {}
    shape = shape_of(task.type)
    if shape is OutputShape.IMAGES:
        body.update({key: params[key] for key in _IMAGE_ECHOED if params.get(key) is not None})
        body["image_urls"] = [links.url(task, name) for name in outputs.get("images", [])]
    elif shape is OutputShape.RESULT:  # rig, animate, text-to-motion: `result` is null until SUCCEEDED (§9, §22.8)
        body.update({key: params[key] for key in _RESULT_ECHOED.get(task.type, ()) if params.get(key) is not None})
        result = outputs.get("result")
        body["result"] = _signed_result(task, result, links) if result is not None else None
    else:
        _render_model(body, task, params, outputs, links)
    body.update(
        progress=task.progress,
        status=task.status,
        created_at=to_ms(task.created_at),
        started_at=to_ms(task.started_at),
        finished_at=to_ms(task.finished_at),
        expires_at=to_ms(task.expires_at),
        preceding_tasks=preceding_tasks if task.status == TaskStatus.PENDING.value else 0,
        task_error=task.task_error or {"message": ""},
        consumed_credits=task.consumed_credits,
    )
    return body


def _signed_result(task: Task, result: dict[str, Any], links: AssetLinks) -> dict[str, Any]:
    """A nested result with every `*_url` file name signed; other values (formats, durations) as they are."""
    out: dict[str, Any] = {}
    for key, value in result.items():
        if isinstance(value, dict):
            out[key] = _signed_result(task, value, links)
        elif key.endswith("_url") and isinstance(value, str):
            out[key] = links.url(task, value) if value else ""
        else:
            out[key] = value
    return out


def _render_model(
    body: dict[str, Any], task: Task, params: dict[str, Any], outputs: dict[str, Any], links: AssetLinks
) -> None:
    for key in _ECHOED:
        if key in params and params[key] is not None:
            body[key] = params[key]
    # `image_urls` is not echoed: clients read it as a task's output pictures (Meshy's MCP server lists a
    # multi-image-to-3d task's `image_urls` as generated images).
    for key in _STRING_DEFAULTS.get(task.type, ()):
        body.setdefault(key, "")
    if task.type in _TEXT_TO_3D:
        body["texture_richness"] = ""
        body["seed"] = task.seed
    body["model_urls"] = {fmt: links.url(task, name) for fmt, name in outputs.get("model", {}).items()}
    body["texture_urls"] = [
        {kind: links.url(task, name) for kind, name in group.items()} for group in outputs.get("textures", [])
    ]
    body["thumbnail_url"] = links.url(task, outputs["thumbnail"]) if outputs.get("thumbnail") else ""
    if outputs.get("thumbnails"):  # multi_view_thumbnails: thumbnail_url is the front one (§5.2)
        body["thumbnail_urls"] = {view: links.url(task, name) for view, name in outputs["thumbnails"].items()}
        body["thumbnail_url"] = body["thumbnail_urls"].get("front", body["thumbnail_url"])
    if outputs.get("alpha_thumbnail"):
        body["alpha_thumbnail_url"] = links.url(task, outputs["alpha_thumbnail"])
    if outputs.get("video"):  # the turntable preview MP4 (generation tasks, unless the worker turns it off)
        body["video_url"] = links.url(task, outputs["video"])
    if task.type == TaskType.CONVERT.value:  # Convert lists every format, "" for those not asked for (§7.2)
        body["model_urls"] = {fmt: body["model_urls"].get(fmt, "") for fmt in _CONVERT_KEYS} | body["model_urls"]
    if task.type == TaskType.PRINT_ANALYZE.value:
        body["printability"] = outputs.get("printability")
    parts = outputs.get("parts")
    if parts:  # MeshFoundry's part resources: the parts' own files beside the whole model
        body["parts"] = {
            "num_parts": parts.get("num_parts", len(parts.get("files", []))),
            "part_urls": [links.url(task, name) for name in parts.get("files", [])],
            **({"labels_url": links.url(task, parts["labels"])} if parts.get("labels") else {}),
            **({"watertight": parts["watertight"]} if "watertight" in parts else {}),
        }


def to_json_line(body: dict[str, Any]) -> str:
    """Compact single-line JSON: Meshy's sample SSE clients parse one `data:` line per event."""
    return to_json_bytes(body).decode()


def to_json_bytes(body: Any) -> bytes:
    """Compact UTF-8 JSON, by orjson (the standard library for what orjson refuses: integers past 64 bits)."""
    try:
        return orjson.dumps(body)
    except TypeError:
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


class VersionedTask(Protocol):
    """A task row read with its version (`xmin`) and queue position: app.tasks.reads.TaskRow."""

    id: Any
    version: int
    preceding: int


class RenderCache:
    """Rendered task objects as JSON bytes, one per (task, row version, base URL, queue position).

    A row's version changes with every UPDATE, and a signed URL depends only on the task, the file and the task's
    expiry: for the same version the object is the same bytes, so signing and encoding happen once per version,
    not once per GET. Bounded; the oldest entries go first.
    """

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._entries: dict[tuple[Any, ...], bytes] = {}

    def render(self, row: VersionedTask, links: AssetLinks) -> bytes:
        key = (row.id, row.version, row.preceding, links.base_url)
        body = self._entries.get(key)
        if body is None:
            body = to_json_bytes(render_task(row, row.preceding, links))  # type: ignore[arg-type]
            if len(self._entries) >= self._size:
                del self._entries[next(iter(self._entries))]
            self._entries[key] = body
        return body

    def render_list(self, rows: list[Any], links: AssetLinks) -> bytes:
        return b"[" + b",".join(self.render(row, links) for row in rows) + b"]"
