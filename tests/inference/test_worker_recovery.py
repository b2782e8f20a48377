"""A worker killed mid-job: the task still ends, retried by another worker or FAILED with a refund."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
from sqlalchemy import select

from app.tasks.models import Task
from billing.models import Account
from tests.conftest import Api, Caller
from tests.inference.jobs import job_context

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]
URL = "/openapi/v2/text-to-3d"


def start_worker(settings, **overrides: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "MESHFOUNDRY_HOME": str(settings.home),
        "MESHFOUNDRY_SECRET_KEY": settings.secret().decode(),
        "QUEUE_NAME": settings.queue_name,
        "WORKER_POLL_DELAY_S": "0.05",
        "PROCEDURAL_STEP_DELAY_S": "0.4",
        "HEARTBEAT_INTERVAL_S": "0.3",
        # 5 s: a worker that stalls (slow disk, starved CPU) must not look dead and lose its own task.
        "HEARTBEAT_STALE_S": "5",
        "REAPER_INTERVAL_S": "1",
        "PENDING_REQUEUE_S": "1",
        "LOG_LEVEL": "WARNING",
        **overrides,
    }
    return subprocess.Popen([sys.executable, "-m", "inference.worker"], env=env)


async def wait_for(api: Api, caller: Caller, task_id: str, predicate, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    task: dict = {}
    while time.monotonic() < deadline:
        task = (await api.client.get(f"{URL}/{task_id}", headers=caller.headers)).json()
        if predicate(task):
            return task
        await asyncio.sleep(0.1)
    raise AssertionError(f"condition not reached; last state {task}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


async def start_and_kill_mid_job(api: Api, caller: Caller, settings, **overrides: str) -> str:
    # This worker never needs to notice a dead one: with a long staleness its reaper cannot take its own task.
    first = start_worker(settings, **{**overrides, "HEARTBEAT_STALE_S": "600"})
    try:
        body = {"mode": "preview", "prompt": "a robot", "seed": 5}
        task_id = (await api.client.post(URL, json=body, headers=caller.headers)).json()["result"]
        await wait_for(api, caller, task_id, lambda t: t["status"] == "IN_PROGRESS" and t["progress"] > 5)
    finally:
        first.kill()  # SIGKILL: no cleanup, no goodbye
        first.wait()
    return task_id


async def finish_with_new_worker(api: Api, caller: Caller, settings, task_id: str, **overrides: str) -> dict:
    """Start a fresh worker and wait until the task ends, whatever the ending."""
    worker = start_worker(settings, **overrides)
    try:
        return await wait_for(api, caller, task_id, lambda t: t["status"] in ("SUCCEEDED", "FAILED"))
    finally:
        stop(worker)


async def test_task_is_retried_by_another_worker(api: Api, caller: Caller, settings, db) -> None:
    task_id = await start_and_kill_mid_job(api, caller, settings)
    task = await finish_with_new_worker(api, caller, settings, task_id)
    assert task["status"] == "SUCCEEDED", task["task_error"]
    assert task["consumed_credits"] == 20
    async with db() as session:
        row = (await session.execute(select(Task).where(Task.id == uuid.UUID(task_id)))).scalar_one()
        assert row.attempts == 2


async def test_exhausted_retries_fail_with_a_clear_error_and_refund(api: Api, caller: Caller, settings, db) -> None:
    task_id = await start_and_kill_mid_job(api, caller, settings, MAX_ATTEMPTS="1")
    task = await finish_with_new_worker(api, caller, settings, task_id, MAX_ATTEMPTS="1")
    assert task["status"] == "FAILED"
    assert task["task_error"]["type"] == "server_error"
    assert task["task_error"]["message"] == "The worker running this task stopped; retries are exhausted."
    assert task["consumed_credits"] == 0
    async with db() as session:
        account = await session.get(Account, caller.account_id)
        assert account.balance == 1000


async def test_lost_queue_is_rebuilt_from_postgres(api: Api, caller: Caller, settings) -> None:
    """Redis loses the job (flushed): the reaper finds the PENDING row and enqueues it again."""
    from redis.asyncio import Redis

    body = {"mode": "preview", "prompt": "a cup", "seed": 1}
    task_id = (await api.client.post(URL, json=body, headers=caller.headers)).json()["result"]
    redis = Redis.from_url(settings.redis_url)
    removed = 0
    async for key in redis.scan_iter(match=f"*{task_id}*"):
        removed += await redis.delete(key)
    removed += await redis.delete(f"{settings.queue_name}:default")
    await redis.aclose()
    assert removed >= 1
    task = await finish_with_new_worker(api, caller, settings, task_id, PROCEDURAL_STEP_DELAY_S="0")
    assert task["status"] == "SUCCEEDED"


async def test_claiming_a_task_past_its_attempts_fails_it_with_the_reapers_message(
    api: Api, caller: Caller, settings, db
) -> None:
    """The other way exhaustion is noticed: a worker, not the reaper, takes over a dead attempt. Same error, refund."""
    from datetime import timedelta

    from app.core.clock import utcnow
    from inference.jobs.generate_model import LOST_WORKER, generate_model

    body = {"mode": "preview", "prompt": "a robot", "seed": 5}
    task_id = (await api.client.post(URL, json=body, headers=caller.headers)).json()["result"]
    async with db() as session, session.begin():
        row = await session.get(Task, uuid.UUID(task_id))
        row.status, row.attempts = "IN_PROGRESS", settings.max_attempts
        row.heartbeat_at = utcnow() - timedelta(seconds=settings.heartbeat_stale_s + 60)
    job = job_context(settings, db)
    assert await generate_model({"job": job}, task_id) == "failed"
    task = (await api.client.get(f"{URL}/{task_id}", headers=caller.headers)).json()
    assert task["status"] == "FAILED"
    assert task["task_error"]["message"] == LOST_WORKER["message"]
    assert task["consumed_credits"] == 0
    async with db() as session:
        assert (await session.get(Account, caller.account_id)).balance == 1000
