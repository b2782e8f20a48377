"""Browser access: CORS per origin (off by default), stream tokens for EventSource, Last-Event-ID resumption."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import jwt
import pytest

from app.api.tokens import issue
from tests.conftest import Api, Caller, make_caller

pytestmark = pytest.mark.asyncio
URL = "/openapi/v2/text-to-3d"
ORIGIN = "https://app.example.com"


async def create(api: Api, caller: Caller) -> str:
    body = {"mode": "preview", "prompt": "a teapot"}
    return (await api.client.post(URL, json=body, headers=caller.headers)).json()["result"]


async def sse(api: Api, url: str, headers: dict | None = None) -> tuple[int, list[tuple[str, str, str]]]:
    """(status, [(event, id, data)]) until the server closes; reads at most 3 events."""
    events: list[tuple[str, str, str]] = []
    async with api.client.stream("GET", url, headers=headers or {}) as response:
        current: dict[str, str] = {}
        async for line in response.aiter_lines():
            if not line:
                if "data" in current:
                    events.append((current.get("event", "message"), current.get("id", ""), current["data"]))
                    if len(events) >= 3:
                        break
                current = {}
            elif not line.startswith(":"):
                field, _, value = line.partition(":")
                current[field] = value.strip()
        return response.status_code, events


class TestCors:
    async def test_off_by_default(self, api: Api, caller: Caller) -> None:
        response = await api.client.get(URL, headers={**caller.headers, "Origin": ORIGIN})
        assert "access-control-allow-origin" not in response.headers
        preflight = await api.client.options(URL, headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"})
        assert "access-control-allow-origin" not in preflight.headers

    class TestOpened:
        @pytest.fixture
        def settings(self, settings):  # type: ignore[no-untyped-def]
            settings.cors_allow_origins = [ORIGIN]
            return settings

        async def test_allowed_origin_gets_headers_on_api_and_assets(self, api: Api, caller: Caller) -> None:
            preflight = await api.client.options(
                URL,
                headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                         "Access-Control-Request-Headers": "authorization,content-type,idempotency-key"},
            )  # fmt: skip
            assert preflight.status_code == 200
            assert preflight.headers["access-control-allow-origin"] == ORIGIN
            listed = await api.client.get(URL, headers={**caller.headers, "Origin": ORIGIN})
            assert listed.headers["access-control-allow-origin"] == ORIGIN
            asset = await api.client.get(
                f"/assets/{uuid.uuid4()}/model.glb?Expires=1&Signature=x", headers={"Origin": ORIGIN}
            )
            assert asset.headers["access-control-allow-origin"] == ORIGIN

        async def test_other_origins_get_nothing(self, api: Api, caller: Caller) -> None:
            response = await api.client.get(URL, headers={**caller.headers, "Origin": "https://evil.example"})
            assert "access-control-allow-origin" not in response.headers


class TestStreamTokens:
    async def test_token_opens_the_stream_without_a_header(self, api: Api, caller: Caller) -> None:
        task_id = await create(api, caller)
        issued = await api.client.post("/openapi/v1/stream-tokens", json={"task_id": task_id}, headers=caller.headers)
        assert issued.status_code == 200
        token = issued.json()["token"]
        assert issued.json()["expires_at"] > time.time() * 1000
        status, events = await sse(api, f"{URL}/{task_id}/stream?token={token}")
        assert status == 200
        assert events[0][0] == "message" and json.loads(events[0][2])["id"] == task_id

    async def test_account_wide_token_works_for_any_own_task(self, api: Api, caller: Caller) -> None:
        task_id = await create(api, caller)
        token = (await api.client.post("/openapi/v1/stream-tokens", headers=caller.headers)).json()["token"]
        _, events = await sse(api, f"{URL}/{task_id}/stream?token={token}")
        assert events[0][0] == "message"

    async def test_bad_tokens_get_an_error_event(self, api: Api, caller: Caller, settings, db) -> None:
        task_id = await create(api, caller)
        other_task = await create(api, caller)
        scoped = (
            await api.client.post("/openapi/v1/stream-tokens", json={"task_id": other_task}, headers=caller.headers)
        ).json()["token"]
        expired = jwt.encode(
            {
                "sub": str(caller.account_id),
                "key": str(uuid.uuid4()),
                "aud": "meshfoundry:stream",
                "exp": int(time.time()) - 5,
            },  # fmt: skip
            __import__("hashlib").sha256(b"stream-token:" + settings.secret()).digest(),
            algorithm="HS256",
        )
        forged, _ = issue(
            b"another server's secret", account_id=caller.account_id, key_id=uuid.uuid4(), task_id=None, ttl_s=60
        )
        for token, message in ((scoped, "not valid for this task"), (expired, "expired"), (forged, "Invalid"),
                               ("garbage", "Invalid"), (scoped[:-2] + "xx", "Invalid")):  # fmt: skip
            status, events = await sse(api, f"{URL}/{task_id}/stream?token={token}")
            assert status == 200
            assert events[0][0] == "error", token
            error = json.loads(events[0][2])
            assert error["status_code"] == 401 and message in error["message"]

    async def test_another_accounts_task_stays_hidden(self, api: Api, caller: Caller, settings, db) -> None:
        other = await make_caller(settings, db, name="other")
        foreign_task = await create(api, other)
        token = (await api.client.post("/openapi/v1/stream-tokens", headers=caller.headers)).json()["token"]
        _, events = await sse(api, f"{URL}/{foreign_task}/stream?token={token}")
        assert events == [("error", "", '{"status_code":404,"message":"Task not found"}')]
        refused = await api.client.post(
            "/openapi/v1/stream-tokens", json={"task_id": foreign_task}, headers=caller.headers
        )
        assert refused.status_code == 404

    async def test_tokens_never_work_on_other_routes(self, api: Api, caller: Caller) -> None:
        task_id = await create(api, caller)
        token = (await api.client.post("/openapi/v1/stream-tokens", headers=caller.headers)).json()["token"]
        routes = [
            ("GET", f"{URL}/{task_id}?token={token}"),
            ("GET", f"{URL}?token={token}"),
            ("DELETE", f"{URL}/{task_id}?token={token}"),
            ("GET", f"/openapi/v1/balance?token={token}"),
        ]
        for method, path in routes:
            assert (await api.client.request(method, path)).status_code == 401
        as_bearer = await api.client.get(f"{URL}/{task_id}", headers={"Authorization": f"Bearer {token}"})
        assert as_bearer.status_code == 401

    async def test_revoking_the_key_ends_its_tokens(self, api: Api, caller: Caller, db) -> None:
        from billing import service as billing_service

        task_id = await create(api, caller)
        token = (await api.client.post("/openapi/v1/stream-tokens", headers=caller.headers)).json()["token"]
        async with db() as session, session.begin():
            keys = await billing_service.list_keys(session, account_id=caller.account_id)
            await billing_service.revoke_key(session, key_id=keys[0].id)
        _, events = await sse(api, f"{URL}/{task_id}/stream?token={token}")
        assert events[0][0] == "error" and json.loads(events[0][2])["status_code"] == 401

    async def test_ttl_is_bounded(self, api: Api, caller: Caller) -> None:
        response = await api.client.post(
            "/openapi/v1/stream-tokens", json={"ttl_seconds": 86_400}, headers=caller.headers
        )
        assert response.status_code == 400


class TestLastEventId:
    async def test_events_carry_ids_and_a_finished_reconnect_gets_204(self, api: Api, caller: Caller, worker) -> None:
        task_id = await create(api, caller)
        deadline = time.monotonic() + 60
        while (await api.client.get(f"{URL}/{task_id}", headers=caller.headers)).json()["status"] != "SUCCEEDED":
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        status, events = await sse(api, f"{URL}/{task_id}/stream", caller.headers)
        assert status == 200 and events[-1][1] == "SUCCEEDED.100"
        again = await api.client.get(
            f"{URL}/{task_id}/stream", headers={**caller.headers, "Last-Event-ID": "SUCCEEDED.100"}
        )
        assert again.status_code == 204  # EventSource stops reconnecting
        stale = await api.client.get(
            f"{URL}/{task_id}/stream", headers={**caller.headers, "Last-Event-ID": "IN_PROGRESS.40"}
        )
        assert stale.status_code == 200 and "SUCCEEDED" in stale.text  # the terminal event is never lost
