"""Real tasks on a real worker, delivered to real receivers on loopback: signed, in order, retried, disabled."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from sqlalchemy import func, select
from standardwebhooks import Webhook as Verifier
from standardwebhooks import WebhookVerificationError

from app.webhooks import service as webhook_service
from app.webhooks.models import WebhookDelivery
from tests.app.webhooks.conftest import Received, Receiver, create_preview, eventually, register
from tests.conftest import Api, Caller

pytestmark = pytest.mark.asyncio
RANK = {"PENDING": 0, "IN_PROGRESS": 1, "SUCCEEDED": 2, "FAILED": 2}


def state(task: dict[str, Any]) -> tuple[int, int]:
    return RANK[task["status"]], task["progress"]


async def succeeded_delivered(receiver: Receiver) -> bool:
    return any(r.task["status"] == "SUCCEEDED" for r in receiver.accepted)


async def webhook(api: Api, caller: Caller, webhook_id: str) -> dict[str, Any]:
    response = await api.client.get(f"/openapi/v1/webhooks/{webhook_id}", headers=caller.headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_changes_arrive_signed_in_order_and_the_last_equals_get(
    api: Api, caller: Caller, worker, receiver: Receiver
) -> None:  # type: ignore[no-untyped-def]
    hook = await register(api, caller, receiver.url)
    task_id = await create_preview(api, caller)
    await eventually(lambda: succeeded_delivered(receiver), "the SUCCEEDED change")

    verifier = Verifier(hook["secret"])  # the standardwebhooks package, not our signer
    tasks = [verifier.verify(r.body, r.headers) for r in receiver.requests]
    assert all(r.headers["content-type"] == "application/json" for r in receiver.requests)
    assert {t["id"] for t in tasks} == {task_id}
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == len(tasks), "one message per change"
    assert [state(t) for t in tasks] == sorted(state(t) for t in tasks), "in the order of the changes"
    assert tasks[0]["status"] == "IN_PROGRESS" and tasks[-1]["status"] == "SUCCEEDED"
    assert len(tasks) >= 3, "the start, progress, the end"

    got = await api.client.get(f"/openapi/v2/text-to-3d/{task_id}", headers=caller.headers)
    assert tasks[-1] == got.json(), "the payload is the task object exactly as GET returns it"
    assert tasks[-1]["model_urls"]["glb"].startswith(api.base_url)

    forged = receiver.requests[-1]
    with pytest.raises(WebhookVerificationError):
        verifier.verify(forged.body.replace(b'"SUCCEEDED"', b'"FAILED"'), forged.headers)
    with pytest.raises(WebhookVerificationError):
        Verifier("whsec_" + "A" * 43 + "=").verify(forged.body, forged.headers)
    shown = await webhook(api, caller, hook["id"])
    assert shown["last_success_at"] > 0 and shown["consecutive_failures"] == 0 and shown["last_errors"] == []


async def test_a_500_is_retried_with_the_same_message_until_delivered(
    api: Api, caller: Caller, worker, receiver: Receiver
) -> None:  # type: ignore[no-untyped-def]
    failed: list[Received] = []

    def answer(request: Received) -> int:
        if request.task["status"] == "SUCCEEDED" and not failed:
            failed.append(request)
            return 500
        return 200

    receiver.answer = answer
    hook = await register(api, caller, receiver.url)
    task_id = await create_preview(api, caller)
    await eventually(lambda: succeeded_delivered(receiver), "the retried SUCCEEDED change")

    finals = [r for r in receiver.requests if r.task["status"] == "SUCCEEDED"]
    assert [r.answered for r in finals] == [500, 200]
    assert finals[0].headers["webhook-id"] == finals[1].headers["webhook-id"], "a retry is the same message"
    assert finals[0].body == finals[1].body
    for request in finals:
        Verifier(hook["secret"]).verify(request.body, request.headers)

    async def recorded() -> dict[str, Any] | None:  # the worker settles an attempt once it has the answer
        shown = await webhook(api, caller, hook["id"])
        return shown if shown["consecutive_failures"] == 0 else None

    shown = await eventually(recorded, "the retry to be recorded as delivered")
    assert shown["enabled"] and shown["last_success_at"] > 0
    [error] = shown["last_errors"]
    assert error["status_code"] == 500 and error["task_id"] == task_id and error["attempt"] == 1
    assert error["message"] == "HTTP 500"


async def test_after_a_failure_the_receiver_gets_the_newest_state_never_an_older_one(
    api: Api, caller: Caller, worker, receiver: Receiver
) -> None:  # type: ignore[no-untyped-def]
    receiver.answer = lambda request: 503 if not receiver.requests else 200  # the first change fails
    await register(api, caller, receiver.url)
    await create_preview(api, caller)
    await eventually(lambda: succeeded_delivered(receiver), "the SUCCEEDED change")

    assert receiver.requests[0].answered == 503
    accepted = [state(r.task) for r in receiver.accepted]
    assert accepted == sorted(accepted) and accepted[-1][0] == RANK["SUCCEEDED"]
    assert state(receiver.requests[0].task) <= accepted[0]


async def test_repeated_failures_disable_the_webhook_and_show_why(
    api: Api, caller: Caller, worker, receiver: Receiver, db
) -> None:  # type: ignore[no-untyped-def]
    receiver.answer = lambda _: 500
    hook = await register(api, caller, receiver.url)  # WEBHOOK_DISABLE_AFTER_FAILURES=3 in these tests
    await create_preview(api, caller)

    async def disabled() -> dict[str, Any] | None:
        shown = await webhook(api, caller, hook["id"])
        return None if shown["enabled"] else shown

    shown = await eventually(disabled, "the webhook to be disabled")
    assert shown["disabled_reason"] == "3 failed attempts in a row" and shown["disabled_at"] > 0
    assert [e["status_code"] for e in shown["last_errors"]] == [500, 500, 500]
    assert len(receiver.requests) == 3

    async def left() -> int:
        # A change whose transaction read the webhook as enabled just before it was disabled may commit its row
        # after the disabling dropped the others: never delivered (claims skip disabled webhooks), and swept.
        async with db() as session, session.begin():
            await webhook_service.sweep_disabled(session)
        async with db() as session:
            return int(await session.scalar(select(func.count()).select_from(WebhookDelivery)) or 0)

    assert await left() == 0, "a disabled webhook's undelivered changes are dropped"
    await asyncio.sleep(0.5)
    assert len(receiver.requests) == 3, "nothing more is sent"
    listed = (await api.client.get("/openapi/v1/webhooks", headers=caller.headers)).json()
    assert [(w["id"], w["enabled"]) for w in listed] == [(hook["id"], False)]
    assert json.loads(receiver.requests[0].body)["id"] == shown["last_errors"][-1]["task_id"]
