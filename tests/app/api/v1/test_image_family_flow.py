"""The image family end to end on the CPU reference path: a real worker, real u2netp, files read back."""

from __future__ import annotations

import asyncio
import io
import time
from typing import Any

import numpy as np
import pytest
import trimesh
from PIL import Image

from tests.conftest import Api, Caller
from tests.images import blank, data_uri, object_photo

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]
I23D, MULTI, T2I, I2I = (
    f"/openapi/v1/{r}" for r in ("image-to-3d", "multi-image-to-3d", "text-to-image", "image-to-image")
)


async def wait_terminal(api: Api, caller: Caller, url: str, task_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = (await api.client.get(f"{url}/{task_id}", headers=caller.headers)).json()
        if task["status"] in ("SUCCEEDED", "FAILED", "CANCELED"):
            return task
        await asyncio.sleep(0.2)
    raise AssertionError(f"task {task_id} did not finish: {task}")


async def create(api: Api, caller: Caller, url: str, body: dict[str, Any]) -> str:
    response = await api.client.post(url, json=body, headers=caller.headers)
    assert response.status_code == 202, response.text
    return response.json()["result"]


async def download(api: Api, url: str) -> bytes:
    response = await api.client.get(url)  # signed: no bearer key
    assert response.status_code == 200, url
    return response.content


def red_share(png: bytes) -> float:
    """The share of clearly red pixels in a picture."""
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return float(((rgb[..., 0] > 120) & (rgb[..., 0] > rgb[..., 1] + 50) & (rgb[..., 0] > rgb[..., 2] + 50)).mean())


async def test_image_to_3d_from_a_data_uri_delivers_every_output(api: Api, caller: Caller, worker) -> None:  # type: ignore[no-untyped-def]
    body = {"image_url": data_uri(object_photo(512)), "enable_pbr": True, "should_remesh": True,
            "target_polycount": 4000, "save_pre_remeshed_model": True, "multi_view_thumbnails": True,
            "target_formats": ["glb", "obj", "stl"]}  # fmt: skip
    task = await wait_terminal(api, caller, I23D, await create(api, caller, I23D, body))
    assert task["status"] == "SUCCEEDED", task["task_error"]
    assert set(task["model_urls"]) == {"glb", "obj", "mtl", "stl", "pre_remeshed_glb"}
    assert set(task["texture_urls"][0]) == {"base_color", "metallic", "roughness", "normal"}
    assert set(task["thumbnail_urls"]) == {"front", "right", "back", "left"}
    assert task["thumbnail_url"] == task["thumbnail_urls"]["front"]
    assert task["consumed_credits"] == 30 and task["progress"] == 100
    assert task["expires_at"] - task["finished_at"] == 259_200_000

    glb = trimesh.load(io.BytesIO(await download(api, task["model_urls"]["glb"])), file_type="glb", force="mesh")
    glb.merge_vertices(merge_tex=True, merge_norm=True)  # UV seams split vertices, not the surface
    assert 3000 <= len(glb.faces) <= 5000 and glb.is_watertight
    raw = trimesh.load(io.BytesIO(await download(api, task["model_urls"]["pre_remeshed_glb"])), file_type="glb",
                       force="mesh")  # fmt: skip
    assert len(raw.faces) > len(glb.faces)
    # The photo's red object is on the texture and on the front thumbnail, not on the back one only.
    assert red_share(await download(api, task["texture_urls"][0]["base_color"])) > 0.2
    front = await download(api, task["thumbnail_urls"]["front"])
    assert Image.open(io.BytesIO(front)).size == (512, 512) and red_share(front) > 0.1


async def test_untextured_image_to_3d_is_grey_and_cheaper(api: Api, caller: Caller, worker) -> None:  # type: ignore[no-untyped-def]
    body = {"image_url": data_uri(object_photo(256, fmt="JPEG"), "image/jpeg"), "should_texture": False}
    task = await wait_terminal(api, caller, I23D, await create(api, caller, I23D, body))
    assert task["status"] == "SUCCEEDED", task["task_error"]
    assert task["texture_urls"] == [] and task["consumed_credits"] == 20
    assert red_share(await download(api, task["thumbnail_url"])) < 0.01


async def test_text_to_image_chains_into_image_to_3d_and_a_view_set_into_multi_image(
    api: Api, caller: Caller, worker
) -> None:  # type: ignore[no-untyped-def]
    single = await create(api, caller, T2I, {"ai_model": "nano-banana", "prompt": "a red mushroom"})
    views = await create(api, caller, T2I, {"ai_model": "nano-banana", "prompt": "a red mushroom",
                                            "generate_multi_view": True})  # fmt: skip
    single_task = await wait_terminal(api, caller, T2I, single)
    views_task = await wait_terminal(api, caller, T2I, views)
    assert single_task["status"] == views_task["status"] == "SUCCEEDED"
    assert len(single_task["image_urls"]) == 1 and len(views_task["image_urls"]) == 3
    picture = Image.open(io.BytesIO(await download(api, single_task["image_urls"][0])))
    assert picture.size == (1024, 1024)

    refused = await api.client.post(I23D, json={"input_task_id": views}, headers=caller.headers)
    assert refused.status_code == 400 and "exactly one image" in refused.json()["message"]
    from_single = await create(api, caller, I23D, {"input_task_id": single, "image_url": "https://example.com/x.png"})
    from_views = await create(api, caller, MULTI, {"input_task_id": views})
    for url, task_id in ((I23D, from_single), (MULTI, from_views)):
        task = await wait_terminal(api, caller, url, task_id)
        assert task["status"] == "SUCCEEDED", task["task_error"]
        assert task["input_task_id"] in (single, views)
        glb = trimesh.load(io.BytesIO(await download(api, task["model_urls"]["glb"])), file_type="glb", force="mesh")
        glb.merge_vertices(merge_tex=True, merge_norm=True)
        assert glb.is_watertight and len(glb.faces) > 100


async def test_image_to_image_recolours_the_subject(api: Api, caller: Caller, worker) -> None:  # type: ignore[no-untyped-def]
    body = {"ai_model": "nano-banana", "prompt": "make it red",
            "reference_image_urls": [data_uri(object_photo(256, colour=(30, 60, 200)))]}  # fmt: skip
    task = await wait_terminal(api, caller, I2I, await create(api, caller, I2I, body))
    assert task["status"] == "SUCCEEDED", task["task_error"]
    assert red_share(await download(api, task["image_urls"][0])) > 0.05
    assert task["consumed_credits"] == 3


async def test_unusable_inputs_fail_with_invalid_input_and_refund(api: Api, caller: Caller, worker) -> None:  # type: ignore[no-untyped-def]
    background = await create(api, caller, I23D, {"image_url": data_uri(blank())})
    unresolvable = await create(api, caller, MULTI, {"image_urls": ["https://no-such-host.invalid/a.png"]})
    for url, task_id, fragment in ((I23D, background, "background"), (MULTI, unresolvable, "resolve")):
        task = await wait_terminal(api, caller, url, task_id)
        assert task["status"] == "FAILED"
        assert task["task_error"]["type"] == "invalid_input" and task["task_error"]["code"] == "invalid_input"
        assert fragment in task["task_error"]["message"], task["task_error"]
        assert task["consumed_credits"] == 0
    assert (await api.client.get("/openapi/v1/balance", headers=caller.headers)).json()["balance"] == 1000
