"""Every declared task resource, one contract: the five verbs, test mode, cross-tenant 404, bad input.

A resource added to `app.api.catalog.RESOURCES` fails `test_every_resource_has_an_example` until it gets a minimal
valid body here, and from then on every test below covers it. No worker runs: tasks stay PENDING.
"""

from __future__ import annotations

import base64
import uuid
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from app.api import testmode
from app.api.catalog import RESOURCES
from app.api.resources import Resource
from tests.conftest import Api, Caller, add_succeeded_task, make_caller
from tests.fixtures.speech import speech_like, wav_bytes
from tests.images import data_uri, glb_box, model_data_uri, object_photo

pytestmark = pytest.mark.asyncio
PHOTO = data_uri(object_photo(64))
TEST_KEY = "msy_dummy_api_key_for_test_mode_12345678"
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"

# A minimal valid create body per resource, what it costs with Meshy's default prices, and a change to the body
# that makes it another request (for the Idempotency-Key test).
MODEL = model_data_uri(glb_box())
PORTRAIT = "data:image/jpeg;base64," + base64.b64encode((FIXTURES / "portrait.jpg").read_bytes()).decode()
SPEECH = "data:audio/wav;base64," + base64.b64encode(wav_bytes(speech_like(3.0))).decode()
EXAMPLES: dict[str, tuple[dict[str, Any], int, dict[str, Any]]] = {
    "text-to-3d": ({"mode": "preview", "prompt": "a chair"}, 20, {"moderation": True}),
    "image-to-3d": ({"image_url": PHOTO}, 30, {"moderation": True}),
    "multi-image-to-3d": ({"image_urls": [PHOTO, PHOTO]}, 30, {"moderation": True}),
    "text-to-image": ({"ai_model": "nano-banana", "prompt": "a red chair"}, 3, {"moderation": True}),
    "image-to-image": (
        {"ai_model": "nano-banana-pro", "prompt": "make it blue", "reference_image_urls": [PHOTO]},
        9,
        {"moderation": True},
    ),  # fmt: skip
    "remesh": ({"model_url": MODEL}, 5, {"target_polycount": 500}),
    "convert": ({"model_url": MODEL, "target_formats": ["obj"]}, 1, {"target_formats": ["stl"]}),
    "resize": ({"model_url": MODEL, "resize_height": 1.5}, 1, {"resize_height": 2.0}),
    "retexture": ({"model_url": MODEL, "text_style_prompt": "red brick"}, 10, {"enable_pbr": True}),
    "text-to-texture": (
        {"model_url": MODEL, "object_prompt": "a box", "style_prompt": "wood"},
        10,
        {"style_prompt": "stone"},
    ),  # fmt: skip
    "uv-unwrap": ({"model_url": MODEL}, 5, {"model_url": model_data_uri(glb_box(2.0))}),
    "print/analyze": ({"model_url": MODEL}, 0, {"model_url": model_data_uri(glb_box(2.0))}),
    "print/repair": ({"model_url": MODEL}, 10, {"model_url": model_data_uri(glb_box(2.0))}),
    "print/multi-color": ({"model_url": MODEL}, 10, {"max_colors": 8}),
    "rigging": ({"model_url": MODEL}, 5, {"height_meters": 1.8}),
    # RIG_ID: a SUCCEEDED rig task the `caller` fixture gives the caller for this resource (ids 0 and 1: Idle, Walking).
    "animations": ({"rig_task_id": "{RIG}", "action_id": 0}, 3, {"action_id": 1}),
    "text-to-motion": ({"prompt": "a person waves", "duration": 4, "mode": "swift"}, 3, {"duration": 5}),
    "mesh-segmentation": ({"model_url": MODEL}, 5, {"num_parts": 3}),
    "part-completion": ({"model_url": MODEL}, 10, {"model_url": model_data_uri(glb_box(2.0))}),
    # 3 s of speech: one started 10 s unit.
    "talking-head": ({"image_url": PORTRAIT, "audio_url": SPEECH}, 10, {"emotion": "happy"}),
}
RIG_ID = "0199505f-0000-7000-8000-00000000c0de"
# Bodies every resource refuses with a 400 whose message names the problem.
COMMON_BAD: list[tuple[Any, str]] = [([], ""), ("not json", ""), ({}, "")]

BY_SLUG = {r.slug: r for r in RESOURCES}


def ids(resource: Resource) -> str:
    return resource.slug


def example(resource: Resource) -> dict[str, Any]:
    return {k: RIG_ID if v == "{RIG}" else v for k, v in EXAMPLES[resource.slug][0].items()}


@pytest_asyncio.fixture
async def caller(settings, db, request) -> Caller:  # type: ignore[no-untyped-def]
    """A fresh account; for `animations`, one that owns a SUCCEEDED rig task (RIG_ID) to animate."""
    made = await make_caller(settings, db)
    resource = getattr(getattr(request.node, "callspec", None), "params", {}).get("resource")
    if resource is not None and resource.slug == "animations":
        await add_succeeded_task(db, made, "rig", {"result": {}, "character_data": "character.npz"}, task_id=RIG_ID)
    return made


async def create(api: Api, caller: Caller, resource: Resource, **extra: Any) -> str:
    body = example(resource)
    response = await api.client.post(resource.path, json={**body, **extra}, headers=caller.headers)
    assert response.status_code == 202, response.text
    assert set(response.json()) == {"result"}
    return response.json()["result"]


async def test_every_resource_has_an_example() -> None:
    assert set(EXAMPLES) == set(BY_SLUG), "declare a minimal valid body for each resource in EXAMPLES"
    paths = [r.path for r in RESOURCES]
    assert len(paths) == len(set(paths))
    assert {t for r in RESOURCES for t in r.types} >= {"image-to-3d", "text-to-image"}


@pytest.mark.parametrize("resource", RESOURCES, ids=ids)
class TestEveryResource:
    async def test_create_get_list_delete(self, api: Api, caller: Caller, resource: Resource) -> None:
        task_id = await create(api, caller, resource)
        assert uuid.UUID(task_id).version == 7
        task = (await api.client.get(f"{resource.path}/{task_id}", headers=caller.headers)).json()
        assert task["id"] == task_id and task["type"] in resource.types
        assert task["status"] == "PENDING" and task["progress"] == 0
        assert task["consumed_credits"] == EXAMPLES[resource.slug][1]
        assert task["task_error"] == {"message": ""}
        assert task["started_at"] == task["finished_at"] == task["expires_at"] == 0
        assert "_inputs" not in task and "_parent_images" not in task
        assert len(str(task)) < 4000, "inline images must not be echoed back in full"
        listed = (await api.client.get(resource.path, headers=caller.headers)).json()
        assert [t["id"] for t in listed] == [task_id]
        balance = (await api.client.get("/openapi/v1/balance", headers=caller.headers)).json()["balance"]
        assert balance == 1000 - EXAMPLES[resource.slug][1]
        deleted = await api.client.delete(f"{resource.path}/{task_id}", headers=caller.headers)
        assert deleted.status_code == 200
        assert (await api.client.get(f"{resource.path}/{task_id}", headers=caller.headers)).status_code == 404
        # A task deleted before it ran gives its credits back.
        assert (await api.client.get("/openapi/v1/balance", headers=caller.headers)).json()["balance"] == 1000

    async def test_stream_sends_the_task_then_an_error_for_unknown_ids(
        self, api: Api, caller: Caller, resource: Resource
    ) -> None:
        task_id = await create(api, caller, resource)
        async with api.client.stream(
            "GET", f"{resource.path}/{task_id}/stream", headers=caller.headers, timeout=10
        ) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    assert f'"id":"{task_id}"' in line
                    break
        async with api.client.stream("GET", f"{resource.path}/{uuid.uuid4()}/stream", headers=caller.headers) as r:
            text = (await r.aread()).decode()
        assert "event: error" in text and '"status_code":404' in text

    async def test_other_accounts_and_other_resources_see_404(
        self, api: Api, caller: Caller, settings, db, resource: Resource
    ) -> None:  # type: ignore[no-untyped-def]
        task_id = await create(api, caller, resource)
        other = await make_caller(settings, db, name="other")
        for verb in ("GET", "DELETE"):
            response = await api.client.request(verb, f"{resource.path}/{task_id}", headers=other.headers)
            assert response.status_code == 404 and set(response.json()) == {"message"}
        assert (await api.client.get(resource.path, headers=other.headers)).json() == []
        for elsewhere in RESOURCES:  # the MCP server finds a task's type by trying GET on each resource
            if elsewhere is not resource:
                response = await api.client.get(f"{elsewhere.path}/{task_id}", headers=caller.headers)
                assert response.status_code == 404, elsewhere.slug

    @pytest.mark.parametrize(("body", "fragment"), COMMON_BAD)
    async def test_bad_bodies_are_meshy_400s(
        self, api: Api, caller: Caller, resource: Resource, body: Any, fragment: str
    ) -> None:
        kwargs = {"content": body} if isinstance(body, str) else {"json": body}
        response = await api.client.post(resource.path, headers=caller.headers, **kwargs)
        assert response.status_code == 400, response.text
        assert set(response.json()) == {"message"} and response.json()["message"]

    async def test_no_key_is_401_and_unknown_id_404(self, api: Api, caller: Caller, resource: Resource) -> None:
        body = example(resource)
        assert (await api.client.post(resource.path, json=body)).status_code == 401
        assert (await api.client.get(resource.path)).status_code == 401
        for task_id in (str(uuid.uuid4()), "not-a-uuid"):
            response = await api.client.get(f"{resource.path}/{task_id}", headers=caller.headers)
            assert response.status_code == 404 and response.json() == {"message": "Task not found"}

    async def test_test_mode_returns_a_canned_succeeded_task_and_charges_nothing(
        self, api: Api, resource: Resource
    ) -> None:
        headers = {"Authorization": f"Bearer {TEST_KEY}"}
        body = example(resource)
        first = (await api.client.post(resource.path, json=body, headers=headers)).json()["result"]
        again = (await api.client.post(resource.path, json={**body, "prompt": "other"}, headers=headers)).json()
        assert again["result"] == first
        task = (await api.client.get(f"{resource.path}/{first}", headers=headers)).json()
        assert task["status"] == "SUCCEEDED" and task["type"] in resource.types
        if "result" in task:
            urls = [u for k, u in task["result"].items() if k.endswith("_url") and u]
        else:
            urls = [u for u in task["model_urls"].values() if u] if "model_urls" in task else task["image_urls"]
        assert urls or task["printability"]["status"] == "healthy", task
        for url in urls[:1]:
            downloaded = await api.client.get(url)
            assert downloaded.status_code == 200 and len(downloaded.content) > 100
        listed = (await api.client.get(resource.path, headers=headers)).json()
        assert first in [t["id"] for t in listed]
        assert {t["type"] for t in listed} <= set(resource.types)
        assert (await api.client.delete(f"{resource.path}/{first}", headers=headers)).status_code == 200
        assert (await api.client.get("/openapi/v1/balance", headers=headers)).json()["balance"] == (
            testmode.TEST_MODE_BALANCE
        )

    async def test_idempotency_key_replays_without_a_second_charge(
        self, api: Api, caller: Caller, resource: Resource
    ) -> None:
        body, (_, price, change) = example(resource), EXAMPLES[resource.slug]
        headers = {**caller.headers, "Idempotency-Key": "k-1"}
        first = await api.client.post(resource.path, json=body, headers=headers)
        second = await api.client.post(resource.path, json=body, headers=headers)
        assert first.json() == second.json()
        assert (await api.client.get("/openapi/v1/balance", headers=caller.headers)).json()["balance"] == 1000 - price
        other = await api.client.post(resource.path, json={**body, **change}, headers=headers)
        assert other.status_code == 409
