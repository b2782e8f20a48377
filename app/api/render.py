"""Rendering task rows as Meshy's task objects, with freshly signed asset URLs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from app.core.assets import UrlSigner
from app.core.clock import to_ms
from app.tasks.models import Task, TaskStatus

_ECHOED = ("prompt", "negative_prompt", "art_style", "texture_prompt", "texture_image_url", "seed", "ai_model",
           "mode", "model_type", "should_remesh", "topology", "target_polycount", "symmetry_mode", "pose_mode",
           "enable_pbr", "hd_texture", "remove_lighting", "target_formats", "preview_task_id", "moderation",
           "auto_size", "origin_at", "decimation_mode", "alpha_thumbnail")  # fmt: skip
_STRING_DEFAULTS = ("prompt", "negative_prompt", "art_style", "texture_prompt", "texture_image_url")


@dataclass(frozen=True)
class AssetLinks:
    signer: UrlSigner
    base_url: str

    def url(self, task: Task, filename: str) -> str:
        expires = int(task.expires_at.timestamp()) if task.expires_at else 0
        return self.signer.url(self.base_url, task.id, filename, expires)


def render_task(task: Task, preceding_tasks: int, links: AssetLinks) -> dict[str, Any]:
    """The Meshy task object: ms timestamps with 0 for unset, only produced formats, task_error always set."""
    params = task.params or {}
    body: dict[str, Any] = {"id": str(task.id), "type": task.type}
    for key in _ECHOED:
        if key in params and params[key] is not None:
            body[key] = params[key]
    for key in _STRING_DEFAULTS:
        body.setdefault(key, "")
    body["texture_richness"] = ""
    body["seed"] = task.seed
    outputs = (task.outputs or {}) if task.status == TaskStatus.SUCCEEDED.value else {}
    body["model_urls"] = {fmt: links.url(task, name) for fmt, name in outputs.get("model", {}).items()}
    body["texture_urls"] = [
        {kind: links.url(task, name) for kind, name in group.items()} for group in outputs.get("textures", [])
    ]
    body["thumbnail_url"] = links.url(task, outputs["thumbnail"]) if outputs.get("thumbnail") else ""
    if outputs.get("alpha_thumbnail"):
        body["alpha_thumbnail_url"] = links.url(task, outputs["alpha_thumbnail"])
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


def to_json_line(body: dict[str, Any]) -> str:
    """Compact single-line JSON: Meshy's sample SSE clients parse one `data:` line per event."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)
