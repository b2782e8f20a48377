"""Text to 3D v2 request contract: validation, auth, errors, listing, ownership (no worker needed)."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.conftest import Api, Caller, make_caller

pytestmark = pytest.mark.asyncio
URL = "/openapi/v2/text-to-3d"


async def create(api: Api, caller: Caller, **body: object) -> str:
    response = await api.client.post(URL, json={"mode": "preview", "prompt": "a chair", **body}, headers=caller.headers)
    assert response.status_code == 202, response.text
    return response.json()["result"]


class TestCreate:
    async def test_preview_answers_202_with_a_uuid7_result(self, api: Api, caller: Caller) -> None:
        response = await api.client.post(URL, json={"mode": "preview", "prompt": "a chair"}, headers=caller.headers)
        assert response.status_code == 202
        assert set(response.json()) == {"result"}
        assert uuid.UUID(response.json()["result"]).version == 7
        assert response.headers["x-api-version"]

    async def test_unknown_and_deprecated_fields_are_ignored(self, api: Api, caller: Caller) -> None:
        await create(api, caller, loop=True, frame_rate=30, enable_pbr=True, art_style="cartoon", is_a_t_pose=True)

    async def test_echoes_inputs_and_defaults(self, api: Api, caller: Caller) -> None:
        task_id = await create(
            api, caller, prompt="a red mug", seed=42, topology="quad", target_polycount=5000, moderation=True,
            origin_at="center", decimation_mode=2,
        )  # fmt: skip
        task = (await api.client.get(f"{URL}/{task_id}", headers=caller.headers)).json()
        assert (task["moderation"], task["origin_at"], task["decimation_mode"], task["auto_size"]) == (
            True, "center", 2, False
        )  # fmt: skip
        assert task["id"] == task_id
        assert task["type"] == "text-to-3d-preview"
        assert task["prompt"] == "a red mug"
        assert task["seed"] == 42
        assert task["topology"] == "quad"
        assert task["target_polycount"] == 5000
        assert task["status"] in ("PENDING", "IN_PROGRESS")
        assert task["started_at"] == 0 and task["finished_at"] == 0 and task["expires_at"] == 0
        assert task["created_at"] > 1_700_000_000_000
        assert task["model_urls"] == {} and task["thumbnail_url"] == ""
        assert task["task_error"] == {"message": ""}
        assert task["consumed_credits"] == 20
        assert task["preceding_tasks"] == 0

    @pytest.mark.parametrize(
        ("body", "fragment"),
        [
            ({"mode": "preview"}, "prompt"),
            ({"prompt": "x"}, "mode"),
            ({"mode": "sculpt", "prompt": "x"}, "mode"),
            ({"mode": "preview", "prompt": "x" * 601}, "prompt"),
            ({"mode": "preview", "prompt": "   "}, "prompt"),
            ({"mode": "preview", "prompt": "x", "target_polycount": 99}, "target_polycount"),
            ({"mode": "preview", "prompt": "x", "target_polycount": 300_001}, "target_polycount"),
            ({"mode": "preview", "prompt": "x", "topology": "hex"}, "topology"),
            ({"mode": "preview", "prompt": "x", "art_style": "anime"}, "art_style"),
            ({"mode": "preview", "prompt": "x", "symmetry_mode": "maybe"}, "symmetry_mode"),
            ({"mode": "preview", "prompt": "x", "target_formats": ["dae"]}, "target_formats"),
            ({"mode": "preview", "prompt": "x", "ai_model": "meshy-4"}, "ai_model"),
            ({"mode": "refine"}, "preview_task_id"),
        ],
    )
    async def test_bad_input_is_a_meshy_400(self, api: Api, caller: Caller, body: dict, fragment: str) -> None:
        response = await api.client.post(URL, json=body, headers=caller.headers)
        assert response.status_code == 400, response.text
        assert set(response.json()) == {"message"}
        assert fragment in response.json()["message"]

    async def test_malformed_json_is_400_not_422(self, api: Api, caller: Caller) -> None:
        response = await api.client.post(
            URL,
            content=b'{"mode": "preview", "prompt": ',
            headers={**caller.headers, "content-type": "application/json"},
        )
        assert response.status_code == 400
        assert response.json() == {"message": "Invalid JSON body"}

    async def test_non_object_body_is_400(self, api: Api, caller: Caller) -> None:
        response = await api.client.post(URL, json=[1, 2], headers=caller.headers)
        assert response.status_code == 400
        assert "message" in response.json()


class TestAuth:
    @pytest.mark.parametrize(
        "headers",
        [
            {},
            {"Authorization": "msy_not_bearer_prefixed_0000000000000000"},
            {"Authorization": "Bearer msy_unknownkey000000000000000000000000000000"},
            {"Authorization": "Bearer not-a-meshy-key"},
            {"Authorization": "Basic dXNlcjpwYXNz"},
        ],
    )
    async def test_missing_or_wrong_key_is_401(self, api: Api, headers: dict) -> None:
        for method, path in (("GET", URL), ("POST", URL), ("GET", f"{URL}/{uuid.uuid4()}")):
            response = await api.client.request(method, path, headers=headers, json={"mode": "preview", "prompt": "x"})
            assert response.status_code == 401, (method, path)
            assert response.json() == {"message": "Invalid API key"}


class TestOwnership:
    async def test_another_accounts_task_is_404_everywhere(self, api: Api, caller: Caller, settings, db) -> None:
        task_id = await create(api, caller)
        other = await make_caller(settings, db, name="other")
        for method in ("GET", "DELETE"):
            response = await api.client.request(method, f"{URL}/{task_id}", headers=other.headers)
            assert response.status_code == 404
            assert response.json() == {"message": "Task not found"}
        assert (await api.client.get(URL, headers=other.headers)).json() == []
        refine = await api.client.post(URL, json={"mode": "refine", "preview_task_id": task_id}, headers=other.headers)
        assert refine.status_code == 404
        assert (await api.client.get(f"{URL}/{task_id}", headers=caller.headers)).status_code == 200

    @pytest.mark.parametrize("bad_id", ["nope", "../../etc/passwd", "0" * 40, "e56825d8-d0d2-4afb-b326-dbd528fae3e3"])
    async def test_unknown_ids_are_404(self, api: Api, caller: Caller, bad_id: str) -> None:
        response = await api.client.get(f"{URL}/{bad_id}", headers=caller.headers)
        assert response.status_code == 404
        assert set(response.json()) == {"message"}


class TestRefineRules:
    async def test_refine_of_unfinished_preview_is_400(self, api: Api, caller: Caller) -> None:
        preview = await create(api, caller)
        response = await api.client.post(
            URL, json={"mode": "refine", "preview_task_id": preview}, headers=caller.headers
        )
        assert response.status_code == 400
        assert "not ready" in response.json()["message"].lower()

    async def test_refine_of_unknown_preview_is_404(self, api: Api, caller: Caller) -> None:
        body = {"mode": "refine", "preview_task_id": str(uuid.uuid4())}
        response = await api.client.post(URL, json=body, headers=caller.headers)
        assert response.status_code == 404


class TestList:
    async def test_bare_array_paged_and_sorted(self, api: Api, caller: Caller) -> None:
        ids = [await create(api, caller, prompt=f"thing {i}") for i in range(5)]
        newest_first = (await api.client.get(URL, headers=caller.headers)).json()
        assert isinstance(newest_first, list)
        assert [t["id"] for t in newest_first] == ids[::-1]
        oldest_first = (await api.client.get(URL, params={"sort_by": "+created_at"}, headers=caller.headers)).json()
        assert [t["id"] for t in oldest_first] == ids
        unencoded_plus = await api.client.get(f"{URL}?sort_by=+created_at", headers=caller.headers)
        assert [t["id"] for t in unencoded_plus.json()] == ids
        page2 = await api.client.get(
            URL, params={"page_num": 2, "page_size": 2, "sort_by": "+created_at"}, headers=caller.headers
        )
        assert [t["id"] for t in page2.json()] == ids[2:4]
        beyond = await api.client.get(URL, params={"page_num": 9, "page_size": 2}, headers=caller.headers)
        assert beyond.json() == []

    @pytest.mark.parametrize(
        "params", [{"page_size": 51}, {"page_size": 0}, {"page_num": 0}, {"sort_by": "name"}, {"page_num": "x"}]
    )
    async def test_bad_paging_is_400(self, api: Api, caller: Caller, params: dict) -> None:
        response = await api.client.get(URL, params=params, headers=caller.headers)
        assert response.status_code == 400
        assert set(response.json()) == {"message"}

    async def test_pending_tasks_report_their_queue_position(self, api: Api, caller: Caller) -> None:
        ids = [await create(api, caller) for _ in range(3)]
        tasks = {t["id"]: t for t in (await api.client.get(URL, headers=caller.headers)).json()}
        assert [tasks[i]["preceding_tasks"] for i in ids] == [0, 1, 2]
        single = (await api.client.get(f"{URL}/{ids[2]}", headers=caller.headers)).json()
        assert single["preceding_tasks"] == 2
        async with api.client.stream("GET", f"{URL}/{ids[2]}/stream", headers=caller.headers) as stream:
            async for line in stream.aiter_lines():
                if line.startswith("data:"):
                    assert json.loads(line[5:])["preceding_tasks"] == 2
                    break


class TestDelete:
    async def test_delete_then_404_and_refund_of_unstarted_task(self, api: Api, caller: Caller) -> None:
        task_id = await create(api, caller)
        response = await api.client.delete(f"{URL}/{task_id}", headers=caller.headers)
        assert response.status_code == 200
        assert (await api.client.get(f"{URL}/{task_id}", headers=caller.headers)).status_code == 404
        assert (await api.client.delete(f"{URL}/{task_id}", headers=caller.headers)).status_code == 404


class TestErrorsShape:
    async def test_unknown_route_and_method_are_meshy_shaped(self, api: Api, caller: Caller) -> None:
        missing = await api.client.get("/openapi/v2/nothing-here", headers=caller.headers)
        assert missing.status_code == 404 and set(missing.json()) == {"message"}
        wrong = await api.client.put(URL, headers=caller.headers)
        assert wrong.status_code == 405 and set(wrong.json()) == {"message"}


class TestCredits:
    async def test_create_charges_and_balance_reports_it(self, api: Api, caller: Caller) -> None:
        assert (await api.client.get("/openapi/v1/balance", headers=caller.headers)).json() == {"balance": 1000}
        await create(api, caller)
        await create(api, caller, ai_model="meshy-5")
        assert (await api.client.get("/openapi/v1/balance", headers=caller.headers)).json() == {"balance": 975}

    async def test_short_balance_is_402_and_creates_nothing(self, api: Api, settings, db) -> None:
        poor = await make_caller(settings, db, credits=19, name="poor")
        response = await api.client.post(URL, json={"mode": "preview", "prompt": "x"}, headers=poor.headers)
        assert response.status_code == 402
        assert set(response.json()) == {"message"}
        assert (await api.client.get(URL, headers=poor.headers)).json() == []
        assert (await api.client.get("/openapi/v1/balance", headers=poor.headers)).json() == {"balance": 19}

    async def test_deleting_an_unstarted_task_refunds_it(self, api: Api, caller: Caller) -> None:
        task_id = await create(api, caller)
        await api.client.delete(f"{URL}/{task_id}", headers=caller.headers)
        assert (await api.client.get("/openapi/v1/balance", headers=caller.headers)).json() == {"balance": 1000}


class TestHealth:
    async def test_unavailable_without_a_worker(self, api: Api) -> None:
        response = await api.client.get("/health")
        assert response.status_code == 503
        assert response.json() | {"workers": False} == response.json()
        assert response.json()["database"] is True and response.json()["redis"] is True

    async def test_ok_with_a_worker(self, api: Api, worker) -> None:
        import asyncio
        import time

        deadline = time.monotonic() + 30  # the in-process worker registers within ~0.1 s; allow a slow machine
        for _ in range(1000):
            response = await api.client.get("/health")
            if response.status_code == 200 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        assert response.status_code == 200
        assert response.json()["status"] == "ok"


class TestHostileInput:
    async def test_nul_characters_are_400(self, api: Api, caller: Caller) -> None:
        response = await api.client.post(URL, json={"mode": "preview", "prompt": "a\u0000b"}, headers=caller.headers)
        assert response.status_code == 400
        assert "NUL" in response.json()["message"]

    async def test_oversized_bodies_are_413_before_parsing(self, api: Api, caller: Caller, settings) -> None:
        settings.max_body_bytes = 1000
        body = b'{"mode": "preview", "prompt": "' + b"x" * 2000 + b'"}'
        declared = await api.client.post(
            URL, content=body, headers={**caller.headers, "content-type": "application/json"}
        )
        assert declared.status_code == 413 and set(declared.json()) == {"message"}

        async def chunks():  # no Content-Length: counted while streaming
            for _ in range(4):
                yield b"x" * 500

        streamed = await api.client.post(
            URL, content=chunks(), headers={**caller.headers, "content-type": "application/json"}
        )
        assert streamed.status_code == 413
