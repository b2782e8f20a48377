"""Admission instead of OOM: a model no live worker can fit is refused at once (400), a pool saturated past the queue
bound answers 503 with Retry-After, and the models listing shows each worker's GPU, budget, residents and jobs."""

from __future__ import annotations

import pytest
import yaml

from app.core import workers
from app.core.registry import DEFAULT_PATH, parse_registry
from app.core.workers import WorkerState, admission
from billing.models import Account
from tests.conftest import Api, Caller, unthrottle

URL = "/openapi/v2/text-to-3d"


def gpu_worker(worker_id: str = "gpu-0", budget_gb: float = 22.5, **extra) -> WorkerState:  # type: ignore[no-untyped-def]
    return WorkerState(worker_id=worker_id, pool="gpu", budget_gb=budget_gb, gpu=0, **extra)


class TestRule:
    def test_without_live_workers_everything_is_queued(self) -> None:
        assert admission([], pool="gpu", need_gb=80, queued=10_000, bound=20, label="x").outcome == "admit"

    def test_a_model_no_live_worker_of_its_pool_can_fit_is_refused_for_good(self) -> None:
        states = [gpu_worker("a", 22.5), gpu_worker("b", 14.5), WorkerState("cpu", "default", 20)]
        verdict = admission(states, pool="gpu", need_gb=26, queued=0, bound=20, label="hy-motion")
        assert verdict.outcome == "never"
        assert "26 GB" in verdict.message and "22.5 GB" in verdict.message and "2 'gpu' worker(s)" in verdict.message

    def test_the_bound_counts_only_workers_able_to_run_the_model(self) -> None:
        states = [gpu_worker("a", 46.5, mean_job_s=40.2), gpu_worker("b", 10.5, mean_job_s=10)]
        assert admission(states, pool="gpu", need_gb=12, queued=19, bound=20, label="t").outcome == "admit"
        busy = admission(states, pool="gpu", need_gb=12, queued=20, bound=20, label="t")
        assert (busy.outcome, busy.retry_after_s) == ("busy", 41)  # only the 46.5 GB worker fits 12 GB
        assert admission(states, pool="gpu", need_gb=4, queued=39, bound=20, label="p").outcome == "admit"

    def test_bound_zero_never_saturates(self) -> None:
        assert admission([gpu_worker()], pool="gpu", need_gb=4, queued=10**6, bound=0, label="p").outcome == "admit"


@pytest.fixture
def gpu_models(api: Api) -> None:
    """The API's registry plus two local GPU models for previews: partfield (4 GB) and hy-motion (26 GB)."""
    data = yaml.safe_load(DEFAULT_PATH.read_text())
    data["tasks"]["text-to-3d-preview"].update({"small-gpu": "partfield", "huge-gpu": "hy-motion"})
    api.app.state.mf.registry = parse_registry(data)  # type: ignore[attr-defined]


async def create(api: Api, caller: Caller, ai_model: str):  # type: ignore[no-untyped-def]
    body = {"mode": "preview", "prompt": "a cup", "seed": 1, "ai_model": ai_model}
    return await api.client.post(URL, json=body, headers=caller.headers)


async def balance(db, caller: Caller) -> int:  # type: ignore[no-untyped-def]
    async with db() as session:
        return (await session.get(Account, caller.account_id)).balance


@pytest.mark.asyncio
@pytest.mark.usefixtures("gpu_models")
class TestCreate:
    async def test_queued_while_no_worker_publishes_its_state(self, api: Api, caller: Caller) -> None:
        answer = await create(api, caller, "huge-gpu")
        assert answer.status_code == 202, answer.text

    async def test_a_model_too_large_for_every_live_worker_is_refused_at_once(self, api, caller, settings, db) -> None:  # type: ignore[no-untyped-def]
        await workers.publish(api.app.state.mf.redis, settings.queue_name, gpu_worker(budget_gb=22.5))
        answer = await create(api, caller, "huge-gpu")
        assert answer.status_code == 400
        assert answer.json() == {"message": (
            "ai_model 'huge-gpu' needs 26 GB of GPU memory; the largest GPU budget among this server's 1 'gpu' "
            "worker(s) is 22.5 GB. Choose another ai_model."
        )}  # fmt: skip
        assert await balance(db, caller) == 1000  # nothing charged, no task
        assert (await api.client.get(URL, headers=caller.headers)).json() == []
        assert (await create(api, caller, "small-gpu")).status_code == 202
        assert (await create(api, caller, "latest")).status_code == 202  # the CPU pool has no published worker

    async def test_a_saturated_pool_answers_503_with_retry_after(self, api, caller, settings, db) -> None:  # type: ignore[no-untyped-def]
        await unthrottle(db, caller)
        settings.admission_queue_bound = 2
        await workers.publish(api.app.state.mf.redis, settings.queue_name, gpu_worker(mean_job_s=41.2))
        for _ in range(2):
            assert (await create(api, caller, "small-gpu")).status_code == 202
        answer = await create(api, caller, "small-gpu")
        assert answer.status_code == 503
        assert answer.headers["Retry-After"] == "42"
        assert answer.json() == {"message": (
            "Server busy: 2 tasks are queued for the 1 worker(s) that can run ai_model 'small-gpu'. Retry in 42 s."
        )}  # fmt: skip
        assert await balance(db, caller) == 1000 - 2 * 20
        # A second worker able to run it doubles the bound.
        await workers.publish(api.app.state.mf.redis, settings.queue_name, gpu_worker("gpu-1", mean_job_s=41.2))
        assert (await create(api, caller, "small-gpu")).status_code == 202

    async def test_a_worker_that_stopped_publishing_no_longer_counts(self, api, caller, settings) -> None:  # type: ignore[no-untyped-def]
        redis = api.app.state.mf.redis
        await workers.publish(redis, settings.queue_name, gpu_worker(budget_gb=22.5))
        assert (await create(api, caller, "huge-gpu")).status_code == 400
        await redis.delete(workers.worker_key(settings.queue_name, "gpu-0"))  # as its expiry would
        assert (await create(api, caller, "huge-gpu")).status_code == 202
        assert await redis.smembers(workers.workers_key(settings.queue_name)) == set()


@pytest.mark.asyncio
async def test_the_models_listing_shows_each_live_worker(api: Api, caller: Caller, settings) -> None:
    state = gpu_worker(
        device="NVIDIA GeForce RTX 4090", total_gb=23.99, max_jobs=1,
        resident=[{"runner": "partfield", "vram_gb": 4.0, "jobs": 1}, {"runner": "unirig", "vram_gb": 9.0, "jobs": 0}],
        running=[{"task_id": "0190c0de-0000-7000-8000-000000000001", "runner": "partfield", "started_at": 1_700_000}],
        mean_job_s=12.5, counters={"loads": 2, "oom_retries": 0}, host="gpu-host", pid=4242, updated_at=1_700_001,
    )  # fmt: skip
    await workers.publish(api.app.state.mf.redis, settings.queue_name, state)
    answer = await api.client.get("/openapi/v1/models", headers=caller.headers)
    assert answer.status_code == 200
    assert answer.json()["workers"] == [{
        "worker_id": "gpu-0", "pool": "gpu", "gpu": 0, "device": "NVIDIA GeForce RTX 4090", "budget_gb": 22.5,
        "total_gb": 23.99, "max_jobs": 1,
        "resident": [{"runner": "partfield", "vram_gb": 4.0, "jobs": 1},
                     {"runner": "unirig", "vram_gb": 9.0, "jobs": 0}],
        "running": [{"runner": "partfield", "started_at": 1_700_000}],  # no task ids of other accounts, no host
        "mean_job_s": 12.5, "counters": {"loads": 2, "oom_retries": 0}, "updated_at": 1_700_001,
    }]  # fmt: skip
