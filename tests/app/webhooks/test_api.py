"""`/openapi/v1/webhooks`: register, list, show, delete; limits, ownership and bad input in Meshy's error shape."""

from __future__ import annotations

import base64

import pytest
from sqlalchemy import select, update

from app.webhooks.models import Webhook
from billing.service import TEST_MODE_KEY
from tests.app.webhooks.conftest import register
from tests.conftest import Api, Caller, make_caller

pytestmark = pytest.mark.asyncio
URL = "/openapi/v1/webhooks"


async def test_register_list_show_delete(api: Api, caller: Caller, db) -> None:  # type: ignore[no-untyped-def]
    created = await register(api, caller, "http://127.0.0.1:9/hook")
    secret = created.pop("secret")
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32
    assert created["url"] == "http://127.0.0.1:9/hook" and created["enabled"] is True
    assert created["created_at"] > 0 and created["disabled_at"] == 0 and created["last_errors"] == []

    listed = (await api.client.get(URL, headers=caller.headers)).json()
    assert listed == [created], "the secret is shown on create only"
    assert (await api.client.get(f"{URL}/{created['id']}", headers=caller.headers)).json() == created
    async with db() as session:
        row = (await session.execute(select(Webhook))).scalar_one()
    assert secret[6:] not in str([getattr(row, c.key) for c in Webhook.__table__.columns]), "never stored"
    second = await register(api, caller, "http://127.0.0.1:9/other")
    assert second["secret"] != secret

    deleted = await api.client.delete(f"{URL}/{created['id']}", headers=caller.headers)
    assert deleted.status_code == 200
    gone = await api.client.get(f"{URL}/{created['id']}", headers=caller.headers)
    assert (gone.status_code, gone.json()) == (404, {"message": "Webhook not found"})
    assert [w["id"] for w in (await api.client.get(URL, headers=caller.headers)).json()] == [second["id"]]


async def test_another_accounts_webhook_is_a_404(api: Api, caller: Caller, settings, db) -> None:  # type: ignore[no-untyped-def]
    other = await make_caller(settings, db, name="other")
    theirs = await register(api, other, "http://127.0.0.1:9/theirs")
    for method in ("GET", "DELETE"):
        response = await api.client.request(method, f"{URL}/{theirs['id']}", headers=caller.headers)
        assert (response.status_code, response.json()) == (404, {"message": "Webhook not found"})
    assert (await api.client.get(URL, headers=caller.headers)).json() == []
    assert (await api.client.get(f"{URL}/{theirs['id']}", headers=other.headers)).status_code == 200


BAD = [
    ({}, "Missing required parameter: url"),
    ({"url": 42}, "Invalid parameter url: Input should be a valid string"),
    ({"url": "ftp://127.0.0.1/hook"}, "Invalid parameter url: webhook URLs must be https"),
    ({"url": "127.0.0.1/hook"}, "Invalid parameter url: webhook URLs must be https"),
    ({"url": "https://user:pw@127.0.0.1/hook"}, "Invalid parameter url: credentials in the URL are not supported"),
    ({"url": "https://127.0.0.1:99999/hook"}, "Invalid parameter url: malformed URL"),
    ({"url": "https://127.0.0.1/" + "a" * 2100}, "Invalid parameter url: String should have at most 2048"),
    ({"url": "https://1.1.1.1/a\u0000b"}, "Invalid parameter url: URL contains whitespace or control characters"),
    ({"url": "https://1.1.1.1/a b"}, "Invalid parameter url: URL contains whitespace or control characters"),
]


async def test_bad_input_is_a_400_in_meshys_shape(api: Api, caller: Caller) -> None:
    for body, message in BAD:
        response = await api.client.post(URL, json=body, headers=caller.headers)
        assert response.status_code == 400, body
        assert list(response.json()) == ["message"] and response.json()["message"].startswith(message), body
    long_host = await api.client.post(URL, json={"url": "https://1.1.1.1/hook"},
                                      headers={**caller.headers, "host": "h" * 2100})  # fmt: skip
    assert (long_host.status_code, long_host.json()) == (
        400, {"message": "The Host header is too long to build asset URLs from: set PUBLIC_URL"})  # fmt: skip
    malformed = await api.client.post(URL, content=b"{", headers={**caller.headers, "content-type": "application/json"})
    assert (malformed.status_code, malformed.json()) == (400, {"message": "Invalid JSON body"})


async def test_unknown_or_malformed_ids_are_a_404(api: Api, caller: Caller) -> None:
    for webhook_id in ("nope", "0199505f-9791-7973-8dca-c77cf716969c", "%20"):
        for method in ("GET", "DELETE"):
            response = await api.client.request(method, f"{URL}/{webhook_id}", headers=caller.headers)
            assert (response.status_code, response.json()) == (404, {"message": "Webhook not found"}), webhook_id


async def test_at_most_five_enabled_per_account(api: Api, caller: Caller, db) -> None:  # type: ignore[no-untyped-def]
    made = [await register(api, caller, f"http://127.0.0.1:9/{n}") for n in range(5)]
    refused = await api.client.post(URL, json={"url": "http://127.0.0.1:9/6"}, headers=caller.headers)
    assert refused.status_code == 409
    assert refused.json() == {"message": "At most 5 enabled webhooks per account: delete one first"}
    async with db() as session, session.begin():  # one was disabled after failing: it no longer counts
        await session.execute(update(Webhook).where(Webhook.id == made[0]["id"]).values(enabled=False))
    await register(api, caller, "http://127.0.0.1:9/6")
    assert len((await api.client.get(URL, headers=caller.headers)).json()) == 6


async def test_the_test_mode_key_is_answered_but_stores_nothing(api: Api, db) -> None:  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {TEST_MODE_KEY}"}
    created = await api.client.post(URL, json={"url": "http://127.0.0.1:9/hook"}, headers=headers)
    assert created.status_code == 201 and created.json()["secret"].startswith("whsec_")
    assert (await api.client.get(URL, headers=headers)).json() == []
    assert (await api.client.get(f"{URL}/{created.json()['id']}", headers=headers)).status_code == 404
    refused = await api.client.post(URL, json={"url": "ftp://x/hook"}, headers=headers)
    assert refused.status_code == 400, "the same checks as a real key"
    async with db() as session:
        assert (await session.execute(select(Webhook))).first() is None


async def test_a_key_is_required(api: Api) -> None:
    response = await api.client.get(URL)
    assert (response.status_code, response.json()) == (401, {"message": "Invalid API key"})
