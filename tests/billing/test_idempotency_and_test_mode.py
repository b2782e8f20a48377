"""Idempotency-Key on creates, and Meshy's test-mode key."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from tests.conftest import Api, Caller

pytestmark = pytest.mark.asyncio
URL = "/openapi/v2/text-to-3d"
PREVIEW = {"mode": "preview", "prompt": "a lamp", "seed": 4}
TEST_KEY = {"Authorization": "Bearer msy_dummy_api_key_for_test_mode_12345678"}


class TestIdempotency:
    async def test_same_key_same_body_is_one_task_one_charge(self, api: Api, caller: Caller) -> None:
        headers = {**caller.headers, "Idempotency-Key": "retry-1"}
        responses = await asyncio.gather(*(api.client.post(URL, json=PREVIEW, headers=headers) for _ in range(10)))
        assert {r.status_code for r in responses} == {202}
        assert len({r.json()["result"] for r in responses}) == 1
        assert (await api.client.get("/openapi/v1/balance", headers=caller.headers)).json() == {"balance": 980}
        assert len((await api.client.get(URL, headers=caller.headers)).json()) == 1

    async def test_same_key_other_body_is_409(self, api: Api, caller: Caller) -> None:
        headers = {**caller.headers, "Idempotency-Key": "retry-2"}
        assert (await api.client.post(URL, json=PREVIEW, headers=headers)).status_code == 202
        response = await api.client.post(URL, json={**PREVIEW, "prompt": "a different lamp"}, headers=headers)
        assert response.status_code == 409
        assert set(response.json()) == {"message"}

    async def test_keys_are_per_account_and_optional(self, api: Api, caller: Caller, settings, db) -> None:
        from tests.conftest import make_caller

        other = await make_caller(settings, db, name="other")
        a = await api.client.post(URL, json=PREVIEW, headers={**caller.headers, "Idempotency-Key": "k"})
        b = await api.client.post(URL, json=PREVIEW, headers={**other.headers, "Idempotency-Key": "k"})
        assert a.json()["result"] != b.json()["result"]
        plain = [await api.client.post(URL, json=PREVIEW, headers=caller.headers) for _ in range(2)]
        assert plain[0].json()["result"] != plain[1].json()["result"]


class TestTestMode:
    async def test_every_endpoint_answers_with_canned_results(self, api: Api, caller: Caller) -> None:
        created = await api.client.post(URL, json={"mode": "preview", "prompt": "anything"}, headers=TEST_KEY)
        assert created.status_code == 202
        preview_id = created.json()["result"]
        assert (await api.client.post(URL, json={"mode": "preview", "prompt": "other"}, headers=TEST_KEY)).json()[
            "result"
        ] == preview_id
        task = (await api.client.get(f"{URL}/{preview_id}", headers=TEST_KEY)).json()
        assert task["status"] == "SUCCEEDED" and task["consumed_credits"] == 0
        async with httpx.AsyncClient() as anonymous:
            assert (await anonymous.get(task["model_urls"]["glb"])).content[:4] == b"glTF"
        refine = await api.client.post(URL, json={"mode": "refine", "preview_task_id": preview_id}, headers=TEST_KEY)
        refined = (await api.client.get(f"{URL}/{refine.json()['result']}", headers=TEST_KEY)).json()
        assert refined["type"] == "text-to-3d-refine" and refined["texture_urls"][0]["base_color"]
        listed = (await api.client.get(URL, headers=TEST_KEY)).json()
        assert {t["id"] for t in listed} == {preview_id, refined["id"]}
        async with api.client.stream("GET", f"{URL}/{preview_id}/stream", headers=TEST_KEY) as stream:
            lines = [line async for line in stream.aiter_lines() if line.startswith("data:")]
        assert len(lines) == 1 and json.loads(lines[0][5:])["status"] == "SUCCEEDED"
        assert (await api.client.delete(f"{URL}/{preview_id}", headers=TEST_KEY)).status_code == 200
        assert (await api.client.get(f"{URL}/{preview_id}", headers=TEST_KEY)).status_code == 200
        assert (await api.client.get("/openapi/v1/balance", headers=TEST_KEY)).json() == {"balance": 10_000}

    async def test_is_isolated_from_real_accounts(self, api: Api, caller: Caller) -> None:
        real = (await api.client.post(URL, json=PREVIEW, headers=caller.headers)).json()["result"]
        assert (await api.client.get(f"{URL}/{real}", headers=TEST_KEY)).status_code == 404
        assert all(t["id"] != real for t in (await api.client.get(URL, headers=TEST_KEY)).json())
        test_id = (await api.client.post(URL, json=PREVIEW, headers=TEST_KEY)).json()["result"]
        assert (await api.client.get(f"{URL}/{test_id}", headers=caller.headers)).status_code == 404
        assert (await api.client.get("/openapi/v1/balance", headers=caller.headers)).json() == {"balance": 980}

    async def test_still_validates_input(self, api: Api) -> None:
        response = await api.client.post(URL, json={"mode": "preview"}, headers=TEST_KEY)
        assert response.status_code == 400


class TestWindowsAndTouches:
    async def test_an_idempotency_key_expires_after_24_hours(self, api: Api, caller: Caller, db) -> None:
        from datetime import timedelta

        from sqlalchemy import update

        from app.core.clock import utcnow
        from app.tasks.models import IdempotencyKey

        headers = {**caller.headers, "Idempotency-Key": "day-old"}
        first = (await api.client.post(URL, json=PREVIEW, headers=headers)).json()["result"]
        assert (await api.client.post(URL, json=PREVIEW, headers=headers)).json()["result"] == first
        async with db() as session, session.begin():
            await session.execute(
                update(IdempotencyKey).values(created_at=utcnow() - timedelta(hours=25))
                .where(IdempotencyKey.account_id == caller.account_id)
            )  # fmt: skip
        second = (await api.client.post(URL, json=PREVIEW, headers=headers)).json()["result"]
        assert second != first  # a new task, and a new charge
        assert (await api.client.get("/openapi/v1/balance", headers=caller.headers)).json() == {"balance": 960}

    async def test_a_keys_last_use_is_recorded(self, api: Api, caller: Caller, db) -> None:
        from billing import service as billing_service

        async with db() as session:
            (key,) = await billing_service.list_keys(session, account_id=caller.account_id)
        assert key.last_used_at is None
        assert (await api.client.get("/openapi/v1/balance", headers=caller.headers)).status_code == 200
        async with db() as session:
            (key,) = await billing_service.list_keys(session, account_id=caller.account_id)
        assert key.last_used_at is not None


class TestRefineRules:
    async def test_refining_a_refine_is_400(self, api: Api, caller: Caller, worker) -> None:
        import time

        preview = (await api.client.post(URL, json=PREVIEW, headers=caller.headers)).json()["result"]
        deadline = time.monotonic() + 60
        while (await api.client.get(f"{URL}/{preview}", headers=caller.headers)).json()["status"] != "SUCCEEDED":
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        refine = (
            await api.client.post(URL, json={"mode": "refine", "preview_task_id": preview}, headers=caller.headers)
        ).json()["result"]
        again = await api.client.post(URL, json={"mode": "refine", "preview_task_id": refine}, headers=caller.headers)
        assert again.status_code == 400 and set(again.json()) == {"message"}

    @pytest.mark.parametrize(("ai_model", "remesh"), [("latest", False), ("meshy-6", False), ("meshy-5", True)])
    async def test_should_remesh_defaults_by_model(self, api: Api, caller: Caller, ai_model: str, remesh: bool) -> None:
        created = await api.client.post(URL, json={**PREVIEW, "ai_model": ai_model}, headers=caller.headers)
        task = (await api.client.get(f"{URL}/{created.json()['result']}", headers=caller.headers)).json()
        assert task["should_remesh"] is remesh
