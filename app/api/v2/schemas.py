"""Wire schemas for Text to 3D v2: Meshy's request bodies and the task object."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

PROMPT_MAX = 600


# Beyond Meshy: retrieve-before-generate (docs/asset-search.md).
def retrieve_field() -> Any:
    return Field(
        None,
        ge=0,
        le=1,
        description="Beyond Meshy: search your models and the shared libraries first; an asset scoring at least this "
        "(cosine similarity, 0-1) answers the request at once (the task is SUCCEEDED on creation, charged the "
        "`retrieved` price, and names the asset in `retrieved_from`). Below it, or unset, the model is generated.",
    )


FORMATS = ("glb", "obj", "fbx", "stl", "usdz", "3mf")
DEFAULT_FORMATS = ["glb", "obj", "fbx", "stl", "usdz"]
Format = Literal["glb", "obj", "fbx", "stl", "usdz", "3mf"]
ArtStyle = Literal["realistic", "sculpture", "cartoon", "low-poly", "pbr"]


def _has_nul(value: Any) -> bool:
    """Whether any string in a parsed JSON value holds U+0000; iterative, so deep nesting cannot overflow the stack."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, list | tuple):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
    return False


def reject_nul(data: Any) -> Any:
    """Postgres text and JSONB cannot hold U+0000: refuse it anywhere in a body as a 400 rather than fail at INSERT."""
    if _has_nul(data):
        raise ValueError("strings must not contain NUL characters")
    return data


class MeshyRequest(BaseModel):
    """Every create body: unknown fields ignored (real clients send deprecated and invented ones: loop,
    frame_rate...), a top-level `null` taken as the field left out (ComfyUI's Meshy nodes send `"topology": null`
    when remeshing is off, `"texture_prompt": null`...), and no NUL character anywhere (Postgres cannot store it)."""

    model_config = ConfigDict(extra="ignore")

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        data = reject_nul(data)
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if value is not None}
        return data


class _MeshyBody(MeshyRequest):
    ai_model: str = Field("latest", max_length=40, description="meshy-5, meshy-6, latest, or a local model name.")
    moderation: bool = False
    target_formats: list[Format] | None = Field(
        None,
        description="Formats to produce; default all but 3mf. model_urls lists exactly what was produced.",
    )
    alpha_thumbnail: bool = False
    auto_size: bool = False
    origin_at: Literal["bottom", "center"] = "bottom"

    @field_validator("target_formats")
    @classmethod
    def _dedupe(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("target_formats must not be empty")
        return list(dict.fromkeys(value))

    def common_params(self) -> dict[str, Any]:
        return {
            "ai_model": self.ai_model,
            "moderation": self.moderation,
            "target_formats": self.target_formats or list(DEFAULT_FORMATS),
            "alpha_thumbnail": self.alpha_thumbnail,
            "auto_size": self.auto_size,
            "origin_at": self.origin_at,
        }


class TextTo3DPreview(_MeshyBody):
    """`mode: "preview"`: untextured geometry from a prompt."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {
                    "mode": "preview",
                    "prompt": "a monster mask",
                    "ai_model": "latest",
                    "should_remesh": True,
                    "topology": "triangle",
                    "target_polycount": 30000,
                    "seed": 1234,
                }
            ]  # fmt: skip
        },
    )

    mode: Literal["preview"]
    prompt: str = Field(min_length=1, max_length=PROMPT_MAX)
    negative_prompt: str = Field("", max_length=PROMPT_MAX)
    model_type: Literal["standard", "lowpoly"] = "standard"
    art_style: ArtStyle = "realistic"
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    should_remesh: bool | None = None
    topology: Literal["quad", "triangle"] = "triangle"
    target_polycount: int = Field(30_000, ge=100, le=300_000)
    decimation_mode: int | None = Field(None, ge=1, le=4)
    symmetry_mode: Literal["off", "auto", "on"] = "auto"
    pose_mode: Literal["a-pose", "t-pose", ""] = ""
    is_a_t_pose: bool = False
    retrieve_min_score: float | None = retrieve_field()

    @field_validator("prompt")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("prompt must not be blank")
        return value

    def to_params(self) -> dict[str, Any]:
        return {
            "mode": "preview",
            **self.common_params(),
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "model_type": self.model_type,
            "art_style": self.art_style,
            # Meshy's default seed is the creation time in unix seconds.
            "seed": self.seed if self.seed is not None else int(time.time()),
            # meshy-6 (and latest) default to no remesh, the others to remesh (meshy-api.md §4.1).
            "should_remesh": self.should_remesh
            if self.should_remesh is not None
            else self.ai_model not in ("latest", "meshy-6"),
            "topology": self.topology,
            "target_polycount": self.target_polycount,
            "decimation_mode": self.decimation_mode,
            "symmetry_mode": self.symmetry_mode,
            "pose_mode": self.pose_mode or ("a-pose" if self.is_a_t_pose else ""),
        }


class TextTo3DRefine(_MeshyBody):
    """`mode: "refine"`: texture a SUCCEEDED preview; a new task."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {
                    "mode": "refine",
                    "preview_task_id": "018a210d-8ba4-705c-b111-1f1776f7f578",
                    "texture_prompt": "green slimy skin",
                    "enable_pbr": True,
                }
            ]  # fmt: skip
        },
    )

    mode: Literal["refine"]
    preview_task_id: str = Field(min_length=1, max_length=64)
    enable_pbr: bool = False
    hd_texture: bool = False
    texture_prompt: str = Field("", max_length=PROMPT_MAX)
    texture_image_url: str = Field("", max_length=10_000_000)
    remove_lighting: bool = True

    @field_validator("texture_image_url")
    @classmethod
    def _url_or_data_uri(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://", "data:image/png", "data:image/jpeg")):
            raise ValueError("must be an http(s) URL or a data:image/png / data:image/jpeg URI")
        if value and not value.startswith("data:") and len(value) > 4096:
            raise ValueError("must be at most 4096 characters (or a data: URI)")
        return value

    def to_params(self, preview_params: dict[str, Any]) -> dict[str, Any]:
        inherited = {k: preview_params.get(k) for k in ("prompt", "negative_prompt", "art_style", "seed",
                                                      "should_remesh", "topology", "target_polycount",
                                                      "symmetry_mode", "pose_mode")}  # fmt: skip
        return {
            **inherited,
            "mode": "refine",
            **self.common_params(),
            "preview_task_id": self.preview_task_id,
            "enable_pbr": self.enable_pbr,
            "hd_texture": self.hd_texture,
            "texture_prompt": self.texture_prompt,
            "texture_image_url": self.texture_image_url,
            "remove_lighting": self.remove_lighting,
        }


TextTo3DRequest = Annotated[TextTo3DPreview | TextTo3DRefine, Field(discriminator="mode")]


class TaskCreated(BaseModel):
    result: str = Field(description="The new task's id.", examples=["0193a1b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b"])


class TaskError(BaseModel):
    model_config = ConfigDict(extra="allow")
    message: str = ""


class TextTo3DTask(BaseModel):
    """The Text to 3D task object (meshy-api.md §4.3); extra echoed inputs pass through."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "id": "018a210d-8ba4-705c-b111-1f1776f7f578",
                    "type": "text-to-3d-preview",
                    "status": "SUCCEEDED",
                    "progress": 100,
                    "prompt": "a monster mask",
                    "model_urls": {
                        "glb": "https://host/assets/018a210d-.../model.glb?Expires=1693028869&Signature=..."
                    },
                    "texture_urls": [],
                    "thumbnail_url": "https://host/assets/018a210d-.../preview.png?Expires=1693028869&Signature=...",
                    "created_at": 1692771650657,
                    "started_at": 1692771667037,
                    "finished_at": 1692771669037,
                    "expires_at": 1693030869037,
                    "preceding_tasks": 0,
                    "task_error": {"message": ""},
                    "consumed_credits": 20,
                    "seed": 1234,
                }
            ]
        },
    )

    id: str
    type: str
    status: Literal["PENDING", "IN_PROGRESS", "SUCCEEDED", "FAILED", "CANCELED"]
    progress: int
    prompt: str = ""
    model_urls: dict[str, str] = {}
    texture_urls: list[dict[str, str]] = []
    thumbnail_url: str = ""
    video_url: str | None = None  # the turntable MP4 (absent when not rendered)
    created_at: int
    started_at: int
    finished_at: int
    expires_at: int
    preceding_tasks: int
    task_error: TaskError
    consumed_credits: int
    seed: int | None = None
