"""Text to 3D v2 end to end: a worker generates, the client follows over SSE, downloads, refines, deletes."""

from __future__ import annotations

import asyncio
import io
import json
import time
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import trimesh
from PIL import Image

from tests.conftest import Api, Caller

pytestmark = pytest.mark.asyncio
URL = "/openapi/v2/text-to-3d"


async def wait_terminal(api: Api, caller: Caller, task_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = (await api.client.get(f"{URL}/{task_id}", headers=caller.headers)).json()
        if task["status"] in ("SUCCEEDED", "FAILED", "CANCELED"):
            return task
        await asyncio.sleep(0.1)
    raise AssertionError(f"task {task_id} did not finish: {task}")


async def read_sse(client: httpx.AsyncClient, url: str, headers: dict[str, str]) -> list[tuple[str, str]]:
    """(event, data) pairs until the server closes the stream; asserts every data is one line."""
    events: list[tuple[str, str]] = []
    event, data_lines = "message", []
    async with client.stream("GET", url, headers={**headers, "Accept": "text/event-stream"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if line.startswith(":"):
                continue
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data_lines.append(line[5:].strip())
            elif line == "" and data_lines:
                assert len(data_lines) == 1, "each event's JSON must sit on one data: line"
                events.append((event, data_lines[0]))
                event, data_lines = "message", []
    return events


async def create_preview(api: Api, caller: Caller, **body: Any) -> str:
    response = await api.client.post(
        URL, json={"mode": "preview", "prompt": "a wooden chair", "seed": 3, **body}, headers=caller.headers
    )
    assert response.status_code == 202, response.text
    return response.json()["result"]


async def test_preview_refine_download_delete(api: Api, caller: Caller, worker, settings) -> None:
    preview_id = await create_preview(api, caller, should_remesh=True, target_polycount=3000)
    preview = await wait_terminal(api, caller, preview_id)
    assert preview["status"] == "SUCCEEDED", preview["task_error"]
    assert preview["progress"] == 100
    assert preview["started_at"] >= preview["created_at"] > 0
    assert preview["expires_at"] - preview["finished_at"] == settings.asset_retention_s * 1000
    assert set(preview["model_urls"]) == {"glb", "obj", "mtl", "fbx", "stl", "usdz"}  # Meshy's default: all but 3mf
    assert preview["texture_urls"] == []
    assert preview["task_error"] == {"message": ""}

    async with httpx.AsyncClient() as anonymous:  # signed URLs need no Authorization header
        glb = await anonymous.get(preview["model_urls"]["glb"])
        assert glb.status_code == 200
        assert glb.headers["content-type"] == "model/gltf-binary"
        assert int(glb.headers["content-length"]) == len(glb.content)
        mesh = trimesh.load(io.BytesIO(glb.content), file_type="glb", force="mesh")
        assert abs(len(mesh.faces) - 3000) <= 300
        thumb = await anonymous.get(preview["thumbnail_url"])
        assert thumb.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(thumb.content)).size == (512, 512)
        ranged = await anonymous.get(preview["model_urls"]["glb"], headers={"Range": "bytes=0-3"})
        assert ranged.status_code == 206 and ranged.content == b"glTF"
        expires = parse_qs(urlsplit(preview["model_urls"]["glb"]).query)["Expires"][0]
        assert int(expires) * 1000 == preview["expires_at"] // 1000 * 1000

    refine_body = {"mode": "refine", "preview_task_id": preview_id, "texture_prompt": "red", "target_formats": ["glb"]}
    refine = await api.client.post(URL, json=refine_body, headers=caller.headers)
    assert refine.status_code == 202
    refine_id = refine.json()["result"]
    assert refine_id != preview_id
    refined = await wait_terminal(api, caller, refine_id)
    assert refined["status"] == "SUCCEEDED", refined["task_error"]
    assert refined["type"] == "text-to-3d-refine"
    assert refined["texture_prompt"] == "red"
    assert refined["consumed_credits"] == 10
    assert set(refined["model_urls"]) == {"glb"}
    assert list(refined["texture_urls"][0]) == ["base_color"]
    async with httpx.AsyncClient() as anonymous:
        texture = await anonymous.get(refined["texture_urls"][0]["base_color"])
        assert texture.status_code == 200
        assert Image.open(io.BytesIO(texture.content)).size[0] >= 256

    task_dir = settings.assets_path / preview_id
    assert task_dir.is_dir()
    assert (await api.client.delete(f"{URL}/{preview_id}", headers=caller.headers)).status_code == 200
    assert not task_dir.exists()
    async with httpx.AsyncClient() as anonymous:
        assert (await anonymous.get(preview["model_urls"]["glb"])).status_code == 404
    # The refine outlives its preview.
    assert (await api.client.get(f"{URL}/{refine_id}", headers=caller.headers)).status_code == 200


async def test_stream_follows_a_task_to_the_end(api: Api, caller: Caller, worker, settings) -> None:
    settings.procedural_step_delay_s = 0.05
    task_id = await create_preview(api, caller)
    events = await asyncio.wait_for(read_sse(api.client, f"{URL}/{task_id}/stream", caller.headers), 60)
    assert all(name == "message" for name, _ in events)
    tasks = [json.loads(data) for _, data in events]
    assert tasks[-1]["status"] == "SUCCEEDED"
    assert tasks[-1]["model_urls"]["glb"].startswith(api.base_url)
    assert all(t["id"] == task_id for t in tasks)
    progress = [t["progress"] for t in tasks]
    assert progress == sorted(progress), "progress never goes backwards on a stream"
    assert len({p for p in progress if 0 < p < 100}) >= 3, "intermediate progress is streamed"
    assert sum(t["status"] == "SUCCEEDED" for t in tasks) == 1, "the stream closes after the terminal event"


async def test_stream_of_finished_task_sends_one_event(api: Api, caller: Caller, worker) -> None:
    task_id = await create_preview(api, caller)
    await wait_terminal(api, caller, task_id)
    events = await read_sse(api.client, f"{URL}/{task_id}/stream", caller.headers)
    assert len(events) == 1
    assert json.loads(events[0][1])["status"] == "SUCCEEDED"


async def test_stream_keepalive_repeats_the_task(api: Api, caller: Caller, settings) -> None:
    task_id = await create_preview(api, caller)  # no worker: stays PENDING
    seen: list[dict[str, Any]] = []
    async with api.client.stream("GET", f"{URL}/{task_id}/stream", headers=caller.headers) as response:
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                seen.append(json.loads(line[5:]))
                if len(seen) == 3:
                    break
    assert [t["status"] for t in seen] == ["PENDING"] * 3


async def test_stream_errors_are_events(api: Api, caller: Caller, settings, db) -> None:
    from tests.conftest import make_caller

    events = await read_sse(api.client, f"{URL}/{uuid.uuid4()}/stream", caller.headers)
    assert events == [("error", json.dumps({"status_code": 404, "message": "Task not found"}, separators=(",", ":")))]
    task_id = await create_preview(api, caller)
    other = await make_caller(settings, db, name="other")
    foreign = await read_sse(api.client, f"{URL}/{task_id}/stream", other.headers)
    assert foreign[0][0] == "error"
    unauthenticated = await api.client.get(f"{URL}/{task_id}/stream")
    assert unauthenticated.status_code == 401


async def test_stream_reports_deletion(api: Api, caller: Caller) -> None:
    task_id = await create_preview(api, caller)  # no worker: stays PENDING
    headers = {**caller.headers, "Accept": "text/event-stream"}
    seen: list[str] = []
    async with api.client.stream("GET", f"{URL}/{task_id}/stream", headers=headers) as response:
        lines = response.aiter_lines()
        async for line in lines:  # the first event: the stream has read the task and is subscribed
            if line.startswith("event:"):
                seen.append(line[6:].strip())
                break
        assert (await api.client.delete(f"{URL}/{task_id}", headers=caller.headers)).status_code == 200
        async for line in lines:
            if line.startswith(("event:", "data:")):
                seen.append(line)
    assert seen[0] == "message"
    assert seen[-2:] == ["event: error", 'data: {"status_code":404,"message":"Task not found"}']


async def test_many_streams_on_one_task_share_one_listener(api: Api, caller: Caller, worker, settings) -> None:
    settings.procedural_step_delay_s = 0.02
    settings.rate_limits = False  # 20 streams opened at once would be over the plan's 20 requests per second
    hub = api.app.state.mf.hub
    reads: list[object] = []
    load = hub.loader

    async def counting_load(task_id):  # type: ignore[no-untyped-def]
        reads.append(task_id)
        return await load(task_id)

    hub.loader = counting_load
    task_id = await create_preview(api, caller)
    readers = [read_sse(api.client, f"{URL}/{task_id}/stream", caller.headers) for _ in range(20)]
    results = await asyncio.wait_for(asyncio.gather(*readers), 60)
    for events in results:
        assert json.loads(events[-1][1])["status"] == "SUCCEEDED"
    changes = max(len(events) for events in results)
    # One read per change for all 20 streams (coalesced; measured 5 reads for 6 events), not one per stream,
    # which would be about 20 x the changes. A slow stream may skip snapshots, hence the margin.
    assert 0 < len(reads) < 10 * changes, (len(reads), changes)


async def test_refine_projects_a_texture_image_and_refuses_private_urls(api: Api, caller: Caller, worker) -> None:
    import base64

    from PIL import Image as PilImage

    preview_id = await create_preview(api, caller, target_formats=["glb"])
    assert (await wait_terminal(api, caller, preview_id))["status"] == "SUCCEEDED"
    buffer = io.BytesIO()
    PilImage.new("RGB", (32, 32), (20, 60, 230)).save(buffer, "PNG")
    blue = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    body = {"mode": "refine", "preview_task_id": preview_id, "texture_image_url": blue, "target_formats": ["glb"]}
    refined = await wait_terminal(
        api, caller, (await api.client.post(URL, json=body, headers=caller.headers)).json()["result"]
    )
    assert refined["status"] == "SUCCEEDED", refined["task_error"]
    async with httpx.AsyncClient() as anonymous:
        texture = Image.open(io.BytesIO((await anonymous.get(refined["texture_urls"][0]["base_color"])).content))
    import numpy as np

    r, g, b = np.asarray(texture.convert("RGB"), dtype=float).reshape(-1, 3).mean(axis=0)
    assert b > r + 40 and b > g + 40, "the projected image colours the texture"

    assert len(refined["texture_image_url"]) < 100, "the data URI is stored, not echoed back in full"
    # A literal private address is known to be refused at create: a 400, nothing charged.
    private = {**body, "texture_image_url": "http://127.0.0.1:5432/texture.png"}
    refused = await api.client.post(URL, json=private, headers=caller.headers)
    assert refused.status_code == 400 and "private or reserved" in refused.json()["message"]
    # A name is resolved by the worker's guarded fetch: this one never resolves, so the task fails and is refunded.
    unresolvable = {**body, "texture_image_url": "https://texture.invalid/t.png"}
    failed = await wait_terminal(
        api, caller, (await api.client.post(URL, json=unresolvable, headers=caller.headers)).json()["result"]
    )
    assert failed["status"] == "FAILED"
    assert failed["task_error"]["type"] == "invalid_input"
    assert failed["task_error"]["code"] == "invalid_input"  # with a code, Meshy always sends its doc_url
    assert failed["task_error"]["doc_url"] == "https://docs.meshy.ai/en/api/errors#invalid-input"
    assert "texture_image_url" in failed["task_error"]["message"]
    assert failed["consumed_credits"] == 0
    bad_scheme = await api.client.post(
        URL, json={**body, "texture_image_url": "file:///etc/passwd"}, headers=caller.headers
    )
    assert bad_scheme.status_code == 400
