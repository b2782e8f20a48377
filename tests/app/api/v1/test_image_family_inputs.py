"""The image family's input rules at create: every bad input is a Meshy 400 before anything is charged."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tests.conftest import Api, Caller, make_caller, unthrottle
from tests.images import data_uri, object_photo

pytestmark = pytest.mark.asyncio
I23D, MULTI, T2I, I2I = (
    f"/openapi/v1/{r}" for r in ("image-to-3d", "multi-image-to-3d", "text-to-image", "image-to-image")
)
PNG = object_photo(64)
PHOTO = data_uri(PNG)


async def balance(api: Api, caller: Caller) -> int:
    return (await api.client.get("/openapi/v1/balance", headers=caller.headers)).json()["balance"]


def tiny_png(width: int, height: int) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 0, 0)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("url", "body", "fragment"),
    [
        (I23D, {}, "image_url"),
        (I23D, {"image_url": "data:image/png;base64,"}, "empty"),
        (I23D, {"image_url": data_uri(PNG[: len(PNG) // 2])}, "truncated"),
        (I23D, {"image_url": data_uri(b"GIF89a" + b"\0" * 64, "image/png")}, "image/png"),
        (I23D, {"image_url": data_uri(tiny_png(1, 1))}, "1x1"),
        (I23D, {"image_url": "data:image/png;base64,@@@"}, "malformed"),
        (I23D, {"image_url": "ftp://example.com/a.png"}, "image_url"),
        (I23D, {"image_url": "http://127.0.0.1/a.png"}, "private"),
        (I23D, {"image_url": "http://[::1]:8000/a.png"}, "private"),
        (I23D, {"image_url": "http://10.1.2.3/a.png"}, "private"),
        (I23D, {"image_url": "http://localhost/a.png"}, "private"),
        (I23D, {"image_url": PHOTO, "should_texture": False, "enable_pbr": True}, "enable_pbr"),
        (I23D, {"image_url": PHOTO, "texture_image_url": "file:///etc/passwd"}, "texture_image_url"),
        (I23D, {"image_url": PHOTO, "target_polycount": 50}, "target_polycount"),
        (I23D, {"image_url": PHOTO, "model_type": "voxel"}, "model_type"),
        (I23D, {"image_url": PHOTO, "ai_model": "meshy-1"}, "ai_model"),
        (MULTI, {"image_urls": []}, "between 1 and 4"),
        (MULTI, {"image_urls": ["https://example.com/a\x00.png"]}, "NUL"),
        (MULTI, {"image_urls": [42]}, "image_urls"),
        (MULTI, {"image_urls": [PHOTO] * 5}, "between 1 and 4"),
        (MULTI, {"image_urls": [PHOTO, "data:image/png;base64,"]}, "image_urls[1]"),
        (T2I, {"prompt": "a chair"}, "ai_model"),
        (T2I, {"ai_model": "nano-banana"}, "prompt"),
        (T2I, {"ai_model": "nano-banana", "prompt": "  "}, "prompt"),
        (
            T2I,
            {"ai_model": "nano-banana", "prompt": "x", "generate_multi_view": True, "aspect_ratio": "16:9"},
            "aspect_ratio",
        ),
        (T2I, {"ai_model": "gpt-image-2", "prompt": "x", "aspect_ratio": "16:9"}, "aspect_ratio"),
        (T2I, {"ai_model": "dall-e-1", "prompt": "x"}, "ai_model"),
        (I2I, {"ai_model": "nano-banana", "prompt": "x"}, "reference_image_urls"),
        (I2I, {"ai_model": "nano-banana", "prompt": "x", "reference_image_urls": [PHOTO] * 6}, "between 1 and 5"),
    ],
)
async def test_bad_input_is_a_400_and_charges_nothing(
    api: Api, caller: Caller, url: str, body: dict[str, Any], fragment: str
) -> None:
    response = await api.client.post(url, json=body, headers=caller.headers)
    assert response.status_code == 400, response.text
    assert set(response.json()) == {"message"}
    assert fragment in response.json()["message"], response.json()
    assert await balance(api, caller) == 1000
    assert (await api.client.get(url, headers=caller.headers)).json() == []


async def test_an_image_over_the_fetch_limit_is_400_and_over_the_body_limit_413(api: Api, caller: Caller) -> None:
    big = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * (21 * 2**20)).decode()
    response = await api.client.post(I23D, json={"image_url": big}, headers=caller.headers)
    assert response.status_code == 400 and "larger than" in response.json()["message"]
    huge = b'{"image_url": "data:image/png;base64,' + b"A" * (60 * 2**20) + b'"}'
    response = await api.client.post(I23D, content=huge, headers={**caller.headers, "Content-Type": "application/json"})
    assert response.status_code == 413 and set(response.json()) == {"message"}


async def test_input_task_id_must_be_an_own_succeeded_image_task(api: Api, caller: Caller, settings, db) -> None:  # type: ignore[no-untyped-def]
    preview = (await api.client.post(
        "/openapi/v2/text-to-3d", json={"mode": "preview", "prompt": "a chair"}, headers=caller.headers
    )).json()["result"]  # fmt: skip
    image = (await api.client.post(
        T2I, json={"ai_model": "nano-banana", "prompt": "a chair"}, headers=caller.headers
    )).json()["result"]  # fmt: skip
    wrong_type = await api.client.post(I23D, json={"input_task_id": preview}, headers=caller.headers)
    assert wrong_type.status_code == 400 and "text-to-3d-preview" in wrong_type.json()["message"]
    not_ready = await api.client.post(I23D, json={"input_task_id": image}, headers=caller.headers)
    assert not_ready.status_code == 400 and "not succeeded" in not_ready.json()["message"]
    other = await make_caller(settings, db, name="other")
    foreign = await api.client.post(I23D, json={"input_task_id": image}, headers=other.headers)
    assert foreign.status_code == 404
    unknown = await api.client.post(MULTI, json={"input_task_id": "nope"}, headers=caller.headers)
    assert unknown.status_code == 404
    assert await balance(api, other) == 1000


async def test_2d_resources_do_not_count_toward_the_queue_limit(api: Api, caller: Caller, db) -> None:  # type: ignore[no-untyped-def]
    await unthrottle(db, caller)
    for _ in range(10):  # the pro plan's 10 unfinished generation tasks
        assert (await api.client.post(I23D, json={"image_url": PHOTO}, headers=caller.headers)).status_code == 202
    refused = await api.client.post(MULTI, json={"image_urls": [PHOTO]}, headers=caller.headers)
    assert refused.status_code == 429 and refused.json() == {"message": "NoMoreConcurrentTasks"}
    body = {"ai_model": "nano-banana", "prompt": "a chair"}
    assert (await api.client.post(T2I, json=body, headers=caller.headers)).status_code == 202
    body = {**body, "reference_image_urls": [PHOTO]}
    assert (await api.client.post(I2I, json=body, headers=caller.headers)).status_code == 202


@pytest.mark.parametrize(
    ("body", "price"),
    [
        ({"image_url": PHOTO}, 30),
        ({"image_url": PHOTO, "should_texture": False}, 20),
        ({"image_url": PHOTO, "ai_model": "meshy-5"}, 15),
        ({"image_url": PHOTO, "ai_model": "meshy-5", "should_texture": False}, 5),
    ],
)
async def test_image_to_3d_prices(api: Api, caller: Caller, body: dict[str, Any], price: int) -> None:
    task_id = (await api.client.post(I23D, json=body, headers=caller.headers)).json()["result"]
    task = (await api.client.get(f"{I23D}/{task_id}", headers=caller.headers)).json()
    assert task["consumed_credits"] == price and await balance(api, caller) == 1000 - price


@pytest.mark.parametrize(
    ("model", "multi_view", "price"),
    [("nano-banana", False, 3), ("nano-banana-2", False, 6), ("nano-banana-pro", True, 9), ("gpt-image-2", False, 9)],
)
async def test_text_to_image_prices_a_multi_view_set_once(
    api: Api, caller: Caller, model: str, multi_view: bool, price: int
) -> None:
    body = {"ai_model": model, "prompt": "a chair", "generate_multi_view": multi_view}
    task_id = (await api.client.post(T2I, json=body, headers=caller.headers)).json()["result"]
    task = (await api.client.get(f"{T2I}/{task_id}", headers=caller.headers)).json()
    assert task["consumed_credits"] == price
    assert (task["ai_model"], task["generate_multi_view"], task["aspect_ratio"]) == (model, multi_view, "1:1")
    assert task["image_urls"] == [] and "model_urls" not in task


async def test_multi_view_accepts_the_square_ratio_meshys_mcp_server_always_sends(api: Api, caller: Caller) -> None:
    body = {"ai_model": "nano-banana", "prompt": "a robot", "generate_multi_view": True, "aspect_ratio": "1:1"}
    assert (await api.client.post(T2I, json=body, headers=caller.headers)).status_code == 202


async def test_multi_image_does_not_echo_its_views_as_image_urls(api: Api, caller: Caller) -> None:
    body = {"image_urls": [PHOTO, "https://example.com/side.png"], "ai_model": "meshy-7"}
    task_id = (await api.client.post(MULTI, json=body, headers=caller.headers)).json()["result"]
    task = (await api.client.get(f"{MULTI}/{task_id}", headers=caller.headers)).json()
    assert "image_urls" not in task and task["ai_model"] == "meshy-7" and task["should_remesh"] is False


async def test_echoes_inputs_without_inline_bytes(api: Api, caller: Caller) -> None:
    body = {"image_url": PHOTO, "texture_prompt": "gold", "texture_image_url": "https://example.com/t.png",
            "model_type": "lowpoly", "multi_view_thumbnails": True}  # fmt: skip
    task_id = (await api.client.post(I23D, json=body, headers=caller.headers)).json()["result"]
    task = (await api.client.get(f"{I23D}/{task_id}", headers=caller.headers)).json()
    assert task["image_url"].startswith("data:image/png;base64,") and len(task["image_url"]) < 100
    assert task["texture_image_url"] == "https://example.com/t.png" and task["texture_prompt"] == "gold"
    assert (task["model_type"], task["topology"], task["should_texture"]) == ("lowpoly", "triangle", True)
    assert task["type"] == "image-to-3d" and "prompt" not in task


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"image_url": "https://example.com/" + "a" * 5000}, "at most 4096"),
        ({"image_url": "http://[::1"}, "malformed"),
        ({"image_url": "https://example.com:99999/a.png"}, "malformed"),
        ({"image_url": "http://a..b/x.png"}, "malformed"),
        ({"image_url": PHOTO, "extra": [[[[{"a": ["b"]}]]]]}, ""),
    ],
)
async def test_odd_urls_are_400s_at_create(api: Api, caller: Caller, body: dict[str, Any], fragment: str) -> None:
    response = await api.client.post(I23D, json=body, headers=caller.headers)
    if not fragment:  # unknown fields, however nested, are ignored
        assert response.status_code == 202, response.text
        return
    assert response.status_code == 400, response.text
    assert fragment in response.json()["message"]


async def test_deeply_nested_bodies_are_400s_not_500s(api: Api, caller: Caller) -> None:
    body = '{"ai_model": "nano-banana", "prompt": "x", "extra": ' + "[" * 2000 + "]" * 2000 + "}"
    response = await api.client.post(T2I, content=body, headers={**caller.headers, "Content-Type": "application/json"})
    assert response.status_code in (202, 400) and response.status_code != 500


async def test_a_picture_too_large_to_decode_is_refused_at_create(api: Api, caller: Caller) -> None:
    response = await api.client.post(I23D, json={"image_url": data_uri(tiny_png(6000, 6000))}, headers=caller.headers)
    assert response.status_code == 400 and "at most" in response.json()["message"]


async def test_2d_tasks_have_their_own_pending_limit(api: Api, caller: Caller, db) -> None:  # type: ignore[no-untyped-def]
    await unthrottle(db, caller)
    body = {"ai_model": "nano-banana", "prompt": "a chair"}
    for _ in range(50):  # the pro plan's queue limit of 10, five times over
        assert (await api.client.post(T2I, json=body, headers=caller.headers)).status_code == 202
    refused = await api.client.post(T2I, json=body, headers=caller.headers)
    assert refused.status_code == 429 and refused.json() == {"message": "NoMorePendingTasks"}
    # The 3D queue is separate.
    assert (await api.client.post(I23D, json={"image_url": PHOTO}, headers=caller.headers)).status_code == 202


async def _succeeded_image_task(db, caller: Caller, expires_in_s: float = 3600) -> str:  # type: ignore[no-untyped-def]
    from datetime import timedelta

    from app.core.clock import utcnow
    from app.tasks.models import Task

    async with db() as session, session.begin():
        task = Task(account_id=caller.account_id, type="text-to-image", status="SUCCEEDED", ai_model="nano-banana",
                    runner="procedural-image", pool="default", params={}, outputs={"images": ["image_0.png"]},
                    expires_at=utcnow() + timedelta(seconds=expires_in_s))  # fmt: skip
        session.add(task)
    return str(task.id)


async def test_an_idempotent_retry_returns_its_task_even_after_the_input_task_is_gone(
    api: Api, caller: Caller, db
) -> None:  # type: ignore[no-untyped-def]
    parent = await _succeeded_image_task(db, caller)
    headers = {**caller.headers, "Idempotency-Key": "retry-1"}
    first = await api.client.post(I23D, json={"input_task_id": parent}, headers=headers)
    assert first.status_code == 202
    assert (await api.client.delete(f"{T2I}/{parent}", headers=caller.headers)).status_code == 200
    again = await api.client.post(I23D, json={"input_task_id": parent}, headers=headers)
    assert again.status_code == 202 and again.json() == first.json()
    assert await balance(api, caller) == 1000 - 30


async def test_an_expired_input_task_is_a_400(api: Api, caller: Caller, db) -> None:  # type: ignore[no-untyped-def]
    parent = await _succeeded_image_task(db, caller, expires_in_s=-1)
    response = await api.client.post(I23D, json={"input_task_id": parent}, headers=caller.headers)
    assert response.status_code == 400 and "expired" in response.json()["message"]
