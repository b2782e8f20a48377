"""A receiver that does not answer in time is a failed attempt, retried like any other."""

from __future__ import annotations

import pytest

from app.core.config import Settings
from tests.app.webhooks.conftest import Received, Receiver, create_preview, eventually, register
from tests.conftest import Api, Caller

pytestmark = pytest.mark.asyncio


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Long enough for a loaded machine's answers, short for the test; no disabling from slow answers.
    return settings.model_copy(update={"webhook_timeout_s": 3.0, "webhook_disable_after_failures": 100})


async def test_a_receiver_that_times_out_gets_the_change_again(
    api: Api, caller: Caller, worker, receiver: Receiver
) -> None:  # type: ignore[no-untyped-def]
    def delay(request: Received) -> float:  # the first SUCCEEDED delivery is answered long after the timeout
        finals = [r for r in receiver.requests if r.task["status"] == "SUCCEEDED"]
        return 30.0 if finals == [request] else 0.0

    receiver.delay = delay
    hook = await register(api, caller, receiver.url)
    task_id = await create_preview(api, caller)

    async def retried() -> list[Received]:
        return [r for r in receiver.requests if r.task["status"] == "SUCCEEDED"][1:]

    [again] = await eventually(retried, "the retry of the SUCCEEDED change")
    first = next(r for r in receiver.requests if r.task["status"] == "SUCCEEDED")
    assert again.headers["webhook-id"] == first.headers["webhook-id"]
    shown = (await api.client.get(f"/openapi/v1/webhooks/{hook['id']}", headers=caller.headers)).json()
    error = shown["last_errors"][0]  # the newest: the SUCCEEDED change is the task's last
    assert (error["task_id"], error["status_code"], error["message"]) == (task_id, None, "no answer within 3 s")

    async def recovered() -> bool:
        response = await api.client.get(f"/openapi/v1/webhooks/{hook['id']}", headers=caller.headers)
        return bool(response.json()["consecutive_failures"] == 0)

    await eventually(recovered, "the retry to be recorded as delivered")
