"""The model operations' input rules at create: Meshy-shaped 400s before anything is charged."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tests.conftest import Api, Caller, make_caller, unthrottle
from tests.images import data_uri, glb_box, model_data_uri, object_photo

pytestmark = pytest.mark.asyncio
V1 = "/openapi/v1"
MODEL = model_data_uri(glb_box())


def raw(content: bytes) -> str:
    return "data:application/octet-stream;base64," + base64.b64encode(content).decode()


@pytest.mark.parametrize(
    ("path", "body", "fragment"),
    [
        ("remesh", {}, "model_url"),
        ("remesh", {"model_url": "https://example.com/chair.3dm"}, "Invalid model file extension: .3dm"),
        ("remesh", {"model_url": raw(b"")}, "empty"),
        ("remesh", {"model_url": raw(b"\x00\x01 not a model at all" * 4)}, "not a GLB"),
        ("remesh", {"model_url": raw(b"; FBX 7.4.0 project file\nFBXHeaderExtension: {\n}")}, "ASCII FBX"),
        ("remesh", {"model_url": "http://127.0.0.1/a.glb"}, "private"),
        ("remesh", {"model_url": "ftp://example.com/a.glb"}, "model_url"),
        ("remesh", {"model_url": MODEL, "target_formats": ["blend"]}, "this server writes"),
        ("remesh", {"model_url": MODEL, "resize_height": 1, "auto_size": True}, "mutually exclusive"),
        ("remesh", {"model_url": MODEL, "target_polycount": 50}, "target_polycount"),
        ("convert", {"model_url": MODEL}, "target_formats"),
        ("convert", {"model_url": MODEL, "target_formats": []}, "target_formats"),
        ("resize", {"model_url": MODEL}, "exactly one"),
        ("resize", {"model_url": MODEL, "resize_height": 1, "resize_longest_side": 2}, "exactly one"),
        ("resize", {"model_url": MODEL, "auto_size": True, "origin_at": "top"}, "origin_at"),
        ("retexture", {"model_url": MODEL}, "text_style_prompt"),
        ("retexture", {"model_url": MODEL, "image_style_url": "data:image/png;base64,"}, "image_style_url"),
        ("text-to-texture", {"model_url": MODEL, "object_prompt": "a box"}, "style_prompt"),
        ("text-to-texture", {"object_prompt": "a", "style_prompt": "b"}, "model_url"),
        ("text-to-texture", {"model_url": "", "object_prompt": "a", "style_prompt": "b"}, "model_url"),
        ("text-to-texture", {"model_url": "gopher://x/a.glb", "object_prompt": "a", "style_prompt": "b"}, "model_url"),
        ("uv-unwrap", {"model_url": raw(b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")}, "GLB"),
        ("uv-unwrap", {"model_url": "https://example.com/a.obj"}, ".glb"),
        ("print/multi-color", {"model_url": MODEL, "max_colors": 17}, "max_colors"),
        ("print/multi-color", {"model_url": MODEL, "max_depth": 2}, "max_depth"),
    ],
)
async def test_bad_model_input_is_a_400(
    api: Api, caller: Caller, path: str, body: dict[str, Any], fragment: str
) -> None:
    response = await api.client.post(f"{V1}/{path}", json=body, headers=caller.headers)
    assert response.status_code == 400, response.text
    assert set(response.json()) == {"message"} and fragment in response.json()["message"], response.json()
    assert (await api.client.get("/openapi/v1/balance", headers=caller.headers)).json()["balance"] == 1000


async def test_input_task_id_must_name_an_own_succeeded_model_task(api: Api, caller: Caller, settings, db) -> None:  # type: ignore[no-untyped-def]
    image = (await api.client.post(f"{V1}/text-to-image", json={"ai_model": "nano-banana", "prompt": "x"},
                                   headers=caller.headers)).json()["result"]  # fmt: skip
    preview = (await api.client.post("/openapi/v2/text-to-3d", json={"mode": "preview", "prompt": "x"},
                                     headers=caller.headers)).json()["result"]  # fmt: skip
    wrong = await api.client.post(f"{V1}/remesh", json={"input_task_id": image}, headers=caller.headers)
    assert wrong.status_code == 400 and "text-to-image" in wrong.json()["message"]
    pending = await api.client.post(f"{V1}/convert", json={"input_task_id": preview, "target_formats": ["stl"]},
                                    headers=caller.headers)  # fmt: skip
    assert pending.status_code == 400 and "not succeeded" in pending.json()["message"]
    other = await make_caller(settings, db, name="other")
    foreign = await api.client.post(f"{V1}/print/analyze", json={"input_task_id": preview}, headers=other.headers)
    assert foreign.status_code == 404


async def test_which_operations_count_toward_the_queue_limit(api: Api, caller: Caller, db) -> None:  # type: ignore[no-untyped-def]
    await unthrottle(db, caller)
    for _ in range(10):
        assert (
            await api.client.post(f"{V1}/remesh", json={"model_url": MODEL}, headers=caller.headers)
        ).status_code == 202
    body = {"model_url": MODEL, "object_prompt": "a", "style_prompt": "b"}
    refused = await api.client.post(f"{V1}/text-to-texture", json=body, headers=caller.headers)
    assert refused.status_code == 429 and refused.json() == {"message": "NoMoreConcurrentTasks"}
    body = {"model_url": MODEL, "target_formats": ["stl"]}
    assert (await api.client.post(f"{V1}/convert", json=body, headers=caller.headers)).status_code == 202
    assert (await api.client.post(f"{V1}/print/analyze", json={"model_url": MODEL},
                                  headers=caller.headers)).status_code == 202  # fmt: skip


async def test_echo_and_prices(api: Api, caller: Caller) -> None:
    body = {"model_url": MODEL, "text_style_prompt": "rusty metal", "image_style_url": data_uri(object_photo(64))}
    task_id = (await api.client.post(f"{V1}/retexture", json=body, headers=caller.headers)).json()["result"]
    task = (await api.client.get(f"{V1}/retexture/{task_id}", headers=caller.headers)).json()
    assert task["type"] == "retexture" and task["consumed_credits"] == 10
    assert task["text_style_prompt"] == "rusty metal" and task["enable_original_uv"] is False
    assert task["model_url"].startswith("data:application/octet-stream;base64,...(")
    assert task["image_style_url"].startswith("data:image/png;base64,...(")
    analyze = (await api.client.post(f"{V1}/print/analyze", json={"model_url": "https://example.com/a.stl"},
                                     headers=caller.headers)).json()["result"]  # fmt: skip
    task = (await api.client.get(f"{V1}/print/analyze/{analyze}", headers=caller.headers)).json()
    assert task["type"] == "print-analyze" and task["consumed_credits"] == 0 and task["printability"] is None
    assert task["model_url"] == "https://example.com/a.stl"
