"""The outbox: written in the transaction of each task change, claimed in each task's order, settled by the rules."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, select, update

from app.core.assets import UrlSigner
from app.core.clock import utcnow
from app.tasks import service as task_service
from app.tasks.models import Task, TaskStatus
from app.tasks.render import AssetLinks, render_task
from app.tasks.repository import TaskRepository
from app.webhooks import service as webhook_service
from app.webhooks.models import Webhook, WebhookDelivery
from app.webhooks.service import Claimed, Policy
from tests.conftest import Caller, add_succeeded_task, make_caller

pytestmark = pytest.mark.asyncio
POLICY = Policy(retry_schedule_s=(60.0, 60.0), disable_after_failures=100, disable_after_s=86_400, timeout_s=5.0)


async def running_task(db, caller: Caller) -> uuid.UUID:  # type: ignore[no-untyped-def]
    async with db() as session, session.begin():
        task = Task(account_id=caller.account_id, type="text-to-3d-preview", status=TaskStatus.IN_PROGRESS.value,
                    ai_model="latest", runner="procedural", pool="default", params={"prompt": "a chair"}, outputs={},
                    attempts=1, started_at=utcnow(), heartbeat_at=utcnow())  # fmt: skip
        session.add(task)
    return task.id


async def add_webhook(db, caller: Caller, *, enabled: bool = True) -> uuid.UUID:  # type: ignore[no-untyped-def]
    async with db() as session, session.begin():
        registered = await webhook_service.register(
            session, account_id=caller.account_id, url="http://127.0.0.1:9/hook", base_url="http://mf.test",
            server_secret=b"secret", allow_local=True,
        )  # fmt: skip
        registered.webhook.enabled = enabled
    return registered.webhook.id


async def progress(db, task_id: uuid.UUID, value: int) -> None:  # type: ignore[no-untyped-def]
    async with db() as session, session.begin():
        assert await task_service.report_progress(session, task_id=task_id, attempt=1, progress=value)


async def outbox(db) -> list[WebhookDelivery]:  # type: ignore[no-untyped-def]
    async with db() as session:
        return list((await session.execute(select(WebhookDelivery).order_by(WebhookDelivery.id))).scalars())


async def claim(db, policy: Policy = POLICY) -> list[Claimed]:  # type: ignore[no-untyped-def]
    async with db() as session, session.begin():
        return await webhook_service.claim(session, policy=policy)


async def settle(db, claimed: Claimed, delivered: bool, policy: Policy = POLICY) -> None:  # type: ignore[no-untyped-def]
    async with db() as session, session.begin():
        await webhook_service.settle(
            session, claimed=claimed, delivered=delivered, status_code=None if delivered else 503,
            message="HTTP 503", policy=policy,
        )  # fmt: skip


class TestWriting:
    async def test_a_change_writes_one_row_per_enabled_webhook_of_the_account(self, db, caller, settings) -> None:  # type: ignore[no-untyped-def]
        task_id = await running_task(db, caller)
        enabled = await add_webhook(db, caller)
        await add_webhook(db, caller, enabled=False)
        await add_webhook(db, await make_caller(settings, db, name="other"))
        await progress(db, task_id, 40)
        rows = await outbox(db)
        assert [(r.webhook_id, r.task_id) for r in rows] == [(enabled, task_id)]
        assert rows[0].snapshot["progress"] == 40 and rows[0].snapshot["status"] == "IN_PROGRESS"
        assert rows[0].attempts == 0 and rows[0].preceding_tasks == 0

    async def test_a_rolled_back_change_leaves_no_row(self, db, caller) -> None:  # type: ignore[no-untyped-def]
        task_id = await running_task(db, caller)
        await add_webhook(db, caller)
        async with db() as session:
            await session.begin()
            assert await task_service.report_progress(session, task_id=task_id, attempt=1, progress=50)
            await session.rollback()
        assert await outbox(db) == []

    async def test_creations_are_not_sent_but_requeues_are(self, db, caller) -> None:  # type: ignore[no-untyped-def]
        task_id = await running_task(db, caller)
        await add_webhook(db, caller)
        async with db() as session, session.begin():
            task = await session.get(Task, task_id)
            assert task is not None
            await TaskRepository(session).notify(task, webhooks=False)
        assert await outbox(db) == []
        async with db() as session, session.begin():
            assert await task_service.requeue(session, task_id=task_id, attempt=1)
        rows = await outbox(db)
        assert [r.snapshot["status"] for r in rows] == ["PENDING"]

    @pytest.mark.parametrize("with_webhook", [False, True])
    async def test_progress_costs_no_extra_round_trip(self, db, caller, with_webhook: bool) -> None:  # type: ignore[no-untyped-def]
        task_id = await running_task(db, caller)
        if with_webhook:
            await add_webhook(db, caller)
        statements: list[str] = []
        engine = db.kw["bind"].sync_engine

        def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            statements.append(statement.split(None, 1)[0].upper())

        event.listen(engine, "before_cursor_execute", record)
        try:
            await progress(db, task_id, 30)
        finally:
            event.remove(engine, "before_cursor_execute", record)
        # BEGIN and COMMIT are not cursor executions: the compare-and-set UPDATE and one statement for
        # pg_notify and the outbox together, with or without a webhook.
        assert statements == ["UPDATE", "WITH"]
        assert len(await outbox(db)) == int(with_webhook)


class TestClaiming:
    async def test_a_tasks_changes_go_one_at_a_time_in_order_across_workers(self, db, caller) -> None:  # type: ignore[no-untyped-def]
        first, second = await running_task(db, caller), await running_task(db, caller)
        await add_webhook(db, caller)
        for task_id, value in ((first, 10), (first, 20), (second, 5)):
            await progress(db, task_id, value)
        async with db() as one, one.begin():  # a worker holds its claim ...
            claimed = await webhook_service.claim(one, policy=POLICY)
            assert [(c.delivery.task_id, c.delivery.snapshot["progress"]) for c in claimed] == [
                (first, 10),
                (second, 5),
            ]
            assert await claim(db) == [], "another worker neither takes those nor overtakes them"
        assert await claim(db) == [], "leased: due again only once the lease runs out"
        await settle(db, claimed[0], delivered=True)
        after = await claim(db)
        assert [(c.delivery.task_id, c.delivery.snapshot["progress"]) for c in after] == [(first, 20)]

    async def test_a_disabled_webhooks_changes_are_not_claimed(self, db, caller) -> None:  # type: ignore[no-untyped-def]
        task_id = await running_task(db, caller)
        webhook_id = await add_webhook(db, caller)
        await progress(db, task_id, 10)
        async with db() as session, session.begin():
            await session.execute(update(Webhook).where(Webhook.id == webhook_id).values(enabled=False))
        assert await claim(db) == []


class TestSettling:
    async def test_a_failure_is_retried_by_the_newest_waiting_change(self, db, caller) -> None:  # type: ignore[no-untyped-def]
        task_id = await running_task(db, caller)
        webhook_id = await add_webhook(db, caller)
        await progress(db, task_id, 10)
        [claimed] = await claim(db)
        await progress(db, task_id, 20)
        await progress(db, task_id, 30)
        await settle(db, claimed, delivered=False)
        [row] = await outbox(db)
        assert row.snapshot["progress"] == 30 and row.attempts == 1
        assert row.next_attempt_at > utcnow() + timedelta(seconds=50)
        async with db() as session:
            webhook = await session.get(Webhook, webhook_id)
        assert webhook is not None and webhook.consecutive_failures == 1 and webhook.failing_since is not None
        assert webhook.last_errors[0] | {"at": 0} == {"at": 0, "task_id": str(task_id), "attempt": 1,
                                                      "status_code": 503, "message": "HTTP 503"}  # fmt: skip

    async def test_the_last_step_gives_up_and_a_success_resets_the_count(self, db, caller) -> None:  # type: ignore[no-untyped-def]
        task_id = await running_task(db, caller)
        webhook_id = await add_webhook(db, caller)
        now_policy = Policy(retry_schedule_s=(0.0,), disable_after_failures=100, disable_after_s=86_400, timeout_s=5.0)
        await progress(db, task_id, 10)
        for _ in range(2):
            [claimed] = await claim(db, now_policy)
            await settle(db, claimed, delivered=False, policy=now_policy)
        assert await outbox(db) == [], "given up after 1 + len(schedule) attempts"
        await progress(db, task_id, 20)
        [claimed] = await claim(db, now_policy)
        await settle(db, claimed, delivered=True, policy=now_policy)
        async with db() as session:
            webhook = await session.get(Webhook, webhook_id)
        assert webhook is not None and webhook.enabled
        assert webhook.consecutive_failures == 0 and webhook.failing_since is None and webhook.last_success_at
        assert [e["attempt"] for e in webhook.last_errors] == [2, 1]
        assert webhook.last_errors[0]["message"] == "HTTP 503 (gave up)"

    async def test_a_day_of_failures_disables_and_drops_the_waiting_changes(self, db, caller) -> None:  # type: ignore[no-untyped-def]
        task_id = await running_task(db, caller)
        webhook_id = await add_webhook(db, caller)
        async with db() as session, session.begin():  # it began failing a day ago
            began = utcnow() - timedelta(days=1)
            await session.execute(
                update(Webhook).where(Webhook.id == webhook_id).values(failing_since=began, consecutive_failures=7)
            )
        await progress(db, task_id, 10)
        [claimed] = await claim(db)
        await progress(db, task_id, 20)
        await settle(db, claimed, delivered=False)
        async with db() as session:
            webhook = await session.get(Webhook, webhook_id)
            waiting = await session.scalar(select(func.count()).select_from(WebhookDelivery))
        assert webhook is not None and not webhook.enabled and webhook.disabled_at is not None
        assert webhook.disabled_reason == "no successful delivery for 24 h"
        assert waiting == 0


OUTPUTS = {
    "text-to-3d-preview": {"model": {"glb": "model.glb", "fbx": "model.fbx"}, "textures": [], "thumbnail": "p.png"},
    "text-to-image": {"images": ["image_0.png", "image_1.png"]},
    "rig": {"result": {"rigged_character_glb_url": "c.glb", "basic_animations": {"walking_glb_url": "w.glb"}}},
}


@pytest.mark.parametrize("task_type", list(OUTPUTS))
async def test_the_payload_is_the_task_object_of_that_change(db, caller, task_type: str) -> None:  # type: ignore[no-untyped-def]
    task_id = await add_succeeded_task(db, caller, task_type, OUTPUTS[task_type])
    await add_webhook(db, caller)
    async with db() as session, session.begin():
        task = await session.get(Task, uuid.UUID(task_id))
        assert task is not None
        await TaskRepository(session).notify(task)
    [claimed] = await claim(db)
    signer = UrlSigner(b"secret")
    sent = webhook_service.payload(claimed, signer=signer, public_url=None)
    expected = render_task(task, 0, AssetLinks(signer=signer, base_url="http://mf.test"))
    assert json.loads(sent) == expected
    assert "http://mf.test/assets/" in sent.decode()
