"""Overdue tasks end FAILED with a timeout and a refund: by the reaper's deadline pass, or by arq's job timeout."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta

import pytest
from arq.connections import create_pool
from arq.worker import Worker

from app.core.clock import utcnow
from app.core.queue import redis_settings
from app.tasks.models import Task
from billing.models import Account
from inference.jobs.generate_model import generate_model
from inference.jobs.reap_tasks import reap_tasks
from tests.conftest import Api, Caller, make_caller
from tests.inference.jobs import job_context

URL = "/openapi/v2/text-to-3d"
# Spelled out, not imported: the public shape is what is under test (Meshy adds doc_url wherever there is a code).
TIMED_OUT = {
    "type": "timeout",
    "code": "timeout",
    "message": "The task timed out.",
    "doc_url": "https://docs.meshy.ai/en/api/errors#timeout",
}


async def create(api: Api, caller: Caller, prompt: str = "a cup") -> str:
    answer = await api.client.post(URL, json={"mode": "preview", "prompt": prompt, "seed": 1}, headers=caller.headers)
    assert answer.status_code == 202, answer.text
    return answer.json()["result"]


async def get(api: Api, caller: Caller, task_id: str) -> dict:
    answer = await api.client.get(f"{URL}/{task_id}", headers=caller.headers)
    assert answer.status_code == 200, answer.text
    return answer.json()


async def balance(db, caller: Caller) -> int:  # type: ignore[no-untyped-def]
    async with db() as session:
        return (await session.get(Account, caller.account_id)).balance


async def set_running(db, task_id: str, *, deadline_in_s: float) -> None:  # type: ignore[no-untyped-def]
    """IN_PROGRESS at attempt 1 with a fresh heartbeat, as a live worker leaves it; the deadline relative to now."""
    now = utcnow()
    async with db() as session, session.begin():
        row = await session.get(Task, uuid.UUID(task_id))
        row.status, row.attempts, row.started_at = "IN_PROGRESS", 1, now
        row.heartbeat_at, row.deadline_at = now, now + timedelta(seconds=deadline_in_s)


@pytest.mark.asyncio
async def test_reaper_fails_an_overdue_task_and_refunds_it(api: Api, caller: Caller, settings, db) -> None:  # type: ignore[no-untyped-def]
    overdue = await create(api, caller)
    other = await make_caller(settings, db, name="other")
    on_time = await create(api, other, prompt="a robot")
    assert await balance(db, caller) == 980  # charged; no worker runs, so both stay PENDING until arranged below
    await set_running(db, overdue, deadline_in_s=-5)
    await set_running(db, on_time, deadline_in_s=3600)

    redis = await create_pool(redis_settings(settings.redis_url))
    try:
        job = job_context(settings, db)
        counts = await reap_tasks({"job": job, "redis": redis})
    finally:
        await redis.aclose()
    assert counts == {"requeued": 0, "failed": 1, "enqueued": 0}

    task = await get(api, caller, overdue)
    assert task["status"] == "FAILED"
    assert task["task_error"] == TIMED_OUT
    assert task["consumed_credits"] == 0
    assert await balance(db, caller) == 1000

    # A deadline still ahead with a live heartbeat: not the reaper's business.
    task = await get(api, other, on_time)
    assert task["status"] == "IN_PROGRESS"
    assert task["task_error"] == {"message": ""}
    assert task["consumed_credits"] == 20
    assert await balance(db, other) == 980


@pytest.mark.asyncio
@pytest.mark.slow
async def test_arq_job_timeout_fails_the_running_task_with_a_refund(api: Api, caller: Caller, settings, db) -> None:  # type: ignore[no-untyped-def]
    """arq cancels the job at its timeout (JOB_TIMEOUT_S + 30 s of grace); the job, past its deadline, fails the task.

    worker_options reads job_timeout_s when it builds the arq function (timeout = job_timeout_s + 30, so 31 s here);
    the claim reads it to set deadline_at = claim time + 1 s; startup reads procedural_step_delay_s when it builds the
    runners. Ten steps of 5 s keep the runner busy well past arq's 31 s, so the cancel lands ~30 s after the
    deadline: `_release` then always fails the task and never requeues it. The worker's own reaper makes one pass
    at startup and, with a long interval, no other, so only arq's timeout can end this task.
    """
    from inference.worker import worker_options  # the runner stack is heavy; only worker tests pay for it

    settings.job_timeout_s = 1
    settings.procedural_step_delay_s = 5.0
    settings.reaper_interval_s = 3600
    options = worker_options(settings, "default")
    options["handle_signals"] = False
    worker = Worker(**options)
    running = asyncio.create_task(worker.async_run())
    try:
        task_id = await create(api, caller)
        deadline = time.monotonic() + 60
        task = await get(api, caller, task_id)
        while task["status"] not in ("SUCCEEDED", "FAILED") and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            task = await get(api, caller, task_id)
        assert task["status"] == "FAILED", task
        assert task["task_error"] == TIMED_OUT
        assert task["consumed_credits"] == 0
        assert await balance(db, caller) == 1000
        async with db() as session:
            row = await session.get(Task, uuid.UUID(task_id))
        assert row.attempts == 1
        assert row.deadline_at - row.started_at == timedelta(seconds=1)  # the claim's deadline: job_timeout_s
        # not before arq's timeout, which starts a few ms before the claim stamps started_at (CI saw 30.9997 s)
        assert row.finished_at - row.started_at >= timedelta(seconds=30.9)
        # arq counts a job it timed out as failed; a job that returned (reaped, superseded) would count as complete.
        while worker.jobs_failed == 0 and time.monotonic() < deadline + 10:  # noqa: ASYNC110 (arq has no event)
            await asyncio.sleep(0.05)
        assert (worker.jobs_failed, worker.jobs_complete) == (1, 0)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await worker.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("status", ["SUCCEEDED", "FAILED"])
async def test_a_job_for_a_finished_task_is_skipped(api: Api, caller: Caller, settings, db, status: str) -> None:  # type: ignore[no-untyped-def]
    task_id = await create(api, caller)
    finished = utcnow()
    async with db() as session, session.begin():
        row = await session.get(Task, uuid.UUID(task_id))
        row.status, row.attempts, row.progress, row.finished_at = status, 1, 100, finished
    before = await get(api, caller, task_id)

    job = job_context(settings, db)
    assert await generate_model({"job": job}, task_id) == "skipped"

    assert await get(api, caller, task_id) == before
    async with db() as session:
        row = await session.get(Task, uuid.UUID(task_id))
    assert (row.status, row.attempts, row.progress, row.finished_at) == (status, 1, 100, finished)
    assert row.heartbeat_at is None and row.deadline_at is None
