"""The shapes other Meshy clients arrive in: ComfyUI's Meshy nodes (the `/proxy/meshy` prefix, `X-API-KEY`, null
fields, the `/customers/storage` upload flow) and Meshy's pre-`/openapi` paths, on the same task objects."""

from __future__ import annotations

import asyncio
import io
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import trimesh

from tests.conftest import Api, Caller, make_caller
from tests.images import object_photo

pytestmark = pytest.mark.asyncio
P = "/proxy/meshy"


def comfy(caller: Caller) -> dict[str, str]:
    """ComfyUI sends the key as X-API-KEY when it is configured as an API key."""
    return {"X-API-KEY": caller.key}


async def poll(api: Api, caller: Caller, path: str, timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = (await api.client.get(path, headers=comfy(caller))).json()
        if task["status"] in ("SUCCEEDED", "FAILED", "CANCELED"):
            return task
        await asyncio.sleep(0.2)
    raise AssertionError(f"{path} did not finish")


async def test_comfyui_text_to_3d_then_refine(api: Api, caller: Caller, worker) -> None:  # type: ignore[no-untyped-def]
    # MeshyTextToModelRequest as ComfyUI builds it with should_remesh "false": topology/polycount null.
    body = {"mode": "preview", "prompt": "a wooden chair", "art_style": "sculpture", "ai_model": "latest",
            "topology": None, "target_polycount": None, "should_remesh": False, "symmetry_mode": "auto",
            "pose_mode": "", "seed": 0, "moderation": False}  # fmt: skip
    created = await api.client.post(f"{P}/openapi/v2/text-to-3d", json=body, headers=comfy(caller))
    assert created.status_code == 202, created.text
    preview = await poll(api, caller, f"{P}/openapi/v2/text-to-3d/{created.json()['result']}")
    assert preview["status"] == "SUCCEEDED" and preview["topology"] == "triangle"
    refine = {"mode": "refine", "preview_task_id": preview["id"], "enable_pbr": None, "texture_prompt": None,
              "texture_image_url": None, "ai_model": "latest", "moderation": False}  # fmt: skip
    created = await api.client.post(f"{P}/openapi/v2/text-to-3d", json=refine, headers=comfy(caller))
    assert created.status_code == 202, created.text
    refined = await poll(api, caller, f"{P}/openapi/v2/text-to-3d/{created.json()['result']}")
    assert refined["status"] == "SUCCEEDED", refined["task_error"]
    glb = await api.client.get(refined["model_urls"]["glb"])
    assert glb.status_code == 200 and len(trimesh.load(io.BytesIO(glb.content), file_type="glb", force="mesh").faces)
    # The same task, the same object, under every path and either header.
    plain = (await api.client.get(f"/openapi/v2/text-to-3d/{refined['id']}", headers=caller.headers)).json()
    legacy = (await api.client.get(f"/v2/text-to-3d/{refined['id']}", headers=comfy(caller))).json()
    assert {k: v for k, v in plain.items() if not k.endswith("_urls") and k != "thumbnail_url"} == {
        k: v for k, v in legacy.items() if not k.endswith("_urls") and k != "thumbnail_url"
    }


async def upload(api: Api, caller: Caller, content: bytes, name: str = "image.png", content_type: str = "image/png"):  # type: ignore[no-untyped-def]
    slot = await api.client.post("/customers/storage", json={"file_name": name, "content_type": content_type},
                                 headers=comfy(caller))  # fmt: skip
    assert slot.status_code == 200, slot.text
    urls = slot.json()
    put = await api.client.put(urls["upload_url"], content=content, headers={"Content-Type": content_type})
    return urls, put


async def test_comfyui_upload_flow_feeds_image_to_3d(api: Api, caller: Caller) -> None:
    urls, put = await upload(api, caller, object_photo(128))
    assert put.status_code == 200, put.text
    assert urls["upload_url"] != urls["download_url"] and "Signature=" in urls["upload_url"]
    got = await api.client.get(urls["download_url"])
    assert got.status_code == 200 and got.content == object_photo(128) and got.headers["content-type"] == "image/png"
    # MeshyImageToModelRequest with should_texture false: texture fields null.
    body = {"image_url": urls["download_url"], "ai_model": "latest", "topology": "triangle", "target_polycount": 3000,
            "symmetry_mode": "auto", "should_remesh": True, "should_texture": False, "enable_pbr": None,
            "pose_mode": "", "texture_prompt": None, "texture_image_url": None, "seed": 0}  # fmt: skip
    created = await api.client.post(f"{P}/openapi/v1/image-to-3d", json=body, headers=comfy(caller))
    assert created.status_code == 202, created.text
    path = f"{P}/openapi/v1/image-to-3d/{created.json()['result']}"
    task = (await api.client.get(path, headers=comfy(caller))).json()
    assert task["status"] == "PENDING" and task["image_url"].startswith("data:image/png;base64,...(")
    # The upload URL is single-use.
    again = await api.client.put(urls["upload_url"], content=object_photo(128), headers={"Content-Type": "image/png"})
    assert again.status_code == 409


async def test_the_upload_flow_refuses_what_it_must(api: Api, caller: Caller, settings, db) -> None:  # type: ignore[no-untyped-def]
    # Tampered and expired upload URLs; wrong content; too big; not an image or a model at all.
    slot = (await api.client.post("/customers/storage", json={"file_name": "a.png", "content_type": "image/png"},
                                  headers=comfy(caller))).json()  # fmt: skip
    tampered = slot["upload_url"].replace("Signature=", "Signature=0")
    assert (await api.client.put(tampered, content=object_photo(64))).status_code == 403
    parts = urlsplit(slot["upload_url"])
    account, slot_id = parts.path.split("/")[4:6]
    import uuid as _uuid

    signer = api.app.state.mf.signer  # type: ignore[attr-defined]
    past = int(time.time()) - 10
    expired = f"{parts.path}?Expires={past}&Signature={signer.signature(_uuid.UUID(slot_id), f'put:{account}', past)}"
    refused = await api.client.put(expired, content=object_photo(64))
    assert refused.status_code == 403 and refused.json()["message"] == "Upload URL expired"
    _, text = await upload(api, caller, b"hello, not an image", "a.png")
    assert text.status_code == 400 and "Invalid file" in text.json()["message"]
    settings.fetch_max_bytes = 1000
    _, big = await upload(api, caller, object_photo(512))
    assert big.status_code == 400 and "larger than" in big.json()["message"]
    settings.fetch_max_bytes = 20 * 2**20
    unsupported = await api.client.post("/customers/storage", json={"file_name": "a.exe", "content_type": "x/y"},
                                        headers=comfy(caller))  # fmt: skip
    assert unsupported.status_code == 400
    assert (await api.client.post("/customers/storage", json={"file_name": "a.png"})).status_code == 401
    # Another account cannot use the caller's upload, nor reach it by a doctored URL.
    urls, put = await upload(api, caller, object_photo(128))
    assert put.status_code == 200
    other = await make_caller(settings, db, name="other")
    stolen = await api.client.post("/openapi/v1/image-to-3d", json={"image_url": urls["download_url"]},
                                   headers=other.headers)  # fmt: skip
    assert stolen.status_code == 400 and "another account" in stolen.json()["message"]
    query = parse_qs(urlsplit(urls["download_url"]).query)
    doctored = urls["download_url"].replace(str(caller.account_id), str(other.account_id))
    assert (await api.client.get(doctored)).status_code == 403
    broken = await api.client.post(
        "/openapi/v1/image-to-3d",
        headers=caller.headers,
        json={"image_url": urls["download_url"].replace(query["Signature"][0], "0" * 64)},
    )
    assert broken.status_code == 400 and "expired or was altered" in broken.json()["message"]
    assert (await api.client.get(f"{urls['download_url']}x")).status_code == 403
    # Nothing of this was charged.
    assert (await api.client.get("/openapi/v1/balance", headers=caller.headers)).json()["balance"] == 1000


async def test_legacy_paths_and_the_header(api: Api, caller: Caller) -> None:
    assert (await api.client.get("/v1/balance", headers=comfy(caller))).json() == {"balance": 1000}
    assert (await api.client.get(f"{P}/openapi/v1/balance", headers=caller.headers)).json() == {"balance": 1000}
    body = {"mode": "preview", "prompt": "a mug"}
    created = await api.client.post("/v2/text-to-3d", json=body, headers=comfy(caller))
    assert created.status_code == 202
    task_id = created.json()["result"]
    for path in (f"/v2/text-to-3d/{task_id}", f"/openapi/v2/text-to-3d/{task_id}", f"{P}/v2/text-to-3d/{task_id}"):
        assert (await api.client.get(path, headers=comfy(caller))).json()["id"] == task_id
    listed = (await api.client.get("/v2/text-to-3d", headers=comfy(caller))).json()
    assert [t["id"] for t in listed] == [task_id]
    # A foreign id is a clean 404 under every resource, whatever the path.
    for path in ("/v1/image-to-3d", "/v1/rigging", "/v1/talking-head", f"{P}/openapi/v1/remesh"):
        missing = await api.client.get(f"{path}/{task_id}", headers=comfy(caller))
        assert missing.status_code == 404 and missing.json() == {"message": "Task not found"}
    # The same 401 wording for a wrong key in either header.
    for headers in ({"X-API-KEY": "msy_wrong"}, {"Authorization": "Bearer msy_wrong"}, {}):
        denied = await api.client.get(f"{P}/openapi/v1/balance", headers=headers)
        assert denied.status_code == 401 and denied.json() == {"message": "Invalid API key"}
    async with api.client.stream("GET", f"{P}/openapi/v2/text-to-3d/{task_id}/stream", headers=comfy(caller)) as sse:
        assert sse.status_code == 200
        async for line in sse.aiter_lines():  # the first event carries the task; it stays PENDING (no worker here)
            if line.startswith("data:"):
                assert task_id in line
                break
