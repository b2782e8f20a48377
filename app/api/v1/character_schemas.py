"""Wire schemas for characters: auto-rigging, animations, text-to-motion (meshy-api.md §9, §10, §10.2) and the
HY-Motion service's own `/generate-motion` body."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator, model_validator

from app.api.v1.model_schemas import _check_model_url
from app.api.v1.schemas import MAX_URL_LENGTH, _TaskObject
from app.api.v2.schemas import MeshyRequest

MOTION_PROMPT_MAX = 400
MAX_ACTIONS = 10
FPS_CHOICES = (24, 25, 30, 60)


class RiggingRequest(MeshyRequest):
    """`input_task_id` (a SUCCEEDED model task of the caller's; wins) or `model_url` (a .glb URL or data URI)."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [{"input_task_id": "0199505f-9791-7973-8dca-c77cf716969d", "height_meters": 1.7}]
        },  # fmt: skip
    )

    input_task_id: str | None = Field(None, max_length=64)
    model_url: str | None = Field(None, description="A .glb public URL or data:application/octet-stream;base64 URI; "
                                  "the character faces +Z.")  # fmt: skip
    height_meters: float = Field(1.7, ge=0.01, le=100, description="The character's height in metres (0.01-100).")
    texture_image_url: str = Field("", description="A UV-unwrapped base-colour texture (.png), URL or data URI.")
    bone_naming: Literal["mixamo", "generic"] = Field(
        "mixamo", description="Beyond Meshy: `mixamo` (mixamorig:Hips...) or `generic` (hips, thigh.L...)."
    )

    @field_validator("model_url")
    @classmethod
    def _model_url(cls, value: str | None) -> str | None:
        return _check_model_url(value)

    @field_validator("texture_image_url")
    @classmethod
    def _texture(cls, value: str) -> str:
        if not value:
            return value
        if not value.startswith(("http://", "https://", "data:image/png")):
            raise ValueError("texture_image_url must be a .png public URL or a data:image/png;base64 URI")
        if not value.startswith("data:") and len(value) > MAX_URL_LENGTH:
            raise ValueError(f"texture_image_url must be at most {MAX_URL_LENGTH} characters (or a data: URI)")
        return value

    @model_validator(mode="after")
    def _has_model(self) -> RiggingRequest:
        if not self.input_task_id and not self.model_url:
            raise ValueError("Missing required parameter: model_url (or input_task_id)")
        return self

    def params(self) -> dict[str, Any]:
        return {"height_meters": self.height_meters, "bone_naming": self.bone_naming}


class PostProcess(BaseModel):
    model_config = ConfigDict(extra="ignore")

    operation_type: Literal["change_fps", "fbx2usdz", "extract_armature"]
    fps: int = Field(30, description="24, 25, 30 or 60; only for change_fps.")

    @field_validator("fps")
    @classmethod
    def _fps(cls, value: int) -> int:
        if value not in FPS_CHOICES:
            raise ValueError("post_process.fps must be one of 24, 25, 30, 60")
        return value


class AnimationRequest(MeshyRequest):
    """`rig_task_id` and exactly one of `action_id`, `action_ids` (1-10 clips in one file) or `motion_task_id`."""

    model_config = ConfigDict(
        extra="ignore", json_schema_extra={"examples": [{"rig_task_id": "0199505f-9791-7973-8dca-c77cf71696c0",
                                                         "action_id": 1}]},
    )  # fmt: skip

    rig_task_id: str = Field(min_length=1, max_length=64)
    action_id: StrictInt | None = Field(None, description="An id of the library (GET /openapi/v1/animations/library).")
    action_ids: list[StrictInt] | None = Field(None, description="1 to 10 unique ids: one clip per action in one file.")
    motion_task_id: str | None = Field(None, max_length=64, description="A SUCCEEDED text-to-motion task.")
    post_process: PostProcess | None = None

    @field_validator("action_ids")
    @classmethod
    def _ids(cls, value: list[int] | None) -> list[int] | None:
        if value is None:
            return None
        if not 1 <= len(value) <= MAX_ACTIONS:
            raise ValueError(f"action_ids must hold 1 to {MAX_ACTIONS} action ids")
        if len(set(value)) != len(value):
            raise ValueError("action_ids must be unique")
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> AnimationRequest:
        given = [self.action_id is not None, self.action_ids is not None, bool(self.motion_task_id)]
        if sum(given) != 1:
            raise ValueError("exactly one of action_id, action_ids or motion_task_id is required")
        return self

    def actions(self) -> list[int]:
        if self.action_ids is not None:
            return list(self.action_ids)
        return [self.action_id] if self.action_id is not None else []

    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"rig_task_id": self.rig_task_id}
        if self.action_id is not None:
            params["action_id"] = self.action_id
        if self.action_ids is not None:
            params["action_ids"] = self.action_ids
        if self.motion_task_id:
            params["motion_task_id"] = self.motion_task_id
        if self.post_process is not None:
            params["post_process"] = self.post_process.model_dump()
        return params


def _not_blank(value: str, name: str) -> str:
    if not value.strip():
        raise ValueError(f"{name} must not be blank")
    return value


class TextToMotionRequest(MeshyRequest):
    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [{"prompt": "a person walks forward and waves", "duration": 6, "mode": "swift"}]
        },  # fmt: skip
    )

    prompt: str = Field(min_length=1, max_length=MOTION_PROMPT_MAX, description="English, at most 400 characters.")
    duration: float = Field(ge=2, le=10, description="Seconds, 2 to 10 in steps of 0.5.")
    mode: Literal["prime", "swift"] = Field("prime", description="prime: FBX, 10 credits; swift: BVH, 3 credits.")
    ai_model: str = Field("latest", max_length=40, description="Beyond Meshy: a local text-to-motion model name.")

    _prompt = field_validator("prompt")(classmethod(lambda cls, v: _not_blank(v, "prompt")))

    @field_validator("duration")
    @classmethod
    def _half_seconds(cls, value: float) -> float:
        if abs(value * 2 - round(value * 2)) > 1e-9:
            raise ValueError("duration must be a multiple of 0.5 seconds")
        return float(value)

    def params(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "duration": self.duration, "mode": self.mode, "ai_model": self.ai_model}


class GenerateMotionRequest(BaseModel):
    """The HY-Motion service's `POST /generate-motion` body (its article's `MotionRequest`)."""

    model_config = ConfigDict(extra="ignore")

    prompt: str = Field(max_length=60, description="English, at most 60 characters and 30 words.")
    duration_sec: float = Field(3.0, ge=1.0, le=5.0)
    model_type: Literal["standard", "lite"] = "lite"
    output_format: Literal["fbx", "bvh"] = "fbx"


# --- task objects (OpenAPI) -----------------------------------------------------------------------------------------


class BasicAnimations(BaseModel):
    walking_glb_url: str = ""
    walking_fbx_url: str = ""
    walking_armature_glb_url: str = ""
    running_glb_url: str = ""
    running_fbx_url: str = ""
    running_armature_glb_url: str = ""


class RigResult(BaseModel):
    model_config = ConfigDict(extra="allow")

    rigged_character_fbx_url: str
    rigged_character_glb_url: str
    basic_animations: BasicAnimations | None = None


class RigTask(_TaskObject):
    """An auto-rigging task object (`type: "rig"`); `result` is null until SUCCEEDED (meshy-api.md §9)."""

    result: RigResult | None = None


class AnimationResult(BaseModel):
    model_config = ConfigDict(extra="allow")

    animation_glb_url: str
    animation_fbx_url: str
    processed_usdz_url: str | None = None
    processed_armature_fbx_url: str | None = None
    processed_animation_fps_fbx_url: str | None = None


class AnimationTask(_TaskObject):
    """An animation task object (`type: "animate"`); `result` is null until SUCCEEDED (meshy-api.md §10)."""

    result: AnimationResult | None = None


class MotionResult(BaseModel):
    model_config = ConfigDict(extra="allow")

    motion_url: str
    motion_format: Literal["fbx", "bvh"]
    duration_ms: int
    mode: Literal["prime", "swift"]


class MotionTask(_TaskObject):
    """A text-to-motion task object (`type: "text-to-motion"`; meshy-api.md §10.2)."""

    result: MotionResult | None = None
