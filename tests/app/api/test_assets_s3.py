"""Assets on the S3 store end to end, against a real S3 API (moto's server on loopback): a worker publishes to the
bucket, the signed URL redirects to it (or proxies it), parent outputs and inline inputs are read back from it,
test-mode samples are served from it, DELETE and the sweep remove objects, and a zombie attempt that publishes
after the live one won is never what is served."""

from __future__ import annotations

import asyncio
import io
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import trimesh

from app.api.testmode import PREVIEW_ID
from app.core.assets import UrlSigner
from app.core.clock import utcnow
from app.core.config import S3UrlMode, Settings
from app.core.storage import store_from_settings
from inference.jobs.generate_model import _finish
from inference.jobs.sweep_assets import sweep_assets
from tests.app.conftest import bucket_keys, use_s3
from tests.conftest import Api, Caller, add_succeeded_task
from tests.images import data_uri, object_photo
from tests.inference.jobs import job_context
from tests.inference.test_publish_fence import OUTPUTS, claim, create, work_dir

pytestmark = pytest.mark.asyncio
TEST_KEY = {"Authorization": "Bearer msy_dummy_api_key_for_test_mode_12345678"}


@pytest.fixture
def settings(settings: Settings, s3_endpoint: str, s3_bucket: str) -> Settings:
    """Every fixture of these tests (api, worker, db) runs on the S3 store, in a bucket of its own."""
    return use_s3(settings, s3_endpoint, s3_bucket)


def keys(settings: Settings, prefix: str) -> list[str]:
    return bucket_keys(settings.s3_endpoint_url or "", settings.s3_bucket or "", f"mf/{prefix}")


async def wait_terminal(api: Api, caller: Caller, path: str, task_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = (await api.client.get(f"{path}/{task_id}", headers=caller.headers)).json()
        if task["status"] in ("SUCCEEDED", "FAILED", "CANCELED"):
            return task
        await asyncio.sleep(0.1)
    raise AssertionError(f"task {task_id} did not finish: {task}")


async def generate(api: Api, caller: Caller, path: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = await api.client.post(path, json=body, headers=caller.headers)
    assert answer.status_code == 202, answer.text
    task = await wait_terminal(api, caller, path, answer.json()["result"])
    assert task["status"] == "SUCCEEDED", task
    return task


def mesh_of(content: bytes) -> trimesh.Trimesh:
    return trimesh.load(io.BytesIO(content), file_type="glb", force="mesh")


def publish(settings: Settings, tmp_path: Path, task_id: uuid.UUID, files: dict[str, bytes]) -> None:
    folder = tmp_path / f"w-{uuid.uuid4().hex[:6]}"
    folder.mkdir()
    for name, content in files.items():
        (folder / name).write_bytes(content)
    store_from_settings(settings).publish(task_id, folder, sorted(files))


def signed(settings: Settings, task_id: uuid.UUID, name: str, expires_in: int = 60) -> str:
    return UrlSigner(settings.secret()).url("", task_id, name, int(time.time()) + expires_in)


async def test_a_generated_model_is_served_from_the_bucket(api: Api, caller: Caller, settings, worker) -> None:  # type: ignore[no-untyped-def]
    task = await generate(api, caller, "/openapi/v2/text-to-3d", {"mode": "preview", "prompt": "a chair", "seed": 2})
    url = task["model_urls"]["glb"]
    hop = await api.client.get(url)  # httpx does not follow redirects unless asked
    assert hop.status_code == 302 and hop.headers["cache-control"] == "no-store"
    assert hop.headers["location"].startswith(f"{settings.s3_endpoint_url}/{settings.s3_bucket}/mf/{task['id']}/")
    followed = await api.client.get(url, follow_redirects=True)
    assert followed.status_code == 200 and followed.headers["content-type"] == "model/gltf-binary"
    assert len(mesh_of(followed.content).faces) > 100
    ranged = await api.client.get(url, headers={"Range": "bytes=0-3"}, follow_redirects=True)
    assert ranged.status_code == 206 and ranged.content == b"glTF"  # the bucket answers ranges itself
    thumbnail = await api.client.get(task["thumbnail_url"], follow_redirects=True)
    assert thumbnail.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (settings.assets_path / task["id"]).exists(), "nothing is published on the local disk"
    assert f"mf/{task['id']}/manifest.json" in keys(settings, task["id"])


async def test_workers_read_parent_outputs_and_inline_inputs_from_the_bucket(  # type: ignore[no-untyped-def]
    api: Api, caller: Caller, settings, worker
) -> None:
    preview = await generate(api, caller, "/openapi/v2/text-to-3d", {"mode": "preview", "prompt": "a vase"})
    remeshed = await generate(api, caller, "/openapi/v1/remesh",
                              {"input_task_id": preview["id"], "target_polycount": 500})  # fmt: skip
    original = mesh_of((await api.client.get(preview["model_urls"]["glb"], follow_redirects=True)).content)
    fewer = mesh_of((await api.client.get(remeshed["model_urls"]["glb"], follow_redirects=True)).content)
    assert 0 < len(fewer.faces) < len(original.faces)

    body = {"image_url": data_uri(object_photo()), "should_texture": False}
    from_image = await generate(api, caller, "/openapi/v1/image-to-3d", body)
    assert keys(settings, f".inputs/{from_image['id']}/"), "the inline image was stored in the bucket at create"
    assert len(mesh_of((await api.client.get(from_image["model_urls"]["glb"], follow_redirects=True)).content).faces)


async def test_proxy_mode_streams_with_ranges(api: Api, settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings.s3_url_mode = S3UrlMode.proxy
    task_id, content = uuid.uuid4(), b"glTF" + bytes(range(256)) * 40
    publish(settings, tmp_path, task_id, {"model.glb": content})
    url = signed(settings, task_id, "model.glb")
    whole = await api.client.get(url)
    assert whole.status_code == 200 and whole.content == content
    assert whole.headers["content-type"] == "model/gltf-binary" and whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["content-length"] == str(len(content))
    head = await api.client.get(url, headers={"Range": "bytes=0-3"})
    assert (head.status_code, head.content) == (206, b"glTF")
    assert head.headers["content-range"] == f"bytes 0-3/{len(content)}"
    tail = await api.client.get(url, headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == content[-10:]
    past = await api.client.get(url, headers={"Range": f"bytes={len(content)}-"})
    assert past.status_code == 416 and past.headers["content-range"] == f"bytes */{len(content)}"
    several = await api.client.get(url, headers={"Range": "bytes=0-1,4-5"})  # not supported: the whole file
    assert several.status_code == 200 and several.content == content


@pytest.mark.parametrize("mode", [S3UrlMode.redirect, S3UrlMode.proxy])
async def test_bad_urls_are_refused_as_on_disk(api: Api, settings, tmp_path, mode: S3UrlMode) -> None:  # type: ignore[no-untyped-def]
    settings.s3_url_mode = mode
    task_id = uuid.uuid4()
    publish(settings, tmp_path, task_id, {"model.glb": b"glTF-x"})
    good = signed(settings, task_id, "model.glb")
    expired = await api.client.get(signed(settings, task_id, "model.glb", -1))
    assert (expired.status_code, expired.json()) == (403, {"message": "Asset URL expired"})
    forged = await api.client.get(good[:-1] + ("0" if good[-1] != "0" else "1"))
    assert (forged.status_code, forged.json()) == (403, {"message": "Invalid signature"})
    other = await api.client.get(UrlSigner(b"someone else").url("", task_id, "model.glb", int(time.time()) + 60))
    assert other.status_code == 403
    for name in ("model.obj", "manifest.json", f"..%2F{task_id}%2Fmodel.glb"):
        missing = await api.client.get(signed(settings, task_id, name))
        assert missing.status_code in (403, 404) and set(missing.json()) == {"message"}, name
    assert (await api.client.get(good, follow_redirects=True)).content == b"glTF-x"


async def test_test_mode_samples_are_served_from_the_bucket(api: Api, settings) -> None:  # type: ignore[no-untyped-def]
    sample = (await api.client.get(f"/openapi/v2/text-to-3d/{PREVIEW_ID}", headers=TEST_KEY)).json()
    glb = await api.client.get(sample["model_urls"]["glb"], follow_redirects=True)
    assert glb.status_code == 200 and glb.content[:4] == b"glTF"
    assert f"mf/{PREVIEW_ID}/manifest.json" in keys(settings, f"{PREVIEW_ID}/")
    assert not (settings.assets_path / str(PREVIEW_ID)).exists()


async def test_delete_removes_the_objects(api: Api, caller: Caller, settings, db, tmp_path) -> None:  # type: ignore[no-untyped-def]
    task_id = await add_succeeded_task(db, caller, "text-to-3d-preview", OUTPUTS, runner="procedural")
    publish(settings, tmp_path, uuid.UUID(task_id), {"model.glb": b"glTF-doomed"})
    task = (await api.client.get(f"/openapi/v2/text-to-3d/{task_id}", headers=caller.headers)).json()
    assert (await api.client.get(task["model_urls"]["glb"], follow_redirects=True)).content == b"glTF-doomed"
    answer = await api.client.delete(f"/openapi/v2/text-to-3d/{task_id}", headers=caller.headers)
    assert answer.status_code == 200
    assert keys(settings, f"{task_id}/") == []
    assert (await api.client.get(task["model_urls"]["glb"])).status_code == 404


async def test_the_sweep_removes_expired_and_unreferenced_objects(settings, db, caller: Caller, tmp_path) -> None:  # type: ignore[no-untyped-def]
    expired = await add_succeeded_task(db, caller, "text-to-3d-preview", OUTPUTS, expires_in_s=-10)
    fresh = await add_succeeded_task(db, caller, "text-to-3d-preview", OUTPUTS, expires_in_s=86_400)
    store = store_from_settings(settings)
    for task_id in (expired, fresh):
        publish(settings, tmp_path, uuid.UUID(task_id), {"model.glb": b"glTF"})
    store.save_input(uuid.UUID(fresh), "image_url_0.png", b"png")  # a finished task's input: no longer needed
    cut = uuid.uuid4()  # an upload that a crash cut off before its commit
    store.stage(cut, work_dir(tmp_path, "cut", b"partial"), ["model.glb"])
    # Two hours on: the upload is older than any attempt can run (job timeout + an hour).
    swept = await sweep_assets(job_context(settings, db, store), now=utcnow() + timedelta(hours=2))
    assert swept == {"tasks": 1, "work": 0, "inputs": 1, "unreferenced": 1}
    assert keys(settings, f"{expired}/") == [] and keys(settings, f"{cut}/") == []
    assert keys(settings, f".inputs/{fresh}/") == []
    assert store.files_of(uuid.UUID(fresh)) == ["model.glb"]


async def test_a_zombie_that_publishes_after_the_winner_is_never_served(  # type: ignore[no-untyped-def]
    api: Api, caller: Caller, settings, db, tmp_path
) -> None:
    task_id = await create(api, caller)
    store = store_from_settings(settings)
    job = job_context(settings, db, store)
    zombie = await claim(db, task_id)
    owner = await claim(db, task_id)  # the reaper's view: the first worker went silent, another took over
    assert await _finish(job, owner, OUTPUTS, work_dir(tmp_path, "owner", b"glTF-winner"), ["model.glb"])
    assert not await _finish(job, zombie, OUTPUTS, work_dir(tmp_path, "zombie", b"glTF-zombie"), ["model.glb"])
    task = (await api.client.get(f"/openapi/v2/text-to-3d/{task_id}", headers=caller.headers)).json()
    assert task["status"] == "SUCCEEDED"
    for mode in (S3UrlMode.redirect, S3UrlMode.proxy):
        settings.s3_url_mode = mode
        assert (await api.client.get(task["model_urls"]["glb"], follow_redirects=True)).content == b"glTF-winner"
    generations = {key.split("/")[2] for key in keys(settings, f"{task_id}/") if not key.endswith("manifest.json")}
    assert len(generations) == 1, "the zombie's upload was discarded at once"


async def test_the_gateways_file_routes_read_through_the_cache(  # type: ignore[no-untyped-def]
    api: Api, caller: Caller, settings, db, tmp_path
) -> None:
    outputs = {**OUTPUTS, "thumbnail": "preview.png"}
    model_id = await add_succeeded_task(db, caller, "text-to-3d-preview", outputs, runner="procedural")
    glb, png = b"glTF" + b"\0" * 2044, b"\x89PNG\r\n\x1a\n" + b"\0" * 100
    publish(settings, tmp_path, uuid.UUID(model_id), {"model.glb": glb, "preview.png": png})
    job = (await api.client.get(f"/api/v1/system/jobs/{model_id}", headers=caller.headers)).json()
    assert job["result"]["mesh_file_info"]["file_size_bytes"] == len(glb)
    assert job["result"]["thumbnail_file_info"]["file_size_bytes"] == len(png)
    history = (await api.client.get("/api/v1/system/jobs/history", headers=caller.headers)).json()
    assert [j["result"]["mesh_file_info"]["file_size_bytes"] for j in history["jobs"]] == [len(glb)]
    info = (await api.client.get(f"/api/v1/system/jobs/{model_id}/info", headers=caller.headers)).json()
    assert info["file_info"]["file_exists"] and info["file_info"]["file_size_bytes"] == len(glb)
    download = await api.client.get(f"/api/v1/system/jobs/{model_id}/download", headers=caller.headers)
    assert download.status_code == 200 and download.content == glb

    video = b"\0\0\0\x18ftypmp42" + b"\0" * 500
    talk_id = await add_succeeded_task(db, caller, "talking-head", {"result": {"video_url": "talking_head.mp4"}})
    publish(settings, tmp_path, uuid.UUID(talk_id), {"talking_head.mp4": video})
    answer = await api.client.get(f"/api/v1/synthesis/{talk_id}/download", headers=caller.headers)
    assert answer.status_code == 200 and answer.content == video
    assert not (settings.assets_path / model_id).exists(), "read through the cache, never published locally"
    assert (settings.assets_path / ".cache" / model_id).is_dir()
