"""Characters at create time: rigging's input rules, animation's rig/motion/action checks, text-to-motion's and the
HY-Motion route's limits, prices, and the animation catalogue. No worker runs here (see test_characters_flow.py)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from app.tasks import animations
from tests.conftest import Api, Caller, add_succeeded_task, make_caller
from tests.images import data_uri, glb_box, model_data_uri, object_photo

pytestmark = pytest.mark.asyncio
RIG = "/openapi/v1/rigging"
ANIMATE = "/openapi/v1/animations"
T2M = "/openapi/v1/text-to-motion"
MODEL = model_data_uri(glb_box())
RIG_OUTPUTS = {"result": {}, "character_data": "character.npz"}
MOTION_OUTPUTS = {"result": {}, "motion_data": "motion.npz"}


async def post(api: Api, caller: Caller, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = await api.client.post(path, json=body, headers=caller.headers)
    return response.status_code, response.json()


async def balance(api: Api, caller: Caller) -> int:
    return (await api.client.get("/openapi/v1/balance", headers=caller.headers)).json()["balance"]


# --- rigging --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({}, "model_url"),
        ({"model_url": "https://example.com/character.obj"}, "rigging takes a .glb model"),
        ({"model_url": "https://example.com/character"}, "rigging takes a .glb model"),
        ({"model_url": "ftp://example.com/a.glb"}, "model_url"),
        ({"model_url": MODEL, "height_meters": 0}, "height_meters"),
        ({"model_url": MODEL, "height_meters": -1.7}, "height_meters"),
        ({"model_url": MODEL, "height_meters": 1e-300}, "height_meters"),
        ({"model_url": MODEL, "texture_image_url": data_uri(object_photo(64, fmt="JPEG"), "image/png")}, "png"),
        ({"model_url": MODEL, "texture_image_url": data_uri(object_photo(64, fmt="JPEG"), "image/jpeg")}, "png"),
        ({"model_url": MODEL, "bone_naming": "unreal"}, "bone_naming"),
        ({"model_url": "http://127.0.0.1/a.glb"}, "model_url"),
    ],
)
async def test_rigging_refuses_bad_input(api: Api, caller: Caller, body: dict[str, Any], fragment: str) -> None:
    status, answer = await post(api, caller, RIG, body)
    assert status == 400, answer
    assert set(answer) == {"message"} and fragment.lower() in answer["message"].lower()
    assert await balance(api, caller) == 1000


async def test_rigging_takes_glb_data_uris_only(api: Api, caller: Caller) -> None:
    obj = "data:application/octet-stream;base64," + base64.b64encode(b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n").decode()
    status, answer = await post(api, caller, RIG, {"model_url": obj})
    assert status == 400 and "GLB" in answer["message"]
    status, answer = await post(api, caller, RIG, {"model_url": MODEL, "height_meters": 1.8})
    assert status == 202
    task = (await api.client.get(f"{RIG}/{answer['result']}", headers=caller.headers)).json()
    assert task["type"] == "rig" and task["result"] is None and task["consumed_credits"] == 5
    assert "model_urls" not in task and "thumbnail_url" not in task


async def test_rigging_input_task_rules(api: Api, caller: Caller, settings, db) -> None:  # type: ignore[no-untyped-def]
    big = await add_succeeded_task(db, caller, "remesh", {"model": {"glb": "model.glb"}, "faces": 300_001})
    status, answer = await post(api, caller, RIG, {"input_task_id": big})
    assert status == 400 and "Remesh it first" in answer["message"] and "300,001" in answer["message"]
    no_glb = await add_succeeded_task(db, caller, "convert", {"model": {"obj": "model.obj"}, "faces": 12})
    status, answer = await post(api, caller, RIG, {"input_task_id": no_glb})
    assert status == 400 and "GLB" in answer["message"]
    image = await add_succeeded_task(db, caller, "text-to-image", {"images": ["image_0.png"]})
    assert (await post(api, caller, RIG, {"input_task_id": image}))[0] == 400
    other = await make_caller(settings, db, name="other")
    foreign = await add_succeeded_task(db, other, "remesh", {"model": {"glb": "model.glb"}, "faces": 12})
    status, answer = await post(api, caller, RIG, {"input_task_id": foreign})
    assert status == 404 and set(answer) == {"message"}
    fine = await add_succeeded_task(db, caller, "remesh", {"model": {"glb": "model.glb"}, "faces": 300_000})
    # input_task_id wins over model_url (meshy-api.md §22.14): the bad URL is never looked at.
    status, answer = await post(api, caller, RIG, {"input_task_id": fine, "model_url": MODEL})
    assert status == 202


# --- animations -----------------------------------------------------------------------------------------------------


@pytest.fixture
def action_ids() -> list[int]:
    return sorted(animations.ACTIONS)


async def test_animation_checks_the_rig_task(api: Api, caller: Caller, settings, db, action_ids) -> None:  # type: ignore[no-untyped-def]
    body = {"action_id": action_ids[0]}
    status, answer = await post(api, caller, ANIMATE, {**body, "rig_task_id": "0199505f-0000-7000-8000-000000000001"})
    assert status == 404 and set(answer) == {"message"}
    other = await make_caller(settings, db, name="other")
    foreign = await add_succeeded_task(db, other, "rig", RIG_OUTPUTS)
    assert (await post(api, caller, ANIMATE, {**body, "rig_task_id": foreign}))[0] == 404
    not_a_rig = await add_succeeded_task(db, caller, "remesh", {"model": {"glb": "model.glb"}})
    status, answer = await post(api, caller, ANIMATE, {**body, "rig_task_id": not_a_rig})
    assert status == 400 and "rig" in answer["message"]
    assert await balance(api, caller) == 1000


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ({}, "exactly one of"),
        ({"action_id": 0, "action_ids": [0]}, "exactly one of"),
        ({"action_ids": []}, "1 to 10"),
        ({"action_ids": list(range(11))}, "1 to 10"),
        ({"action_ids": [0, 0]}, "unique"),
        ({"action_id": 987654}, "Invalid action ID"),
        ({"action_ids": [0, 987654]}, "Invalid action ID"),
        ({"action_id": 0, "post_process": {"operation_type": "fbx2gltf"}}, "operation_type"),
        ({"action_id": 0, "post_process": {"operation_type": "change_fps", "fps": 50}}, "fps"),
        ({"action_id": 0, "post_process": {}}, "operation_type"),
        ({"action_id": "zero"}, "action_id"),
        ({"action_id": "2"}, "action_id"),
        ({"action_id": True}, "action_id"),
        ({"action_ids": [1.0]}, "action_ids"),
    ],
)
async def test_animation_refuses_bad_actions(api: Api, caller: Caller, db, extra: dict, fragment: str) -> None:  # type: ignore[no-untyped-def]
    rig = await add_succeeded_task(db, caller, "rig", RIG_OUTPUTS)
    status, answer = await post(api, caller, ANIMATE, {"rig_task_id": rig, **extra})
    assert status == 400, answer
    assert fragment.lower() in answer["message"].lower(), answer


async def test_animation_charges_three_credits_per_action(api: Api, caller: Caller, db, action_ids) -> None:  # type: ignore[no-untyped-def]
    rig = await add_succeeded_task(db, caller, "rig", RIG_OUTPUTS)
    post_process = {"operation_type": "change_fps", "fps": 60}
    body = {"rig_task_id": rig, "action_ids": action_ids[:4], "post_process": post_process}
    status, answer = await post(api, caller, ANIMATE, body)
    assert status == 202, answer
    task = (await api.client.get(f"{ANIMATE}/{answer['result']}", headers=caller.headers)).json()
    assert task["type"] == "animate" and task["consumed_credits"] == 12 and task["result"] is None
    assert await balance(api, caller) == 1000 - 12


async def test_animation_from_a_motion_task(api: Api, caller: Caller, settings, db) -> None:  # type: ignore[no-untyped-def]
    rig = await add_succeeded_task(db, caller, "rig", RIG_OUTPUTS)
    other = await make_caller(settings, db, name="other")
    foreign = await add_succeeded_task(db, other, "text-to-motion", MOTION_OUTPUTS, runner="motion-library")
    assert (await post(api, caller, ANIMATE, {"rig_task_id": rig, "motion_task_id": foreign}))[0] == 404
    mine = await add_succeeded_task(db, caller, "text-to-motion", MOTION_OUTPUTS, runner="motion-library")
    status, answer = await post(api, caller, ANIMATE, {"rig_task_id": rig, "motion_task_id": mine})
    assert status == 202, answer
    assert await balance(api, caller) == 1000 - 3


# --- text-to-motion and /generate-motion ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"prompt": "wave", "duration": 1.5}, "duration"),
        ({"prompt": "wave", "duration": 10.5}, "duration"),
        ({"prompt": "wave", "duration": 2.25}, "0.5"),
        ({"prompt": "wave"}, "duration"),
        ({"prompt": "x" * 401, "duration": 4}, "prompt"),
        ({"prompt": "   ", "duration": 4}, "blank"),
        ({"prompt": "wave", "duration": 4, "mode": "turbo"}, "mode"),
    ],
)
async def test_text_to_motion_refuses_bad_input(api: Api, caller: Caller, body: dict, fragment: str) -> None:
    status, answer = await post(api, caller, T2M, body)
    assert status == 400 and fragment in answer["message"], answer


@pytest.mark.parametrize(("mode", "price"), [("prime", 10), ("swift", 3), (None, 10)])
async def test_text_to_motion_prices(api: Api, caller: Caller, mode: str | None, price: int) -> None:
    body = {"prompt": "a person jumps", "duration": 2.5} | ({"mode": mode} if mode else {})
    status, answer = await post(api, caller, T2M, body)
    assert status == 202
    task = (await api.client.get(f"{T2M}/{answer['result']}", headers=caller.headers)).json()
    assert task["type"] == "text-to-motion" and task["consumed_credits"] == price and task["result"] is None


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"prompt": "   "}, "Prompt cannot be empty"),
        ({"prompt": "x" * 61}, "prompt"),
        ({"prompt": "wave", "duration_sec": 0.5}, "duration_sec"),
        ({"prompt": "wave", "duration_sec": 6}, "duration_sec"),
        ({"prompt": "wave", "model_type": "huge"}, "model_type"),
        ({"prompt": "wave", "output_format": "obj"}, "output_format"),
    ],
)
async def test_generate_motion_refuses_bad_input(api: Api, caller: Caller, body: dict, fragment: str) -> None:
    response = await api.client.post("/generate-motion", json=body, headers=caller.headers)
    assert response.status_code == 400
    answer = response.json()
    assert fragment in answer["message"] and answer["detail"] == answer["message"]  # the service's clients read detail
    assert await balance(api, caller) == 1000
    assert (await api.client.post("/generate-motion", json={"prompt": "wave"})).status_code == 401


async def test_generate_motion_in_test_mode_answers_the_sample(api: Api) -> None:
    headers = {"Authorization": "Bearer msy_dummy_api_key_for_test_mode_12345678"}
    response = await api.client.post("/generate-motion", json={"prompt": "wave"}, headers=headers)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["status"] == "success" and answer["task_id"] == "0199505f-9791-7973-8dca-c77cf71696c2"
    downloaded = await api.client.get(answer["output_url"])
    assert downloaded.status_code == 200 and downloaded.content.startswith(b"HIERARCHY")


# --- the catalogue --------------------------------------------------------------------------------------------------


async def test_public_catalogue_needs_no_key_and_is_camel_case(api: Api) -> None:
    answer = (await api.client.get("/web/public/animations/resources")).json()
    items = answer["result"]["list"]
    assert answer["result"]["total"] == len(items) == len(animations.ACTIONS) >= 40
    assert set(items[0]) == {"id", "key", "name", "category", "subCategory", "previewUrl", "rigType", "isDefault",
                             "isFree"}  # fmt: skip
    assert {i["category"] for i in items} == set(animations.CATEGORIES)
    fighting = (await api.client.get("/web/public/animations/resources", params={"category": "Fighting"})).json()
    assert fighting["result"]["total"] > 0 and {i["category"] for i in fighting["result"]["list"]} == {"Fighting"}
    found = (await api.client.get("/web/public/animations/resources", params={"q": "idle"})).json()["result"]["list"]
    assert found and all("idle" in (i["name"] + i["key"]).lower() for i in found)
    assert items[0]["previewUrl"].endswith(f"/web/public/animations/previews/{items[0]['id']}.gif")


async def test_library_needs_a_key_and_is_snake_case(api: Api, caller: Caller) -> None:
    assert (await api.client.get("/openapi/v1/animations/library")).status_code == 401
    answer = (await api.client.get("/openapi/v1/animations/library", headers=caller.headers)).json()
    item = answer["result"]["list"][0]
    assert {"action_id", "name", "key", "category", "sub_category", "preview_url"} <= set(item)
    dancing = await api.client.get("/openapi/v1/animations/library", params={"category": "Dancing", "search": "dance"},
                                   headers=caller.headers)  # fmt: skip
    assert {i["category"] for i in dancing.json()["result"]["list"]} == {"Dancing"}


async def test_previews_are_served_once_rendered(api: Api, settings) -> None:  # type: ignore[no-untyped-def]
    action = min(animations.ACTIONS)
    url = f"/web/public/animations/previews/{action}.gif"
    missing = await api.client.get(url)
    assert missing.status_code == 404 and set(missing.json()) == {"message"}
    assert (await api.client.get("/web/public/animations/previews/987654.gif")).status_code == 404
    path = animations.preview_path(settings.assets_path, action)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"GIF89a" + b"\0" * 64)
    served = await api.client.get(url)
    assert served.status_code == 200 and served.headers["content-type"] == "image/gif"
    assert served.content.startswith(b"GIF89a")
