"""Talking-head video as a task resource (MeshFoundry; DICE-Talk's service): `POST /openapi/v1/talking-head`.

A portrait and a speech recording become an MP4 of the portrait speaking it, with an emotion. Both inputs are
fetched (SSRF-guarded) or decoded at create, checked by their bytes (a renamed file is refused), and stored with
the task, so the price (per started 10 s of audio) is exact and every input error is a 400 before anything is
charged. The worker's step and runner are in inference/jobs/steps/talking_head.py and inference/runners/.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.api.resources import CreateContext, Prepared, Resource
from app.api.v1.schemas import _TaskObject
from app.api.v2.schemas import MeshyRequest
from app.core.config import Settings
from app.core.errors import BadRequest
from app.core.fetch import FetchRefused, fetch
from app.core.images import inspect_image
from app.core.media import probe_audio
from app.tasks.models import TaskType

EMOTIONS = ("angry", "contempt", "disgusted", "fear", "happy", "neutral", "sad", "surprised")
Emotion = Literal["angry", "contempt", "disgusted", "fear", "happy", "neutral", "sad", "surprised"]
IMAGE_MAX_BYTES = 10 * 1024 * 1024
AUDIO_MAX_BYTES = 50 * 1024 * 1024
MAX_AUDIO_S = 60.0
PRICED_SECONDS = 10.0  # the price is per started 10 s of audio


class TalkingHeadRequest(MeshyRequest):
    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={"examples": [{"image_url": "https://example.com/portrait.jpg",
                                         "audio_url": "https://example.com/speech.wav", "emotion": "happy"}]},
    )  # fmt: skip

    # Data URIs are bounded by the request body limit (MAX_BODY_BYTES); larger files go by URL.
    image_url: str = Field(min_length=1, description="The portrait: a JPEG or PNG URL or data URI, at most 10 MB, "
                           "one frontal face.")  # fmt: skip
    audio_url: str = Field(min_length=1, description="The speech: a WAV or MP3 URL or data URI, at most 50 MB and "
                           "60 s.")  # fmt: skip
    emotion: Emotion = Field("neutral", description="The expression to speak with.")
    ref_scale: float = Field(3.0, ge=0, le=10, description="Closeness to the portrait: higher moves less.")
    emo_scale: float = Field(6.0, ge=0, le=10, description="Strength of the emotion.")
    crop: bool = Field(False, description="Frame the face (512x512) instead of the whole portrait.")
    seed: int | None = Field(None, ge=0, le=2**31 - 1, description="Blinks and head motion follow it.")
    ai_model: str = Field("latest", max_length=40, description="A talking-head model this server maps.")

    def params(self) -> dict[str, Any]:
        return {"emotion": self.emotion, "ref_scale": self.ref_scale, "emo_scale": self.emo_scale, "crop": self.crop,
                "seed": self.seed or 0, "ai_model": self.ai_model}  # fmt: skip


class TalkingHeadResult(BaseModel):
    model_config = ConfigDict(extra="allow")

    video_url: str
    thumbnail_url: str
    duration_ms: int
    fps: int
    width: int
    height: int


class TalkingHeadTask(_TaskObject):
    """A talking-head task object (`type: "talking-head"`); `result` is null until SUCCEEDED."""

    result: TalkingHeadResult | None = None


def _echo(url: str, media_type: str, size: int) -> str:
    return f"data:{media_type};base64,...({size} bytes, stored)" if url.startswith("data:") else url


async def _get(url: str, field: str, settings: Settings, *, max_bytes: int) -> bytes:
    try:
        fetched = await fetch(url, allowed=None, max_bytes=max_bytes, timeout_s=settings.fetch_timeout_s,
                              allow_private=settings.fetch_allow_private)  # fmt: skip
    except FetchRefused as exc:
        raise BadRequest(f"Invalid {field}: {exc}") from exc
    return fetched.content


async def checked_inputs(image: bytes, audio: bytes) -> tuple[tuple[str, str], tuple[str, str, float]]:
    """((image media type, extension), (audio media type, extension, seconds)), or a 400 naming the problem."""
    try:
        info = await asyncio.to_thread(inspect_image, image)
    except FetchRefused as exc:
        raise BadRequest(f"Invalid image_url: {exc}") from exc
    if info.media_type not in ("image/png", "image/jpeg"):
        raise BadRequest("Invalid image_url: the portrait must be a JPEG or PNG image")
    try:
        sound = await asyncio.to_thread(probe_audio, audio, MAX_AUDIO_S)
    except ValueError as exc:
        raise BadRequest(f"Invalid audio_url: {exc}") from exc
    if sound.duration_s > MAX_AUDIO_S:
        raise BadRequest(f"Invalid audio_url: the recording is {sound.duration_s:.1f} s long; the limit is "
                         f"{MAX_AUDIO_S:g} s")  # fmt: skip
    if sound.peak_rms < 1e-3:
        raise BadRequest("Invalid audio_url: the audio is silent")
    return (info.media_type, info.extension), (sound.media_type, sound.extension, sound.duration_s)


def units(duration_s: float) -> int:
    return max(1, math.ceil(duration_s / PRICED_SECONDS - 1e-9))


async def prepare(ctx: CreateContext, body: TalkingHeadRequest) -> Prepared:
    settings = ctx.state.settings
    image, audio = await asyncio.gather(
        _get(body.image_url, "image_url", settings, max_bytes=IMAGE_MAX_BYTES),
        _get(body.audio_url, "audio_url", settings, max_bytes=AUDIO_MAX_BYTES),
    )
    return prepared_from(body.params(), image, audio, await checked_inputs(image, audio),
                         image_echo=body.image_url, audio_echo=body.audio_url)  # fmt: skip


def prepared_from(
    params: dict[str, Any], image: bytes, audio: bytes, checked: tuple[tuple[str, str], tuple[str, str, float]], *,
    image_echo: str, audio_echo: str,
) -> Prepared:  # fmt: skip
    """The task for checked inputs (shared with DICE-Talk's multipart route)."""
    (image_type, image_ext), (audio_type, audio_ext, seconds) = checked
    files = {f"image{image_ext}": image, f"audio{audio_ext}": audio}
    params = {
        **params,
        "image_url": _echo(image_echo, image_type, len(image)),
        "audio_url": _echo(audio_echo, audio_type, len(audio)),
        "audio_duration_ms": round(seconds * 1000),
        "_inputs": {"image": f"image{image_ext}", "audio": f"audio{audio_ext}"},
    }
    return Prepared(TaskType.TALKING_HEAD.value, params, files=files, quantity=units(seconds))


TALKING_HEAD = Resource(
    slug="talking-head", path="/openapi/v1/talking-head", tag="Talking Head", request=TalkingHeadRequest,
    types=(TaskType.TALKING_HEAD.value,), task_model=TalkingHeadTask, prepare=prepare,
    summary="A portrait speaking a recording, with an emotion (MP4, H.264 + AAC; 10 credits per started 10 s)",
)  # fmt: skip
RESOURCES = (TALKING_HEAD,)
