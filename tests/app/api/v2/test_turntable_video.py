"""`video_url`: the generation tasks' turntable MP4, end to end through a real worker, and the setting that skips it."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import av
import httpx
import pytest

from app.core.config import Settings
from tests.app.api.v2.test_text_to_3d_flow import create_preview, wait_terminal
from tests.conftest import Api, Caller
from tests.images import data_uri, object_photo

pytestmark = pytest.mark.asyncio
V1 = "/openapi/v1"


async def wait_v1(api: Api, caller: Caller, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await api.client.post(f"{V1}/{path}", json=body, headers=caller.headers)
    assert response.status_code == 202, response.text
    task_id = response.json()["result"]
    for _ in range(600):
        task = (await api.client.get(f"{V1}/{path}/{task_id}", headers=caller.headers)).json()
        if task["status"] in ("SUCCEEDED", "FAILED", "CANCELED"):
            return task
        await asyncio.sleep(0.2)
    raise AssertionError(f"{path} task {task_id} did not finish")


async def assert_plays(url: str) -> None:
    async with httpx.AsyncClient() as anonymous:  # signed URLs need no Authorization header
        video = await anonymous.get(url)
    assert video.status_code == 200
    assert video.headers["content-type"] == "video/mp4"
    with av.open(io.BytesIO(video.content)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert sum(1 for _ in container.decode(stream)) >= 24
        assert not container.streams.audio


async def test_a_preview_has_a_turntable_video(api: Api, caller: Caller, worker, settings) -> None:
    assert Settings.model_fields["turntable_video"].default is True  # on by default (the test settings turn it off)
    settings.turntable_video = True  # the worker fixture holds this same object
    preview = await wait_terminal(api, caller, await create_preview(api, caller, target_polycount=3000))
    assert preview["status"] == "SUCCEEDED", preview["task_error"]
    assert preview["video_url"].startswith(api.base_url)
    assert "/preview.mp4?" in preview["video_url"]
    await assert_plays(preview["video_url"])

    # A model operation on it is no generation task: it has no video of its own.
    remeshed = await wait_v1(api, caller, "remesh", {"input_task_id": preview["id"], "target_polycount": 1000})
    assert remeshed["status"] == "SUCCEEDED", remeshed["task_error"]
    assert "video_url" not in remeshed


async def test_image_to_3d_has_a_turntable_video(api: Api, caller: Caller, worker, settings) -> None:  # type: ignore[no-untyped-def]
    settings.turntable_video = True
    body = {"image_url": data_uri(object_photo(256)), "should_texture": False, "target_polycount": 2000}
    task = await wait_v1(api, caller, "image-to-3d", body)
    assert task["status"] == "SUCCEEDED", task["task_error"]
    await assert_plays(task["video_url"])


async def test_the_setting_turns_it_off(api: Api, caller: Caller, worker, settings) -> None:
    settings.turntable_video = False  # the worker fixture holds this same object
    preview = await wait_terminal(api, caller, await create_preview(api, caller, target_polycount=3000))
    assert preview["status"] == "SUCCEEDED", preview["task_error"]
    assert "video_url" not in preview
    assert not (settings.assets_path / preview["id"] / "preview.mp4").exists()
