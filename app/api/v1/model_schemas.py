"""Wire schemas for the model operations: remesh, convert, resize, retexture, text-to-texture, uv-unwrap, print."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from app.api.v1.schemas import MAX_URL_LENGTH
from app.api.v2.schemas import PROMPT_MAX, MeshyRequest

# What this server writes; `blend` needs Blender on the worker, which the reference deployment does not ship.
WRITTEN_FORMATS = ("glb", "fbx", "obj", "usdz", "stl", "3mf")
ALL_FORMATS = ("glb", "fbx", "obj", "usdz", "blend", "stl", "3mf")
MODEL_PREFIXES = ("http://", "https://", "data:")


def _formats(value: list[str] | None, name: str = "target_formats") -> list[str] | None:
    if value is None:
        return None
    if not value:
        raise ValueError(f"{name} must not be empty")
    wanted = [str(v).lower().lstrip(".") for v in value]
    unknown = [v for v in wanted if v not in WRITTEN_FORMATS]
    if unknown:
        raise ValueError(f"{name}: this server writes {', '.join(WRITTEN_FORMATS)}; not {', '.join(unknown)}")
    return list(dict.fromkeys(wanted))


def _check_model_url(value: str | None) -> str | None:
    if not value:
        return None
    if not value.startswith(MODEL_PREFIXES):
        raise ValueError("model_url must be a public http(s) URL or a data:application/octet-stream;base64 URI")
    if not value.startswith("data:") and len(value) > MAX_URL_LENGTH:
        raise ValueError(f"model_url must be at most {MAX_URL_LENGTH} characters (or a data: URI)")
    return value


class _ModelInput(MeshyRequest):
    """`input_task_id` (a SUCCEEDED model task of the caller's; wins) or `model_url` (URL or data URI)."""

    input_task_id: str | None = Field(None, max_length=64)
    model_url: str | None = Field(None, description=".glb .gltf .obj .fbx .stl: a public URL or a data: URI.")

    @field_validator("model_url")
    @classmethod
    def _model_url(cls, value: str | None) -> str | None:
        return _check_model_url(value)

    @model_validator(mode="after")
    def _has_model(self) -> _ModelInput:
        if not self.input_task_id and not self.model_url:
            raise ValueError("Missing required parameter: model_url (or input_task_id)")
        return self


class _Sizing(BaseModel):
    resize_height: float | None = Field(None, ge=0, le=10_000, description="Metres; 0 means no resize.")
    resize_longest_side: float | None = Field(None, ge=0, le=10_000, description="Metres.")
    auto_size: bool = False
    origin_at: Literal["bottom", "center", ""] = ""

    def sizing(self) -> dict[str, Any]:
        return {
            "resize_height": self.resize_height or None,
            "resize_longest_side": self.resize_longest_side or None,
            "auto_size": self.auto_size,
            "origin_at": self.origin_at or ("bottom" if self.auto_size else ""),
        }

    def sizing_count(self) -> int:
        return sum((bool(self.resize_height), bool(self.resize_longest_side), self.auto_size))


class RemeshRequest(_ModelInput, _Sizing):
    target_formats: list[str] | None = Field(None, description="Default GLB only (unlike generation).")
    topology: Literal["quad", "triangle"] = "triangle"
    target_polycount: int = Field(30_000, ge=100, le=300_000)
    decimation_mode: int | None = Field(None, ge=1, le=4)
    convert_format_only: bool = False
    alpha_thumbnail: bool = False

    _check_formats = field_validator("target_formats")(classmethod(lambda cls, v: _formats(v)))

    @model_validator(mode="after")
    def _one_sizing(self) -> RemeshRequest:
        if self.sizing_count() > 1:
            raise ValueError("resize_height, resize_longest_side and auto_size are mutually exclusive")
        return self

    def params(self) -> dict[str, Any]:
        return {
            "target_formats": self.target_formats or ["glb"],
            "topology": self.topology,
            "target_polycount": self.target_polycount,
            "decimation_mode": self.decimation_mode,
            "convert_format_only": self.convert_format_only,
            "alpha_thumbnail": self.alpha_thumbnail,
            **self.sizing(),
        }


class ConvertRequest(_ModelInput):
    target_formats: list[str] = Field(description="Required: glb, fbx, obj, usdz, stl, 3mf.")

    _check_formats = field_validator("target_formats")(classmethod(lambda cls, v: _formats(v)))

    def params(self) -> dict[str, Any]:
        return {"target_formats": self.target_formats}


class ResizeRequest(_ModelInput, _Sizing):
    @model_validator(mode="after")
    def _exactly_one(self) -> ResizeRequest:
        if self.sizing_count() != 1:
            raise ValueError("exactly one of resize_height, resize_longest_side or auto_size is required")
        return self

    def params(self) -> dict[str, Any]:
        sizing = self.sizing()
        return {**sizing, "origin_at": sizing["origin_at"] or "bottom"}


class RetextureRequest(_ModelInput):
    text_style_prompt: str = Field("", max_length=PROMPT_MAX)
    image_style_url: str = Field("", description="A .jpg/.png URL or data URI; wins over text_style_prompt.")
    ai_model: str = Field("latest", max_length=40)
    enable_original_uv: bool = False
    enable_pbr: bool = False
    hd_texture: bool = False
    remove_lighting: bool = True
    target_formats: list[str] | None = None
    alpha_thumbnail: bool = False

    _check_formats = field_validator("target_formats")(classmethod(lambda cls, v: _formats(v)))

    @field_validator("image_style_url")
    @classmethod
    def _style_media(cls, value: str) -> str:
        from app.api.v1.schemas import _media

        return _media(value, "image_style_url") if value else value

    @model_validator(mode="after")
    def _has_style(self) -> RetextureRequest:
        if not self.text_style_prompt.strip() and not self.image_style_url:
            raise ValueError("Missing required parameter: text_style_prompt (or image_style_url)")
        return self

    def params(self) -> dict[str, Any]:
        return {
            "ai_model": self.ai_model,
            "text_style_prompt": self.text_style_prompt,
            "enable_original_uv": self.enable_original_uv,
            "enable_pbr": self.enable_pbr,
            "hd_texture": self.hd_texture,
            "remove_lighting": self.remove_lighting,
            "target_formats": self.target_formats or ["glb", "obj", "fbx", "stl", "usdz"],
            "alpha_thumbnail": self.alpha_thumbnail,
            "seed": 0,
        }


class TextToTextureRequest(MeshyRequest):
    """Meshy's legacy Text to Texture: `model_url` is required (no input_task_id)."""

    model_url: str = Field(description=".glb .gltf .obj .fbx .stl URL or data URI.")
    object_prompt: str = Field(min_length=1, max_length=PROMPT_MAX)
    style_prompt: str = Field(min_length=1, max_length=PROMPT_MAX)
    negative_prompt: str = Field("", max_length=PROMPT_MAX)
    art_style: str = Field("realistic", max_length=40)
    enable_original_uv: bool = True
    enable_pbr: bool = True
    resolution: Literal["1024", "2048", "4096", 1024, 2048, 4096] = "1024"

    @field_validator("model_url")
    @classmethod
    def _model_url(cls, value: str) -> str:
        checked = _check_model_url(value)
        if checked is None:
            raise ValueError("Missing required parameter: model_url")
        return checked

    def params(self) -> dict[str, Any]:
        return {
            "object_prompt": self.object_prompt,
            "style_prompt": self.style_prompt,
            "negative_prompt": self.negative_prompt,
            "art_style": self.art_style,
            "enable_original_uv": self.enable_original_uv,
            "enable_pbr": self.enable_pbr,
            "resolution": str(self.resolution),
            "seed": 0,
        }


class UvUnwrapRequest(_ModelInput):
    def params(self) -> dict[str, Any]:
        return {}


class PrintAnalyzeRequest(_ModelInput):
    def params(self) -> dict[str, Any]:
        return {}


class PrintRepairRequest(_ModelInput):
    def params(self) -> dict[str, Any]:
        return {}


class PrintMultiColorRequest(_ModelInput):
    max_colors: int = Field(4, ge=1, le=16)
    max_depth: int = Field(4, ge=3, le=6)

    def params(self) -> dict[str, Any]:
        return {"max_colors": self.max_colors, "max_depth": self.max_depth}
