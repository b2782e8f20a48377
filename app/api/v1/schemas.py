"""Wire schemas for the image family: Image to 3D, Multi-Image to 3D, Text to Image, Image to Image (v1)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.api.v2.schemas import PROMPT_MAX, MeshyRequest, TaskError, _MeshyBody, retrieve_field

MEDIA_PREFIXES = ("http://", "https://", "data:image/png", "data:image/jpeg", "data:image/jpg")
ASPECT_RATIOS = ("1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3")
IMAGE_PROMPT_MAX = 2000  # Meshy documents no limit for the 2D prompts


MAX_URL_LENGTH = 4096  # a data URI is stored at create and may be longer (up to FETCH_MAX_BYTES)


def _media(value: str, name: str) -> str:
    if not value.startswith(MEDIA_PREFIXES):
        raise ValueError(f"{name} must be a public http(s) URL or a data:image/png or data:image/jpeg URI")
    if not value.startswith("data:") and len(value) > MAX_URL_LENGTH:
        raise ValueError(f"{name} must be at most {MAX_URL_LENGTH} characters (or a data: URI)")
    return value


class _ModelFromImage(_MeshyBody):
    """The parameters Image to 3D and Multi-Image to 3D share (meshy-api.md §5.1, §6)."""

    input_task_id: str | None = Field(None, max_length=64, description="A SUCCEEDED image task; wins over URLs.")
    should_texture: bool = True
    enable_pbr: bool = False
    hd_texture: bool = False
    texture_prompt: str = Field("", max_length=PROMPT_MAX, description="Wins over texture_image_url.")
    texture_image_url: str = Field("", description="A .jpg/.png URL or data URI guiding the texture.")
    should_remesh: bool | None = Field(None, description="Default: false on meshy-6/latest, true otherwise.")
    topology: Literal["quad", "triangle"] = "triangle"
    target_polycount: int = Field(30_000, ge=100, le=300_000)
    decimation_mode: int | None = Field(None, ge=1, le=4)
    save_pre_remeshed_model: bool = False
    symmetry_mode: Literal["off", "auto", "on"] = "auto"
    pose_mode: Literal["a-pose", "t-pose", ""] = ""
    is_a_t_pose: bool = False
    image_enhancement: bool = True
    remove_lighting: bool = True
    multi_view_thumbnails: bool = False
    model_type: Literal["standard", "lowpoly"] = "standard"

    @field_validator("texture_image_url")
    @classmethod
    def _texture_media(cls, value: str) -> str:
        return _media(value, "texture_image_url") if value else value

    @model_validator(mode="after")
    def _pbr_needs_texture(self) -> _ModelFromImage:
        if self.enable_pbr and not self.should_texture:
            raise ValueError("enable_pbr is only supported when should_texture is true")
        return self

    def model_params(self) -> dict[str, Any]:
        lowpoly = self.model_type == "lowpoly"
        remesh = (
            self.should_remesh
            if self.should_remesh is not None
            else self.ai_model not in ("latest", "meshy-6", "meshy-7")
        )
        return {
            **self.common_params(),
            "should_texture": self.should_texture,
            "enable_pbr": self.enable_pbr,
            "hd_texture": self.hd_texture,
            "texture_prompt": self.texture_prompt,
            "symmetry_mode": self.symmetry_mode,
            "pose_mode": self.pose_mode or ("a-pose" if self.is_a_t_pose else ""),
            "image_enhancement": self.image_enhancement,
            "remove_lighting": self.remove_lighting,
            "multi_view_thumbnails": self.multi_view_thumbnails,
            "model_type": self.model_type,
            # lowpoly ignores topology, target_polycount, should_remesh and save_pre_remeshed_model (§5.1).
            "should_remesh": True if lowpoly else remesh,
            "topology": "triangle" if lowpoly else self.topology,
            "target_polycount": 2_000 if lowpoly else self.target_polycount,
            "decimation_mode": self.decimation_mode,
            "save_pre_remeshed_model": self.save_pre_remeshed_model and remesh and not lowpoly,
            "seed": 0,
        }


class ImageTo3DRequest(_ModelFromImage):
    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={"examples": [{"image_url": "https://example.com/chair.png", "should_texture": True}]},
    )

    image_url: str | None = Field(None, description="A .jpg/.png public URL or data:image/...;base64 URI.")
    retrieve_min_score: float | None = retrieve_field()

    @field_validator("image_url")
    @classmethod
    def _image_media(cls, value: str | None) -> str | None:
        return _media(value, "image_url") if value else None

    @model_validator(mode="after")
    def _has_image(self) -> ImageTo3DRequest:
        if not self.image_url and not self.input_task_id:
            raise ValueError("Missing required parameter: image_url (or input_task_id)")
        return self


class MultiImageTo3DRequest(_ModelFromImage):
    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [{"image_urls": ["https://example.com/front.png", "https://example.com/side.png"]}]
        },
    )

    image_urls: list[str] | None = Field(None, description="1-4 views of one object; the first is the front.")

    @field_validator("image_urls")
    @classmethod
    def _images_media(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not 1 <= len(value) <= 4:
            raise ValueError("image_urls must contain between 1 and 4 images")
        return [_media(v, "image_urls") for v in value]

    @model_validator(mode="after")
    def _has_images(self) -> MultiImageTo3DRequest:
        if not self.image_urls and not self.input_task_id:
            raise ValueError("Missing required parameter: image_urls (or input_task_id)")
        return self


class _ImageBody(MeshyRequest):
    ai_model: str = Field(max_length=40, description="nano-banana, nano-banana-2, nano-banana-pro, gpt-image-2...")
    prompt: str = Field(min_length=1, max_length=IMAGE_PROMPT_MAX)
    generate_multi_view: bool = Field(False, description="Three views of one object (front, right, back).")
    aspect_ratio: str | None = Field(None, description="1:1 (default), 16:9, 9:16, 4:3, 3:4; gpt-image-2: 3:2, 2:3.")
    pose_mode: Literal["a-pose", "t-pose", ""] = ""
    remove_background: bool = False
    moderation: bool = False

    @field_validator("prompt")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("prompt must not be blank")
        return value

    @model_validator(mode="after")
    def _ratio(self) -> _ImageBody:
        # Meshy refuses the combination; its own MCP server always sends aspect_ratio "1:1" (its schema default),
        # and a multi-view set is square anyway, so "1:1" is accepted and any other ratio refused.
        if self.generate_multi_view and self.aspect_ratio not in (None, "1:1"):
            raise ValueError("generate_multi_view cannot be combined with aspect_ratio (multi-view images are 1:1)")
        allowed = ("1:1", "3:2", "2:3") if self.ai_model.startswith("gpt-image") else ASPECT_RATIOS[:5]
        if self.ai_model in ("procedural-image", "diffusion-image"):
            allowed = ASPECT_RATIOS
        if self.aspect_ratio is not None and self.aspect_ratio not in allowed:
            raise ValueError(
                f"aspect_ratio {self.aspect_ratio!r} is not offered by {self.ai_model}: {', '.join(allowed)}"
            )
        return self

    def image_params(self) -> dict[str, Any]:
        return {
            "ai_model": self.ai_model,
            "prompt": self.prompt,
            "generate_multi_view": self.generate_multi_view,
            "aspect_ratio": self.aspect_ratio or "1:1",
            "pose_mode": self.pose_mode,
            "remove_background": self.remove_background,
            "moderation": self.moderation,
            "seed": 0,
        }


class TextToImageRequest(_ImageBody):
    model_config = ConfigDict(
        extra="ignore", json_schema_extra={"examples": [{"ai_model": "nano-banana", "prompt": "a red wooden chair"}]}
    )


class ImageToImageRequest(_ImageBody):
    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {"ai_model": "nano-banana", "prompt": "make it red", "reference_image_urls": ["https://e.com/a.png"]}
            ]
        },
    )

    reference_image_urls: list[str] | None = Field(None, description="1-5 images; the first is the subject.")
    input_task_id: str | None = Field(None, max_length=64, description="A SUCCEEDED image task; wins over URLs.")

    @field_validator("reference_image_urls")
    @classmethod
    def _refs(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not 1 <= len(value) <= 5:
            raise ValueError("reference_image_urls must contain between 1 and 5 images")
        return [_media(v, "reference_image_urls") for v in value]

    @model_validator(mode="after")
    def _has_refs(self) -> ImageToImageRequest:
        if not self.reference_image_urls and not self.input_task_id:
            raise ValueError("Missing required parameter: reference_image_urls (or input_task_id)")
        return self


class _TaskObject(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    type: str
    status: Literal["PENDING", "IN_PROGRESS", "SUCCEEDED", "FAILED", "CANCELED"]
    progress: int
    created_at: int
    started_at: int
    finished_at: int
    expires_at: int
    preceding_tasks: int
    task_error: TaskError
    consumed_credits: int


class ModelTask(_TaskObject):
    """An Image to 3D or Multi-Image to 3D task object (meshy-api.md §5.2)."""

    model_urls: dict[str, str] = {}
    texture_urls: list[dict[str, str]] = []
    thumbnail_url: str = ""
    thumbnail_urls: dict[str, str] | None = None
    video_url: str | None = None  # image-to-3d, multi-image-to-3d: the turntable MP4 (absent when not rendered)
    texture_prompt: str = ""
    texture_image_url: str = ""


class ImageTask(_TaskObject):
    """A Text to Image or Image to Image task object (meshy-api.md §11)."""

    ai_model: str
    prompt: str
    image_urls: list[str] = []
