"""Talking-head video end to end: a portrait speaks a recording (the CPU reference, a real worker), the MP4 is read
back with PyAV, bad inputs are 400s at create or a refunded FAILED task, and DICE-Talk's own routes work."""

from __future__ import annotations

import asyncio
import base64
import io
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from PIL import Image

from app.api.v1.talking_head import units
from tests.app.api.v1.test_image_family_flow import wait_terminal
from tests.conftest import Api, Caller, make_caller
from tests.fixtures.speech import speech_like, wav_bytes
from tests.images import object_photo

pytestmark = pytest.mark.asyncio
URL = "/openapi/v1/talking-head"
FIXTURES = Path(__file__).resolve().parents[3] / "fixtures"
ARTEFACTS = Path(__file__).resolve().parents[4] / ".meshfoundry-test" / "artefacts"
PORTRAIT = (FIXTURES / "portrait.jpg").read_bytes()


def uri(content: bytes, media_type: str) -> str:
    return f"data:{media_type};base64," + base64.b64encode(content).decode()


SPEECH = uri(wav_bytes(speech_like(3.0)), "audio/wav")
FACE = uri(PORTRAIT, "image/jpeg")


async def wait_done(api: Api, caller: Caller, task_id: str) -> dict[str, Any]:
    return await wait_terminal(api, caller, URL, task_id)


def read_video(content: bytes) -> tuple[dict[str, Any], list[np.ndarray]]:
    with av.open(io.BytesIO(content)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        facts = {
            "video": video.codec_context.name, "audio": audio.codec_context.name, "fps": float(video.average_rate),
            "size": (video.width, video.height), "pix_fmt": video.codec_context.pix_fmt,
            "duration": float(container.duration) / 1e6, "sample_rate": audio.codec_context.sample_rate,
        }  # fmt: skip
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    with av.open(io.BytesIO(content)) as container:
        samples = sum(frame.samples for frame in container.decode(audio=0))
    facts["audio_s"] = samples / facts["sample_rate"]
    return facts, frames


async def test_a_portrait_speaks_the_recording(api: Api, caller: Caller, worker, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    response = await api.client.post(URL, headers=caller.headers,
                                     json={"image_url": FACE, "audio_url": SPEECH, "emotion": "happy"})  # fmt: skip
    assert response.status_code == 202, response.text
    task = await wait_done(api, caller, response.json()["result"])
    assert task["status"] == "SUCCEEDED", task["task_error"]
    assert task["type"] == "talking-head" and task["consumed_credits"] == 10
    assert task["emotion"] == "happy" and task["audio_duration_ms"] == 3000
    assert task["image_url"].startswith("data:image/jpeg;base64,...(") and len(str(task)) < 4000
    result = task["result"]
    assert (result["duration_ms"], result["fps"], result["width"], result["height"]) == (3000, 25, 384, 384)
    download = await api.client.get(result["video_url"])
    assert download.status_code == 200 and download.headers["content-type"] == "video/mp4"
    facts, frames = read_video(download.content)
    assert (facts["video"], facts["audio"], facts["pix_fmt"], facts["size"]) == ("h264", "aac", "yuv420p", (384, 384))
    assert facts["fps"] == 25 and len(frames) == 75
    assert abs(facts["duration"] - 3.0) <= 0.04 and abs(facts["audio_s"] - 3.0) <= 0.04
    # The mouth opens with the sound: the dark gap between the lips shows while it speaks and closes in the pauses.
    loudness = np.array([np.sqrt(np.mean(c**2)) for c in np.array_split(speech_like(3.0), 75)])

    def dark_mouth(frame: np.ndarray) -> int:  # the test portrait's mouth (its face box: 132,49 72x72)
        region = frame[100:124, 148:188].astype(int)
        return int(((region[..., 0] < 90) & (region[..., 1] < 60)).sum())

    gap = np.array([dark_mouth(f) for f in frames])
    silent = np.convolve(loudness < 0.01, np.ones(5), "same") == 5  # inside a pause of 5+ frames
    speaking = loudness > 0.05
    assert gap[speaking].mean() > 3 * max(gap[silent].mean(), 1.0), (gap.tolist(), loudness.round(2).tolist())
    assert np.corrcoef(loudness, gap)[0, 1] > 0.3
    loud, quiet = int(np.argmax(gap)), int(np.flatnonzero(silent)[0])
    ARTEFACTS.mkdir(parents=True, exist_ok=True)  # for a person to look at: a quiet and a loud frame side by side
    Image.fromarray(np.concatenate([frames[quiet], frames[loud]], axis=1)).save(ARTEFACTS / "talking_head.png")
    poster = await api.client.get(result["thumbnail_url"])
    assert poster.status_code == 200 and Image.open(io.BytesIO(poster.content)).size == (384, 384)


async def test_no_face_fails_with_a_refund_and_leaves_no_file(api: Api, caller: Caller, worker, settings) -> None:  # type: ignore[no-untyped-def]
    body = {"image_url": uri(object_photo(128), "image/png"), "audio_url": SPEECH}
    task_id = (await api.client.post(URL, headers=caller.headers, json=body)).json()["result"]
    task = await wait_done(api, caller, task_id)
    assert task["status"] == "FAILED" and "no face was found" in task["task_error"]["message"]
    assert task["result"] is None
    assert (await api.client.get("/openapi/v1/balance", headers=caller.headers)).json()["balance"] == 1000
    assert not (settings.assets_path / task_id).exists()


def _tone(seconds: float) -> bytes:
    t = np.arange(int(seconds * 8000)) / 8000
    return wav_bytes(0.3 * np.sin(2 * np.pi * 220 * t), rate=8000)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"image_url": uri(wav_bytes(speech_like(1.0)), "image/png")}, "Invalid image_url"),  # audio named a picture
        ({"audio_url": uri(PORTRAIT, "audio/wav")}, "Invalid audio_url: the file is not WAV or MP3 audio"),
        ({"audio_url": uri(wav_bytes(speech_like(2.0, silent=True)), "audio/wav")}, "the audio is silent"),
        ({"audio_url": uri(_tone(61.0), "audio/wav")}, "the limit is 60 s"),
        ({"audio_url": uri(b"RIFF\x00\x00\x00\x00WAVEjunk" * 10, "audio/wav")}, "Invalid audio_url"),
        ({"image_url": "http://127.0.0.1/face.png"}, "Invalid image_url"),
        ({"audio_url": "http://10.0.0.1/a.wav"}, "Invalid audio_url"),
        ({"emotion": "bored"}, "emotion"),
        ({"ref_scale": 10.5}, "ref_scale"),
        ({"emo_scale": -1}, "emo_scale"),
        ({"audio_url": None}, "audio_url"),
    ],
)
async def test_bad_inputs_are_400s_and_cost_nothing(
    api: Api, caller: Caller, change: dict[str, Any], message: str
) -> None:
    body = {k: v for k, v in ({"image_url": FACE, "audio_url": SPEECH} | change).items() if v is not None}
    response = await api.client.post(URL, headers=caller.headers, json=body)
    assert response.status_code == 400, response.text
    assert message in response.json()["message"]
    assert (await api.client.get("/openapi/v1/balance", headers=caller.headers)).json()["balance"] == 1000


async def test_the_price_is_per_started_ten_seconds(api: Api, caller: Caller) -> None:
    assert [units(s) for s in (0.5, 10.0, 10.04, 25.0, 60.0)] == [1, 1, 2, 3, 6]
    body = {"image_url": FACE, "audio_url": uri(_tone(12.0), "audio/wav")}
    task_id = (await api.client.post(URL, headers=caller.headers, json=body)).json()["result"]
    task = (await api.client.get(f"{URL}/{task_id}", headers=caller.headers)).json()
    assert task["consumed_credits"] == 20


async def test_dice_talk_routes(api: Api, caller: Caller, worker, settings, db) -> None:  # type: ignore[no-untyped-def]
    files = {"image": ("portrait.jpg", PORTRAIT, "image/jpeg"),
             "audio": ("speech.wav", wav_bytes(speech_like(1.5)), "audio/wav")}  # fmt: skip
    response = await api.client.post("/api/v1/synthesis/start", headers=caller.headers, files=files,
                                     data={"emotion": "sad", "crop": "true"})  # fmt: skip
    assert response.status_code == 200, response.text
    started = response.json()
    assert started["status"] == "PENDING" and started["message"] == "Task created successfully"
    task_id = started["task_id"]
    deadline = time.monotonic() + 120
    while (status := (await api.client.get(f"/api/v1/synthesis/{task_id}/status", headers=caller.headers)).json())[
        "status"
    ] not in ("COMPLETED", "FAILED") and time.monotonic() < deadline:  # noqa: ASYNC110
        assert status["status"] in ("PENDING", "PROCESSING") and 0 <= status["progress"] <= 1
        await asyncio.sleep(0.2)
    assert status["status"] == "COMPLETED" and status["progress"] == 1.0, status
    video = await api.client.get(f"/api/v1/synthesis/{task_id}/download", headers=caller.headers)
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    facts, _ = read_video(video.content)
    assert facts["size"] == (512, 512) and abs(facts["duration"] - 1.5) <= 0.04  # crop: the face at 512x512
    # The same task under the Meshy-style resource, echoing the upload's name.
    task = (await api.client.get(f"{URL}/{task_id}", headers=caller.headers)).json()
    assert task["emotion"] == "sad" and task["crop"] is True and task["image_url"] == "portrait.jpg"
    # Another account sees nothing; errors carry the service's `error`.
    other = await make_caller(settings, db, name="other")
    missing = await api.client.get(f"/api/v1/synthesis/{task_id}/status", headers=other.headers)
    assert missing.status_code == 404 and missing.json()["error"] == "Task not found"
    assert (await api.client.get(f"/api/v1/synthesis/{task_id}/download", headers=other.headers)).status_code == 404
    assert (await api.client.get("/api/v1/synthesis/../../etc/passwd/download", headers=caller.headers)
            ).status_code == 404  # fmt: skip
    bad = await api.client.post("/api/v1/synthesis/start", headers=caller.headers, data={"emotion": "happy"},
                                files={**files, "audio": ("speech.txt", b"hello", "text/plain")})  # fmt: skip
    assert bad.status_code == 400 and "Invalid audio file type" in bad.json()["error"]
    scale = await api.client.post("/api/v1/synthesis/start", headers=caller.headers, files=files,
                                  data={"emotion": "happy", "ref_scale": "11"})  # fmt: skip
    assert scale.status_code == 400 and scale.json()["error"] == "ref_scale must be between 0.0 and 10.0"
    assert (await api.client.post("/api/v1/synthesis/start", files=files, data={"emotion": "happy"})).status_code == 401
    health = (await api.client.get("/api/health")).json()
    assert health["status"] == "healthy" and health["model_loaded"] is True and health["version"] == "1.0.0"


async def test_not_completed_yet_is_a_400(api: Api, caller: Caller) -> None:
    files = {"image": ("p.png", PORTRAIT, "image/png"), "audio": ("a.mp3", wav_bytes(speech_like(1.0)), "audio/mpeg")}
    started = await api.client.post("/api/v1/synthesis/start", headers=caller.headers, files=files,
                                    data={"emotion": "neutral"})  # fmt: skip
    assert started.status_code == 200, started.text  # the bytes decide (a WAV named .mp3 is still audio)
    task_id = started.json()["task_id"]
    early = await api.client.get(f"/api/v1/synthesis/{task_id}/download", headers=caller.headers)
    assert early.status_code == 400 and early.json()["error"] == "Task not completed yet"
    status = (await api.client.get(f"/api/v1/synthesis/{task_id}/status", headers=caller.headers)).json()
    assert status["status"] == "PENDING" and status["progress"] == 0.0
    assert (await api.client.get("/api/health")).json()["status"] == "unhealthy"  # no worker runs here
