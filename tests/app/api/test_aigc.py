"""3DAIGC-API's routes over MeshFoundry's tasks: the gateway's documented curl flows (upload, submit, poll, info,
download) end to end with a real worker, its field names and shapes, its errors, and tenant isolation."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import pytest
import trimesh

from inference.motion.reference_character import build_character
from tests.conftest import Api, Caller, make_caller, unthrottle
from tests.images import glb_box, object_photo
from tests.inference.test_segmentation import build, table

pytestmark = pytest.mark.asyncio
SYS = "/api/v1/system"


async def upload(api: Api, caller: Caller, kind: str, name: str, content: bytes) -> dict[str, Any]:
    response = await api.client.post(f"/api/v1/file-upload/{kind}", files={"file": (name, content,
                                     "application/octet-stream")}, headers=caller.headers)  # fmt: skip
    assert response.status_code == 200, response.text
    return response.json()


async def submit(api: Api, caller: Caller, path: str, body: dict[str, Any]) -> str:
    response = await api.client.post(f"/api/v1{path}", json=body, headers=caller.headers)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["status"] == "queued" and answer["message"].endswith("queued successfully")
    return answer["job_id"]


async def finished(api: Api, caller: Caller, job_id: str, timeout: float = 120) -> dict[str, Any]:
    for _ in range(int(timeout / 0.25)):
        job = (await api.client.get(f"{SYS}/jobs/{job_id}", headers=caller.headers)).json()
        if job["status"] in ("completed", "failed", "cancelled"):
            return job
        assert job["status"] in ("queued", "processing")
        await asyncio.sleep(0.25)
    raise AssertionError(f"job {job_id} did not finish")


async def test_uploads_submit_and_job_shapes_without_a_worker(api: Api, caller: Caller, settings, db) -> None:  # type: ignore[no-untyped-def]
    assert (await api.client.get(f"{SYS}/features")).status_code == 401  # unlike the seed: a key is needed
    features = (await api.client.get(f"{SYS}/features", headers=caller.headers)).json()
    names = {f["name"]: f for f in features["features"]}
    assert features["total_features"] == len(names) == 9
    assert names["mesh_segmentation"]["models"] == ["mesh_ops_mesh_segmentation"]
    models = (await api.client.get(f"{SYS}/models", params={"feature": "auto_rig"}, headers=caller.headers)).json()
    assert models == {"feature": "auto_rig", "models": ["auto_rig_auto_rig"]}
    missing = await api.client.get(f"{SYS}/models", params={"feature": "nope"}, headers=caller.headers)
    assert missing.status_code == 404 and missing.json()["error"] == "NOT_FOUND"

    bad = await api.client.post("/api/v1/file-upload/mesh", files={"file": ("x.ply", b"ply", "text/plain")},
                                headers=caller.headers)  # fmt: skip
    assert bad.status_code == 400 and "Unsupported file type" in bad.json()["detail"]
    mesh = await upload(api, caller, "mesh", "box.glb", glb_box())
    assert set(mesh) == {"file_id", "filename", "file_type", "file_size_mb", "upload_time", "expires_at"}
    assert mesh["filename"] == "box.glb" and mesh["file_type"] == "mesh"
    image = await upload(api, caller, "image", "photo.webp", _webp())
    meta = (await api.client.get(f"/api/v1/file-upload/metadata/{image['file_id']}", headers=caller.headers)).json()
    assert meta["is_available"] and meta["file_type"] == "image"

    body = {"mesh_file_id": mesh["file_id"], "num_parts": 4, "output_format": "glb"}
    wrong = await api.client.post("/api/v1/mesh-segmentation/segment-mesh", headers=caller.headers,
                                  json={**body, "model_preference": "partfield_mesh_segmentation"})  # fmt: skip
    assert wrong.status_code == 400 and "Available models: ['mesh_ops_mesh_segmentation']" in wrong.json()["detail"]
    path = await api.client.post("/api/v1/mesh-segmentation/segment-mesh", headers=caller.headers,
                                 json={"mesh_path": "/etc/passwd"})  # fmt: skip
    assert path.status_code == 400 and "mesh_file_id" in path.json()["detail"]
    job_id = await submit(api, caller, "/mesh-segmentation/segment-mesh", body)
    job = (await api.client.get(f"{SYS}/jobs/{job_id}", headers=caller.headers)).json()
    assert job["status"] == "queued" and job["feature"] == "mesh_segmentation" and job["progress"] == 0
    assert job["inputs"]["num_parts"] == 4 and job["result"] is None and job["error"] is None
    early = await api.client.get(f"{SYS}/jobs/{job_id}/download", headers=caller.headers)
    assert early.status_code == 400 and early.json()["detail"] == "Job is not completed yet. Current status: queued"
    # The same task through the Meshy-style route, charged as a segmentation.
    task = (await api.client.get(f"/openapi/v1/mesh-segmentation/{job_id}", headers=caller.headers)).json()
    assert task["status"] == "PENDING" and task["consumed_credits"] == 5
    history = (await api.client.get(f"{SYS}/jobs/history", headers=caller.headers)).json()
    assert [j["job_id"] for j in history["jobs"]] == [job_id]

    other = await make_caller(settings, db, name="other")
    for url in (
        f"{SYS}/jobs/{job_id}",
        f"{SYS}/jobs/{job_id}/download",
        f"/api/v1/file-upload/metadata/{mesh['file_id']}",
    ):
        response = await api.client.get(url, headers=other.headers)
        assert response.status_code == 404 and response.json()["error"] == "NOT_FOUND", url
    stolen = await api.client.post("/api/v1/mesh-segmentation/segment-mesh", headers=other.headers, json=body)
    assert stolen.status_code == 404 and "not found or expired" in stolen.json()["detail"]
    status = (await api.client.get(f"{SYS}/status/", headers=caller.headers)).json()
    assert status["queue"]["pending_jobs"] == 1 and status["system"]["memory"]["total"] > 0


async def test_the_gateways_flows_end_to_end(api: Api, caller: Caller, db, worker, tmp_path) -> None:  # type: ignore[no-untyped-def]
    await unthrottle(db, caller)
    body = {"text_prompt": "a red mushroom", "texture_resolution": 1024, "output_format": "glb"}
    textured = await submit(api, caller, "/mesh-generation/text-to-textured-mesh", body)
    photo = await upload(api, caller, "image", "chair.png", object_photo(256))
    raw = await submit(api, caller, "/mesh-generation/image-to-raw-mesh", {"image_file_id": photo["file_id"]})
    character, _ = build_character(pose="A", style="textured")
    mesh = await upload(api, caller, "mesh", "character.glb", character.export(file_type="glb"))
    rig = await submit(api, caller, "/auto-rig/generate-rig", {"mesh_file_id": mesh["file_id"], "rig_mode": "skeleton",
                                                               "output_format": "fbx"})  # fmt: skip
    for job_id, kind in ((textured, "glb"), (raw, "glb"), (rig, "fbx")):
        job = await finished(api, caller, job_id)
        assert job["status"] == "completed" and job["progress"] == 1.0, job
        assert job["result"]["mesh_url"].endswith(f"/api/v1/system/jobs/{job_id}/download")
        info = (await api.client.get(f"{SYS}/jobs/{job_id}/info", headers=caller.headers)).json()
        assert info["file_info"]["file_exists"] and info["file_info"]["file_extension"] == f".{kind}"
        download = await api.client.get(info["mesh_download_urls"]["direct_download"], headers=caller.headers)
        assert download.status_code == 200 and download.headers["x-job-id"] == job_id
        assert f"result_{job_id}_" in download.headers["content-disposition"]
        if kind == "glb":
            loaded = trimesh.load(io.BytesIO(download.content), file_type="glb", force="mesh")
            assert len(loaded.faces) > 100
        else:
            assert download.content[:18] == b"Kaydara FBX Binary"
    # The documented segmentation flow, then its parts made whole (the segmented GLB uploaded back).
    vertices, faces, _ = build(table(), 0.05)
    table_glb = trimesh.Trimesh(vertices, faces, process=False).export(file_type="glb")
    upload_table = await upload(api, caller, "mesh", "table.glb", table_glb)
    segment = await submit(api, caller, "/mesh-segmentation/segment-mesh", {"mesh_file_id": upload_table["file_id"],
                                                                             "num_parts": 5})  # fmt: skip
    job = await finished(api, caller, segment)
    assert job["status"] == "completed" and job["result"]["num_parts"] == 5
    segmented = await api.client.get(f"{SYS}/jobs/{segment}/download", headers=caller.headers)
    parts_upload = await upload(api, caller, "mesh", "segmented.glb", segmented.content)
    body = {"mesh_file_id": parts_upload["file_id"]}
    completion = await submit(api, caller, "/mesh-generation/part-completion", body)
    job = await finished(api, caller, completion)
    assert job["status"] == "completed", job
    completed = await api.client.get(job["result"]["mesh_url"], headers=caller.headers)
    scene = trimesh.load(io.BytesIO(completed.content), file_type="glb", force="scene")
    assert len(scene.geometry) == 5 and all(g.is_watertight for g in scene.geometry.values())
    textured_task = (await api.client.get(f"/openapi/v2/text-to-3d/{textured}", headers=caller.headers)).json()
    assert textured_task["texture_urls"], "text-to-textured-mesh textures its geometry in the same task"
    thumb = await api.client.get(f"{SYS}/jobs/{textured}/thumbnail", headers=caller.headers)
    assert thumb.status_code == 200 and thumb.content.startswith(b"\x89PNG")


def _webp() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.open(io.BytesIO(object_photo(64))).save(out, format="WEBP")
    return out.getvalue()
