"""Asset search end to end: a generated library imported with known captions, real text and image searches over
it through the API, retrieve-before-generate, generated models indexed by the worker, tenant isolation, bad input."""

from __future__ import annotations

import asyncio
import base64
import io
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import trimesh
from PIL import Image
from sqlalchemy import func, select

from app.core.assets import AssetStore
from app.search import service as search_service
from app.search.models import Asset
from inference import library_import as lib
from tests.app.api.v2.test_text_to_3d_flow import create_preview, wait_terminal
from tests.app.search.library import ITEMS, write_library
from tests.conftest import Api, Caller, make_caller

pytestmark = [pytest.mark.asyncio, pytest.mark.usefixtures("pgvector")]
SEARCH = "/openapi/v1/assets/search"
MODELS = search_service.Models(None, None)


@pytest_asyncio.fixture
async def library(settings, db, tmp_path: Path) -> lib.ImportReport:  # type: ignore[no-untyped-def]
    """The five shapes, imported as the shared collection `shapes` (GLB only, to keep it quick)."""
    captions = write_library(tmp_path / "lib")
    store = AssetStore(settings.assets_path)
    return await lib.import_folder(db, store, MODELS, tmp_path / "lib", collection="shapes", captions=captions,
                                   formats=("glb",))  # fmt: skip


async def search(api: Api, caller: Caller, **body: Any) -> list[dict[str, Any]]:
    response = await api.client.post(SEARCH, json=body, headers=caller.headers)
    assert response.status_code == 200, response.text
    return response.json()["results"]


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


async def thumbnail_of(api: Api, hit: dict[str, Any]) -> bytes:
    response = await api.client.get(hit["thumbnail_url"])
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    return response.content


async def test_import_then_text_and_image_search_rank_the_right_asset_first(
    api: Api,
    caller: Caller,
    library: lib.ImportReport,
    settings,
    db,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    assert (library.imported, library.skipped, library.failed) == (5, 0, [])
    expected = {"a box to ship things in": "crate.glb", "traffic cone": "cone.glb", "a doughnut": "shapes/ring.glb",
                "a stone column": "pillar.glb", "ball": "ball.glb"}  # fmt: skip
    by_key: dict[str, dict[str, Any]] = {}
    for query, key in expected.items():
        hits = await search(api, caller, query=query, top_k=5)
        async with db() as session:
            keys = {a.id: a.source_key for a in (await session.execute(select(Asset))).scalars()}
        assert keys[uuid.UUID(hits[0]["asset_id"])] == key, (query, hits)
        assert hits[0]["score"] > hits[1]["score"]
        assert hits[0]["collection"] == "shapes" and hits[0]["task_id"] is None
        by_key[key] = hits[0]
    hit = by_key["cone.glb"]
    assert hit["caption"] == ITEMS["cone"][2] and set(hit["model_urls"]) == {"glb"}
    assert set(hit["scores"]) == {"text:all-minilm-l6-v2"}
    # The files download through signed URLs and read back with an independent reader.
    glb = await api.client.get(hit["model_urls"]["glb"])
    assert glb.status_code == 200
    mesh = trimesh.load(io.BytesIO(glb.content), file_type="glb", force="mesh")
    assert len(mesh.faces) == len(ITEMS["cone"][0]().faces)
    # Image search: each asset's own thumbnail finds it first, through the silhouette-and-colour reference.
    for key in ("ball.glb", "cone.glb", "shapes/ring.glb"):
        png = await thumbnail_of(api, by_key[key])
        hits = await search(api, caller, image_url=data_uri(png), top_k=3)
        assert hits[0]["asset_id"] == by_key[key]["asset_id"] and hits[0]["score"] > 0.99
        assert set(hits[0]["scores"]) == {"image:silhouette-colour-v1"}
    # Both at once average the two; min_score and collections filter.
    png = await thumbnail_of(api, by_key["ball.glb"])
    both = await search(api, caller, query="a blue rubber ball", image_url=data_uri(png), top_k=2)
    assert both[0]["asset_id"] == by_key["ball.glb"]["asset_id"] and len(both[0]["scores"]) == 2
    assert await search(api, caller, query="traffic cone", min_score=0.99) == []
    assert await search(api, caller, query="traffic cone", collections=["generated"]) == []
    assert len(await search(api, caller, query="traffic cone", collections=["shapes"], top_k=50)) == 5
    # Re-running the import skips what is there (resumable); a captions CSV works too.
    again = await lib.import_folder(db, AssetStore(settings.assets_path), MODELS, tmp_path / "lib",
                                    collection="shapes", formats=("glb",))  # fmt: skip
    assert (again.imported, again.skipped) == (0, 5)
    csv_captions = write_library(tmp_path / "more", ("cone",), captions_as="csv")
    assert lib.read_captions(csv_captions) == {"cone": ITEMS["cone"][2]}
    # Cap3D-style Chinese captions (a multilingual text model searches them; the default MiniLM is English-only).
    chinese = tmp_path / "captions_cn.csv"
    chinese.write_text("uid,caption\ncone,橙色的交通锥\n", encoding="utf-8-sig")
    assert lib.read_captions(chinese) == {"cone": "橙色的交通锥"}


async def test_collections_and_generated_models_are_private_to_their_audience(
    api: Api,
    caller: Caller,
    settings,
    db,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    other = await make_caller(settings, db, name="other")
    store = AssetStore(settings.assets_path)
    captions = write_library(tmp_path / "lib", ("crate",))
    await lib.import_folder(db, store, MODELS, tmp_path / "lib", collection="private-crates",
                            account_id=caller.account_id, captions=captions, formats=("glb",))  # fmt: skip
    # A generated model of `other`'s, indexed as the worker does it.
    task_id = await _generated_cone(settings, db, other)
    mine = await search(api, caller, query="an orange traffic cone or a crate", top_k=10)
    theirs = await search(api, other, query="an orange traffic cone or a crate", top_k=10)
    assert [h["collection"] for h in mine] == ["private-crates"]
    assert [(h["collection"], h["task_id"]) for h in theirs] == [("generated", task_id)]
    assert theirs[0]["caption"] == "an orange traffic cone"
    # The other account's generated asset's files are its task's, signed with the task's expiry.
    assert f"/assets/{task_id}/" in theirs[0]["model_urls"]["glb"]
    # Deleting the task removes it from the index.
    response = await api.client.delete(f"/openapi/v2/text-to-3d/{task_id}", headers=other.headers)
    assert response.status_code == 200, response.text
    assert await search(api, other, query="an orange traffic cone") == []
    async with db() as session:
        assert (await session.execute(select(func.count()).select_from(Asset).where(Asset.task_id.is_not(None)))
                ).scalar() == 0  # fmt: skip


async def _generated_cone(settings, db, owner: Caller) -> str:  # type: ignore[no-untyped-def]
    """A SUCCEEDED text-to-3d preview of `owner`'s with real files, indexed by the worker's code."""
    from datetime import timedelta

    from app.core.clock import utcnow
    from app.tasks.models import Task
    from tests.app.search.library import coloured

    task_id = uuid.uuid4()
    folder = AssetStore(settings.assets_path).task_dir(task_id)
    folder.mkdir(parents=True)
    make, rgb, _ = ITEMS["cone"]
    (folder / "model.glb").write_bytes(coloured(make(), rgb).export(file_type="glb"))
    Image.new("RGBA", (64, 64), (250, 120, 0, 255)).save(folder / "preview.png")
    async with db() as session, session.begin():
        session.add(Task(id=task_id, account_id=owner.account_id, type="text-to-3d-preview", status="SUCCEEDED",
                         ai_model="latest", runner="procedural", pool="default",
                         params={"prompt": "an orange traffic cone"},
                         outputs={"model": {"glb": "model.glb"}, "thumbnail": "preview.png"},
                         expires_at=utcnow() + timedelta(days=1)))  # fmt: skip
    from inference.jobs.index_assets import index_missing
    from tests.inference.jobs import job_context

    assert await index_missing(job_context(settings, db)) == 1
    assert await index_missing(job_context(settings, db)) == 0  # idempotent
    return str(task_id)


async def test_retrieve_before_generate_answers_from_the_library(
    api: Api,
    caller: Caller,
    library: lib.ImportReport,
    settings,
    db,  # type: ignore[no-untyped-def]
) -> None:
    balance = (await api.client.get("/openapi/v1/balance", headers=caller.headers)).json()["balance"]
    task_id = await create_preview(api, caller, prompt="an orange traffic cone", retrieve_min_score=0.6)
    task = (await api.client.get(f"/openapi/v2/text-to-3d/{task_id}", headers=caller.headers)).json()
    assert task["status"] == "SUCCEEDED" and task["progress"] == 100
    assert task["retrieved_from"]["collection"] == "shapes" and task["retrieved_from"]["score"] >= 0.6
    assert task["retrieved_from"]["source_task_id"] is None
    assert task["consumed_credits"] == 2 and task["prompt"] == "an orange traffic cone"
    glb = await api.client.get(task["model_urls"]["glb"])
    assert glb.status_code == 200 and f"/assets/{task_id}/" in task["model_urls"]["glb"]
    assert len(trimesh.load(io.BytesIO(glb.content), file_type="glb", force="mesh").faces) > 0
    assert task["thumbnail_url"]
    after = (await api.client.get("/openapi/v1/balance", headers=caller.headers)).json()["balance"]
    assert balance - after == 2
    # Below the bar the model is generated as usual (PENDING, full price).
    pending = await create_preview(api, caller, prompt="an orange cone on a road", retrieve_min_score=0.99)
    task = (await api.client.get(f"/openapi/v2/text-to-3d/{pending}", headers=caller.headers)).json()
    assert task["status"] == "PENDING" and "retrieved_from" not in task and task["consumed_credits"] == 20
    # Image to 3D by picture: the ball's own thumbnail retrieves the ball.
    ball = (await search(api, caller, query="a blue rubber ball"))[0]
    png = await thumbnail_of(api, ball)
    response = await api.client.post("/openapi/v1/image-to-3d", headers=caller.headers,
                                     json={"image_url": data_uri(png), "retrieve_min_score": 0.95})  # fmt: skip
    assert response.status_code == 202, response.text
    task = (await api.client.get(f"/openapi/v1/image-to-3d/{response.json()['result']}", headers=caller.headers)).json()
    assert task["status"] == "SUCCEEDED" and task["retrieved_from"]["asset_id"] == ball["asset_id"]
    assert task["consumed_credits"] == 2


async def test_worker_indexes_what_it_generates(api: Api, caller: Caller, worker) -> None:  # type: ignore[no-untyped-def]
    task_id = await create_preview(api, caller, prompt="a small wooden rowing boat")
    assert (await wait_terminal(api, caller, task_id))["status"] == "SUCCEEDED"
    # The worker indexes right after the task commits SUCCEEDED: searchable a moment later.
    deadline = time.monotonic() + 30
    while not (hits := await search(api, caller, query="a boat")) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    assert [h["task_id"] for h in hits] == [task_id]
    assert set(hits[0]["scores"]) == {"text:all-minilm-l6-v2"}  # the text query does not ask the image space
    png = await thumbnail_of(api, hits[0])
    by_image = await search(api, caller, image_url=data_uri(png))
    assert by_image[0]["task_id"] == task_id and by_image[0]["score"] > 0.99


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "query or image_url is required"),
        ({"query": "   "}, "query or image_url is required"),
        ({"query": "x", "top_k": 0}, "top_k"),
        ({"query": "x", "top_k": 51}, "top_k"),
        ({"query": "x", "min_score": 2}, "min_score"),
        ({"query": "x", "collections": [""]}, "collections"),
        ({"image_url": "http://127.0.0.1/a.png"}, "Invalid image_url"),
        ({"image_url": "data:image/png;base64," + base64.b64encode(b"not a png").decode()}, "Invalid image_url"),
        ({"image_url": "ftp://example.com/a.png"}, "Invalid image_url"),
    ],
)
async def test_bad_searches_are_400s(api: Api, caller: Caller, body: dict[str, Any], message: str) -> None:
    response = await api.client.post(SEARCH, json=body, headers=caller.headers)
    assert response.status_code == 400, response.text
    assert message in response.json()["message"]


async def test_auth_and_test_mode(api: Api) -> None:
    assert (await api.client.post(SEARCH, json={"query": "x"})).status_code == 401
    response = await api.client.post(
        SEARCH, json={"query": "x"}, headers={"Authorization": "Bearer msy_dummy_api_key_for_test_mode_12345678"}
    )
    assert response.status_code == 200
    (hit,) = response.json()["results"]
    assert hit["collection"] == "generated" and (await api.client.get(hit["model_urls"]["glb"])).status_code == 200


async def test_a_siglip_model_adds_an_image_space_that_text_can_search(settings, db, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """SigLIP's real loading code on tiny random weights: thumbnails go into its space, and a text query is asked
    there too (cross-modal). Random weights rank nothing meaningfully; an asset's own picture still finds it."""
    from tests.app.search.tiny_siglip import TINY_DIM, make_tiny_siglip

    siglip = make_tiny_siglip(tmp_path / "siglip")
    models = search_service.Models(None, str(siglip))
    store = AssetStore(settings.assets_path)
    captions = write_library(tmp_path / "lib", ("ball", "cone"))
    report = await lib.import_folder(db, store, models, tmp_path / "lib", collection="shapes", captions=captions,
                                     formats=("glb",))  # fmt: skip
    assert report.imported == 2
    space = models.image().space
    assert space.dim == TINY_DIM and space.name.startswith("image:siglip")
    owner = (await make_caller(settings, db)).account_id
    async with db() as session, session.begin():
        hits = await search_service.search(session, models, search_service.Query("a blue ball"), account_id=owner)
        assert len(hits) == 2 and all(space.name in h.scores for h in hits)
        ball = next(h for h in hits if h.asset.source_key == "ball.glb")
        picture = Image.open(store.task_dir(ball.asset.id) / ball.asset.files["thumbnail"])
        by_image = await search_service.search(session, models, search_service.Query(None, picture), account_id=owner)
        assert by_image[0].asset.id == ball.asset.id and by_image[0].scores[space.name] > 0.999


async def test_a_retrieved_preview_refines_like_any_preview(
    api: Api,
    caller: Caller,
    library: lib.ImportReport,
    worker,  # type: ignore[no-untyped-def]
) -> None:
    preview = await create_preview(api, caller, prompt="a golden ring", retrieve_min_score=0.5)
    response = await api.client.post("/openapi/v2/text-to-3d", headers=caller.headers,
                                     json={"mode": "refine", "preview_task_id": preview})  # fmt: skip
    assert response.status_code == 202, response.text
    refined = await wait_terminal(api, caller, response.json()["result"])
    assert refined["status"] == "SUCCEEDED", refined["task_error"]
    glb = await api.client.get(refined["model_urls"]["glb"])
    mesh = trimesh.load(io.BytesIO(glb.content), file_type="glb", force="mesh")
    assert len(mesh.faces) > 100 and refined["texture_urls"]


async def test_a_priced_search_charges_and_refuses_when_broke(api: Api, settings, db) -> None:  # type: ignore[no-untyped-def]
    settings.credit_prices = {"asset-search": 3}  # the app reads prices per request from these settings
    rich, broke = await make_caller(settings, db, credits=10), await make_caller(settings, db, credits=2, name="b")
    assert await search(api, rich, query="anything") == []
    assert (await api.client.get("/openapi/v1/balance", headers=rich.headers)).json()["balance"] == 7
    response = await api.client.post(SEARCH, json={"query": "anything"}, headers=broke.headers)
    assert response.status_code == 402 and response.json() == {"message": "Insufficient credits"}
    assert (await api.client.get("/openapi/v1/balance", headers=broke.headers)).json()["balance"] == 2


async def test_long_model_names_get_distinct_tables_with_their_index(db) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import text

    from app.search.store import Space, ensure_space

    long = "text:sentence-transformers_paraphrase-multilingual-minilm-l12-v2"
    spaces = [Space(long, 8, "text", "a"), Space(long + "-b", 8, "text", "b")]
    assert len({s.table for s in spaces}) == 2 and all(len(s.table) + 5 <= 63 for s in spaces)
    async with db() as session, session.begin():
        for space in spaces:
            await ensure_space(session, space)
        indexes = set((await session.execute(text("SELECT indexname FROM pg_indexes WHERE indexdef LIKE '%hnsw%'")))
                      .scalars())  # fmt: skip
    assert indexes == {f"{s.table}_hnsw" for s in spaces}


async def test_a_huge_query_picture_is_refused_before_it_is_decoded(api: Api, caller: Caller) -> None:
    buffer = io.BytesIO()
    Image.new("L", (9000, 8)).save(buffer, format="PNG")
    response = await api.client.post(SEARCH, json={"image_url": data_uri(buffer.getvalue())}, headers=caller.headers)
    assert response.status_code == 400 and "8192 px a side" in response.json()["message"]


async def test_retrieval_generates_when_the_matched_files_are_gone(api: Api, caller: Caller, settings, db) -> None:  # type: ignore[no-untyped-def]
    import shutil

    task_id = await _generated_cone(settings, db, caller)
    shutil.rmtree(AssetStore(settings.assets_path).task_dir(uuid.UUID(task_id)))
    created = await create_preview(api, caller, prompt="an orange traffic cone", retrieve_min_score=0.5)
    task = (await api.client.get(f"/openapi/v2/text-to-3d/{created}", headers=caller.headers)).json()
    assert task["status"] == "PENDING" and "retrieved_from" not in task and task["consumed_credits"] == 20
    assert not list(AssetStore(settings.assets_path).root.glob(".*.reuse"))


async def test_new_weights_in_the_same_folder_make_a_new_space(tmp_path: Path) -> None:
    from app.search.encoders import weights_fingerprint
    from tests.app.search.tiny_siglip import make_tiny_siglip

    folder = make_tiny_siglip(tmp_path / "siglip")
    before = weights_fingerprint(folder)
    assert weights_fingerprint(folder) == before and len(before) == 8
    (folder / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes() + b"\0" * 8)
    assert weights_fingerprint(folder) != before
