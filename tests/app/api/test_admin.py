"""Operator endpoints: off without ADMIN_TOKEN, token-checked, and they manage keys, credits and plans."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from tests.conftest import Api

pytestmark = pytest.mark.asyncio
ADMIN = {"Authorization": "Bearer admin-secret-for-tests"}


@pytest.fixture
def settings(settings):  # type: ignore[no-untyped-def]
    settings.admin_token = SecretStr("admin-secret-for-tests")
    return settings


async def test_admin_flow(api: Api) -> None:
    created = await api.client.post(
        "/admin/accounts", json={"name": "acme", "credits": 40, "plan": "studio"}, headers=ADMIN
    )
    assert created.status_code == 201
    body = created.json()
    key, account_id = body["key"], body["account"]["id"]
    user = {"Authorization": f"Bearer {key}"}
    assert (await api.client.get("/openapi/v1/balance", headers=user)).json() == {"balance": 40}

    granted = await api.client.post(f"/admin/accounts/{account_id}/credits", json={"amount": 60}, headers=ADMIN)
    assert granted.json()["balance"] == 100
    negative = await api.client.post(f"/admin/accounts/{account_id}/credits", json={"amount": -1000}, headers=ADMIN)
    assert negative.status_code == 400

    plan = await api.client.put(
        "/admin/plans/tiny", json={"requests_per_second": 1, "max_concurrent_tasks": 1}, headers=ADMIN
    )
    assert plan.status_code == 200
    assigned = await api.client.put(f"/admin/accounts/{account_id}/plan", json={"plan": "tiny"}, headers=ADMIN)
    assert assigned.json()["plan"] == "tiny"
    unknown = await api.client.put(f"/admin/accounts/{account_id}/plan", json={"plan": "nope"}, headers=ADMIN)
    assert unknown.status_code == 400

    second = (await api.client.post(f"/admin/accounts/{account_id}/keys", json={"name": "ci"}, headers=ADMIN)).json()
    keys = (await api.client.get(f"/admin/accounts/{account_id}/keys", headers=ADMIN)).json()
    assert len(keys) == 2 and all("key" not in k and "key_hash" not in k for k in keys)
    revoked = await api.client.post(f"/admin/keys/{second['key_id']}/revoke", headers=ADMIN)
    assert revoked.json()["revoked_at"]
    assert (
        await api.client.get("/openapi/v1/balance", headers={"Authorization": f"Bearer {second['key']}"})
    ).status_code == 401


async def test_wrong_or_missing_token_is_401(api: Api) -> None:
    assert (await api.client.get("/admin/accounts")).status_code == 401
    assert (await api.client.get("/admin/accounts", headers={"Authorization": "Bearer nope"})).status_code == 401


async def test_api_keys_are_not_admin_tokens(api: Api, caller) -> None:
    assert (await api.client.get("/admin/accounts", headers=caller.headers)).status_code == 401


class TestDisabledByDefault:
    @pytest.fixture
    def settings(self, settings):  # type: ignore[no-untyped-def]
        settings.admin_token = None
        return settings

    async def test_admin_routes_do_not_exist_without_a_token(self, api: Api) -> None:
        response = await api.client.get("/admin/accounts", headers=ADMIN)
        assert response.status_code == 404
        assert set(response.json()) == {"message"}


async def test_out_of_range_numbers_are_400_not_500(api: Api) -> None:
    too_big = await api.client.post("/admin/accounts", json={"name": "x", "credits": 2**40}, headers=ADMIN)
    assert too_big.status_code == 400
    account_id = (await api.client.post("/admin/accounts", json={"name": "y"}, headers=ADMIN)).json()["account"]["id"]
    grant = await api.client.post(f"/admin/accounts/{account_id}/credits", json={"amount": 2**53}, headers=ADMIN)
    assert grant.status_code == 400
    plan = await api.client.put(
        "/admin/plans/p",
        json={"requests_per_second": 1, "max_concurrent_tasks": 1, "priority": -(2**80)},
        headers=ADMIN,
    )
    assert plan.status_code == 400
    long_name = await api.client.put(
        "/admin/plans/" + "n" * 41, json={"requests_per_second": 1, "max_concurrent_tasks": 1}, headers=ADMIN
    )
    assert long_name.status_code == 400
