"""Asset search on the S3 asset store (moto's server on loopback): a library imported into the bucket is found,
served, and reused by retrieve-before-generate through server-side copies; a generated task is indexed from it."""

from __future__ import annotations

import io
import uuid

import pytest
import trimesh

from app.core.config import Settings
from app.core.storage import store_from_settings
from app.search import service as search_service
from inference import library_import as lib
from inference.jobs.index_assets import index_missing
from tests.app.api.v2.test_text_to_3d_flow import create_preview
from tests.app.conftest import bucket_keys, use_s3
from tests.app.search.library import ITEMS, write_library
from tests.conftest import Api, Caller, add_succeeded_task
from tests.images import blank
from tests.inference.jobs import job_context

pytestmark = [pytest.mark.asyncio, pytest.mark.usefixtures("pgvector")]
MODELS = search_service.Models(None, None)


@pytest.fixture
def settings(settings: Settings, s3_endpoint: str, s3_bucket: str) -> Settings:
    return use_s3(settings, s3_endpoint, s3_bucket)


async def test_library_search_and_retrieval_on_the_bucket(api: Api, caller: Caller, settings, db, tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = store_from_settings(settings)
    captions = write_library(tmp_path / "lib")
    report = await lib.import_folder(db, store, MODELS, tmp_path / "lib", collection="shapes", captions=captions,
                                     formats=("glb",))  # fmt: skip
    assert report.imported == len(ITEMS) and not report.failed
    assert not list(settings.assets_path.glob("*-*-*-*-*")), "no asset folder on the local disk"

    task_id = await create_preview(api, caller, prompt="an orange traffic cone", retrieve_min_score=0.6)
    task = (await api.client.get(f"/openapi/v2/text-to-3d/{task_id}", headers=caller.headers)).json()
    assert task["status"] == "SUCCEEDED" and task["retrieved_from"]["collection"] == "shapes"
    glb = await api.client.get(task["model_urls"]["glb"], follow_redirects=True)
    assert len(trimesh.load(io.BytesIO(glb.content), file_type="glb", force="mesh").faces) > 0
    copied = bucket_keys(settings.s3_endpoint_url, settings.s3_bucket, f"mf/{task_id}/")
    assert any(key.endswith("/model.glb") for key in copied), "the matched asset's files were copied under the task"
    thumbnail = await api.client.get(task["thumbnail_url"], follow_redirects=True)
    assert thumbnail.content[:8] == b"\x89PNG\r\n\x1a\n"


async def test_a_generated_task_is_indexed_from_the_bucket(settings, db, caller: Caller, tmp_path) -> None:  # type: ignore[no-untyped-def]
    outputs = {"model": {"glb": "model.glb"}, "thumbnail": "preview.png"}
    task_id = await add_succeeded_task(db, caller, "text-to-3d-preview", outputs, runner="procedural")
    folder = tmp_path / "files"
    folder.mkdir()
    make, _, _ = ITEMS["ball"]
    (folder / "model.glb").write_bytes(make().export(file_type="glb"))
    (folder / "preview.png").write_bytes(blank(64))
    store = store_from_settings(settings)
    store.publish(uuid.UUID(task_id), folder, ["model.glb", "preview.png"])
    assert await index_missing(job_context(settings, db, store)) == 1
    assert (settings.assets_path / ".cache" / task_id).is_dir(), "its thumbnail was read through the cache"
