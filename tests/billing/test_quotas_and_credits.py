"""Credits, plans and quotas under concurrency: exact counts, no drift, Meshy's 402/429 shapes."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import func, select

from app.tasks.models import Task
from billing import service as billing_service
from tests.billing.conftest import Clock
from tests.conftest import Api, Caller, make_caller

pytestmark = pytest.mark.asyncio
URL = "/openapi/v2/text-to-3d"
PREVIEW = {"mode": "preview", "prompt": "a vase"}


async def use_plan(db, caller: Caller, *, rps: int, concurrency: int) -> None:
    name = f"test-{uuid.uuid4().hex[:6]}"
    async with db() as session, session.begin():
        await billing_service.upsert_plan(session, name=name, requests_per_second=rps, max_concurrent_tasks=concurrency)
        await billing_service.set_plan(session, account_id=caller.account_id, plan=name)


async def count_tasks(db, caller: Caller) -> int:
    async with db() as session:
        return (await session.execute(select(func.count()).where(Task.account_id == caller.account_id))).scalar_one()


async def fire(api: Api, caller: Caller, n: int, body: dict | None = None) -> list:
    return await asyncio.gather(*(api.client.post(URL, json=body or PREVIEW, headers=caller.headers) for _ in range(n)))


class TestCredits:
    async def test_200_parallel_creates_with_credit_for_50(self, api: Api, settings, db) -> None:
        caller = await make_caller(settings, db, credits=50 * 20, name="fifty")
        await use_plan(db, caller, rps=10_000, concurrency=10_000)
        responses = await fire(api, caller, 200)
        codes = [r.status_code for r in responses]
        assert codes.count(202) == 50
        assert codes.count(402) == 150
        assert all(r.json() == {"message": "Insufficient credits"} for r in responses if r.status_code == 402)
        assert await count_tasks(db, caller) == 50
        async with db() as session:
            assert await billing_service.balance_of(session, account_id=caller.account_id) == 0
            assert await billing_service.ledger_drift(session, account_id=caller.account_id) == 0
            charges = [e for e in await billing_service.statement(session, account_id=caller.account_id, limit=500)]
            assert sum(1 for e in charges if e.reason == "charge") == 50

    async def test_failed_task_is_refunded_once(self, api: Api, caller: Caller, db) -> None:
        from app.tasks import service as task_service

        task_id = uuid.UUID((await api.client.post(URL, json=PREVIEW, headers=caller.headers)).json()["result"])
        error = {"type": "server_error", "message": "boom"}
        async with db() as session, session.begin():
            assert await task_service.fail(session, task_id=task_id, error=error) is not None
        async with db() as session, session.begin():  # a second failure (a job run twice) changes nothing
            assert await task_service.fail(session, task_id=task_id, error=error) is None
        task = (await api.client.get(f"{URL}/{task_id}", headers=caller.headers)).json()
        assert task["status"] == "FAILED"
        assert task["consumed_credits"] == 0
        assert task["task_error"] == error
        assert (await api.client.get("/openapi/v1/balance", headers=caller.headers)).json() == {"balance": 1000}
        async with db() as session:
            assert await billing_service.ledger_drift(session, account_id=caller.account_id) == 0

    async def test_price_overrides_come_from_settings(self, api: Api, caller: Caller, settings) -> None:
        settings.credit_prices = {"text-to-3d-preview": 7}
        task_id = (await api.client.post(URL, json=PREVIEW, headers=caller.headers)).json()["result"]
        assert (await api.client.get(f"{URL}/{task_id}", headers=caller.headers)).json()["consumed_credits"] == 7
        assert (await api.client.get("/openapi/v1/balance", headers=caller.headers)).json() == {"balance": 993}


class TestConcurrencyLimit:
    async def test_200_parallel_creates_with_room_for_10(self, api: Api, caller: Caller, db) -> None:
        await use_plan(db, caller, rps=10_000, concurrency=10)
        async with db() as session, session.begin():
            await billing_service.grant(session, account_id=caller.account_id, amount=10_000)
        responses = await fire(api, caller, 200)
        codes = [r.status_code for r in responses]
        assert codes.count(202) == 10
        assert codes.count(429) == 190
        assert {r.json()["message"] for r in responses if r.status_code == 429} == {"NoMoreConcurrentTasks"}
        assert all("retry-after" not in r.headers for r in responses if r.status_code == 429)
        assert await count_tasks(db, caller) == 10
        async with db() as session:
            assert await billing_service.balance_of(session, account_id=caller.account_id) == 11_000 - 10 * 20
            assert await billing_service.ledger_drift(session, account_id=caller.account_id) == 0

    async def test_finished_tasks_free_their_slot(self, api: Api, caller: Caller, db) -> None:
        from app.tasks import service as task_service

        await use_plan(db, caller, rps=10_000, concurrency=1)
        first = (await api.client.post(URL, json=PREVIEW, headers=caller.headers)).json()["result"]
        assert (await api.client.post(URL, json=PREVIEW, headers=caller.headers)).status_code == 429
        async with db() as session, session.begin():
            await task_service.fail(session, task_id=uuid.UUID(first), error={"type": "server_error", "message": "x"})
        assert (await api.client.post(URL, json=PREVIEW, headers=caller.headers)).status_code == 202

    async def test_a_limit_lowered_below_the_queue_refuses_until_it_drains(self, api: Api, caller: Caller, db) -> None:
        # The count stops at the limit (it reads at most that many rows): past it, it still refuses; finished tasks
        # never count, however many there are.
        from app.tasks import service as task_service

        await use_plan(db, caller, rps=10_000, concurrency=10)
        ids = [r.json()["result"] for r in await fire(api, caller, 8)]
        await use_plan(db, caller, rps=10_000, concurrency=3)
        assert (await api.client.post(URL, json=PREVIEW, headers=caller.headers)).status_code == 429
        for task_id in ids[:6]:  # 2 left unfinished, 6 finished
            async with db() as session, session.begin():
                await task_service.fail(session, task_id=uuid.UUID(task_id), error={"type": "x", "message": "x"})
        assert (await api.client.post(URL, json=PREVIEW, headers=caller.headers)).status_code == 202
        assert (await api.client.post(URL, json=PREVIEW, headers=caller.headers)).status_code == 429


class TestRateLimit:
    async def test_over_the_rate_is_429_with_retry_after(self, api: Api, caller: Caller, db, window: Clock) -> None:
        await use_plan(db, caller, rps=5, concurrency=100)
        responses = await asyncio.gather(
            *(api.client.get("/openapi/v1/balance", headers=caller.headers) for _ in range(30))
        )
        limited = [r for r in responses if r.status_code == 429]
        assert len(limited) == 25
        assert {r.json()["message"] for r in limited} == {"RateLimitExceeded"}
        assert all(r.headers["retry-after"] == "1" for r in limited)
        window.now += 1  # the next second: a fresh budget
        assert (await api.client.get("/openapi/v1/balance", headers=caller.headers)).status_code == 200

    async def test_limit_is_per_account_and_shared_by_its_keys(
        self, api: Api, caller: Caller, settings, db, window: Clock
    ) -> None:
        await use_plan(db, caller, rps=4, concurrency=100)
        async with db() as session, session.begin():
            account = await session.get(__import__("billing.models", fromlist=["Account"]).Account, caller.account_id)
            second = await billing_service.issue_key(session, account=account, name="k2", secret=settings.secret())
        other = await make_caller(settings, db, name="other")
        keys = [caller.key, second.plaintext] * 5
        responses = await asyncio.gather(
            *(api.client.get("/openapi/v1/balance", headers={"Authorization": f"Bearer {k}"}) for k in keys)
        )
        assert sum(r.status_code == 429 for r in responses) == 6  # one budget of 4 for both keys, not 4 each
        assert (await api.client.get("/openapi/v1/balance", headers=other.headers)).status_code == 200


class TestKeys:
    async def test_revoked_key_is_401_at_once(self, api: Api, caller: Caller, db) -> None:
        assert (await api.client.get("/openapi/v1/balance", headers=caller.headers)).status_code == 200
        async with db() as session, session.begin():
            keys = await billing_service.list_keys(session, account_id=caller.account_id)
            await billing_service.revoke_key(session, key_id=keys[0].id)
        response = await api.client.get("/openapi/v1/balance", headers=caller.headers)
        assert response.status_code == 401
        assert response.json() == {"message": "Invalid API key"}

    async def test_keys_are_stored_only_as_keyed_hashes(self, caller: Caller, db) -> None:
        from billing.models import ApiKey

        assert caller.key.startswith("msy_") and len(caller.key) >= 40
        async with db() as session:
            rows = (await session.execute(select(ApiKey))).scalars().all()
        stored = " ".join(f"{r.key_hash} {r.prefix} {r.name}" for r in rows)
        assert caller.key not in stored and caller.key[8:] not in stored
        assert all(len(r.key_hash) == 64 for r in rows)


class TestRaces:
    async def test_delete_racing_a_failure_refunds_once_and_never_500s(self, api: Api, caller: Caller, db) -> None:
        from app.tasks import service as task_service

        await use_plan(db, caller, rps=10_000, concurrency=10_000)
        error = {"type": "server_error", "message": "boom"}
        for _ in range(15):
            task_id = (await api.client.post(URL, json=PREVIEW, headers=caller.headers)).json()["result"]

            async def fail(task_id: str = task_id) -> None:
                async with db() as session, session.begin():
                    await task_service.fail(session, task_id=uuid.UUID(task_id), error=error)

            deleted, _ = await asyncio.gather(api.client.delete(f"{URL}/{task_id}", headers=caller.headers), fail())
            assert deleted.status_code in (200, 404), deleted.text
        async with db() as session:
            assert await billing_service.balance_of(session, account_id=caller.account_id) == 1000
            assert await billing_service.ledger_drift(session, account_id=caller.account_id) == 0


async def test_rate_limit_holds_across_api_processes(api: Api, caller: Caller, settings, db, window: Clock) -> None:
    """Two API instances (their own engines, pools and Redis clients) share one account's per-second budget."""
    import httpx

    from app.api.main import create_app
    from tests.conftest import serve

    await use_plan(db, caller, rps=6, concurrency=100)
    async with serve(create_app(settings)) as base_url, httpx.AsyncClient(base_url=base_url) as other:
        calls = [c.get("/openapi/v1/balance", headers=caller.headers) for c in (api.client, other) for _ in range(8)]
        codes = [r.status_code for r in await asyncio.gather(*calls)]
    assert codes.count(429) == 10, codes  # 16 requests against one budget of 6, not 6 per instance


async def test_an_operator_override_wins_over_every_default() -> None:
    from billing.prices import price_of

    assert price_of("image-to-3d", "meshy-6", variant="textured") == 30
    assert price_of("image-to-3d", "meshy-5", variant="textured") == 15
    assert price_of("image-to-3d", "meshy-6", {"image-to-3d:meshy-6": 0}, variant="textured") == 0
    assert price_of("image-to-3d", "latest", {"image-to-3d": 7}, variant="textured") == 7
    assert price_of("text-to-image", "nano-banana-pro") == 9 and price_of("unknown-type", "x") == 0
