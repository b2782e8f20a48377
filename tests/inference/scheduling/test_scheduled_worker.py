"""The real worker (arq's Worker with our selection, against the installed arq) on a simulated 16 GB GPU.

Fake GPU models (the procedural runner under GPU runner names, sized by the registry: unirig 9 GB, partfield 4 GB,
hy-motion 26 GB) stand in for real ones; the tasks are rows in Postgres and jobs in Redis, as the API makes them.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta

import pytest
from arq.connections import create_pool

from app.core.clock import utcnow
from app.core.queue import enqueue_task, queue_for_pool, redis_settings
from app.core.workers import live_workers
from app.tasks.models import Task
from inference.gpu import GpuInfo
from inference.runners.procedural import ProceduralRunner
from inference.runtime import RunnerSet, RunnerSpec
from inference.scheduled_worker import ScheduledWorker
from tests.conftest import Caller

pytestmark = pytest.mark.asyncio
BUDGET_GB = 16.0
SIZES = {"unirig": 9.0, "partfield": 4.0, "hy-motion": 26.0}


async def queue_tasks(settings, db, caller: Caller, runners: list[tuple[str, float]]) -> list[str]:  # type: ignore[no-untyped-def]
    """PENDING preview tasks for `runners` (name, seconds ago it was queued), enqueued in the `gpu` pool."""
    ids = []
    now = utcnow()
    async with db() as session, session.begin():
        for runner, ago in runners:
            task = Task(account_id=caller.account_id, type="text-to-3d-preview", ai_model=runner, runner=runner,
                        pool="gpu", params={"mode": "preview", "prompt": "a cup", "seed": 1}, seed=1,
                        queued_at=now - timedelta(seconds=ago))  # fmt: skip
            session.add(task)
            ids.append(task)
    redis = await create_pool(redis_settings(settings.redis_url))
    try:
        for task in ids:
            await enqueue_task(redis, settings.queue_name, task.id, "gpu", task.queued_at)
    finally:
        await redis.aclose()
    return [str(t.id) for t in ids]


async def run_gpu_worker(
    settings,
    jobs: int,
    warm: tuple[str, ...],
    budget_gb: float = BUDGET_GB,  # type: ignore[no-untyped-def]
    unservable_s: float = 3600,
):
    """Run a GPU worker until it has finished `jobs` jobs; it, and its published state before it stopped."""
    from inference.worker import worker_options  # the runner stack is heavy; only worker tests pay for it

    settings.search_index_generated = False  # no search encoders to load: this is about job selection
    options = worker_options(settings, "gpu")
    options["handle_signals"] = False
    real_startup = options["on_startup"]

    async def startup(ctx: dict) -> None:
        await real_startup(ctx)
        specs = [RunnerSpec(name, ProceduralRunner, size) for name, size in SIZES.items()]
        ctx["job"].runners = runners = RunnerSet(specs, ctx["vram_budget_gb"])
        for name in warm:
            runners.cache.get(name, ProceduralRunner, SIZES[name])

    options["on_startup"] = startup
    worker = ScheduledWorker(**options, gpu=GpuInfo(0, budget_gb))
    worker.unservable_s = unservable_s
    running = asyncio.create_task(worker.async_run())
    try:
        deadline = time.monotonic() + 120
        while worker.jobs_complete + worker.jobs_failed < jobs and time.monotonic() < deadline:  # noqa: ASYNC110
            assert not running.done(), running
            await asyncio.sleep(0.05)
        # arq counts a job complete before our run_job has published the state without it: wait for that publish
        states = await live_workers(worker.pool, settings.queue_name)
        while any(s.running for s in states) and not worker.running and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            states = await live_workers(worker.pool, settings.queue_name)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        for task in worker.tasks.values():
            task.cancel()
        await asyncio.gather(*worker.tasks.values(), return_exceptions=True)
        worker.tasks.clear()
        await worker.close()
    return worker, states


async def start_order(db, ids: list[str]) -> list[str | None]:  # type: ignore[no-untyped-def]
    async with db() as session:
        rows = [await session.get(Task, uuid.UUID(i)) for i in ids]
    started = sorted((r.started_at, str(r.id)) for r in rows if r.started_at is not None)
    return [ids.index(task_id) for _, task_id in started]


@pytest.mark.parametrize(("window_s", "expected"), [(300.0, [2, 1, 3]), (0.0, [1, 2, 3])])
async def test_fit_affinity_and_the_aging_window(settings, db, caller: Caller, window_s: float, expected) -> None:  # type: ignore[no-untyped-def]
    """unirig is resident. Queue, oldest first: hy-motion (26 GB: never fits 16), partfield, unirig, partfield.

    Window 300 s: unirig first (no load), then the partfields; window 0: FIFO among what fits. hy-motion is left
    queued for a larger worker either way."""
    settings.gpu_affinity_window_s = window_s
    settings.vram_budget_gb = BUDGET_GB
    ids = await queue_tasks(settings, db, caller, [("hy-motion", 100), ("partfield", 60), ("unirig", 50),
                                                   ("partfield", 40)])  # fmt: skip
    worker, states = await run_gpu_worker(settings, jobs=3, warm=("unirig",))

    assert await start_order(db, ids) == expected
    async with db() as session:
        huge = await session.get(Task, uuid.UUID(ids[0]))
    assert huge.status == "PENDING" and huge.attempts == 0
    redis = await create_pool(redis_settings(settings.redis_url))
    try:
        assert await redis.zscore(queue_for_pool(settings.queue_name, "gpu"), ids[0]) is not None
        assert await live_workers(redis, settings.queue_name) == []  # withdrawn at close
    finally:
        await redis.aclose()
    assert worker.jobs_complete == 3
    [state] = states
    assert (state.pool, state.gpu, state.budget_gb, state.running) == ("gpu", 0, BUDGET_GB, [])
    assert {m["runner"] for m in state.resident} == {"unirig", "partfield"}  # 13 of 16 GB: nothing evicted
    assert (state.counters["loads"], state.counters["evictions"]) == (2, 0)  # the warm-up and one partfield


async def test_a_model_that_does_not_fit_beside_the_residents_evicts_the_least_recent(settings, db, caller) -> None:  # type: ignore[no-untyped-def]
    settings.vram_budget_gb = BUDGET_GB
    ids = await queue_tasks(settings, db, caller, [("unirig", 30)])
    _, states = await run_gpu_worker(settings, jobs=1, warm=("partfield", "unirig"))
    assert await start_order(db, ids) == [0]
    [state] = states
    assert [m["runner"] for m in state.resident] == ["partfield", "unirig"]  # a hit: unirig most recent

    settings.vram_budget_gb = 12.0  # a smaller card: unirig (9) and partfield (4) do not fit together
    ids = await queue_tasks(settings, db, caller, [("partfield", 20)])
    _, states = await run_gpu_worker(settings, jobs=1, warm=("unirig",), budget_gb=12.0)
    assert await start_order(db, ids) == [0]
    [state] = states
    assert [m["runner"] for m in state.resident] == ["partfield"]
    assert state.counters["evictions"] == 1


async def test_a_queued_job_no_live_worker_can_fit_is_failed_not_kept_forever(settings, db, caller) -> None:  # type: ignore[no-untyped-def]
    """Queued before any worker published its state (so admission let it in): failed once no live worker fits it."""
    settings.vram_budget_gb = BUDGET_GB
    ids = await queue_tasks(settings, db, caller, [("hy-motion", 100), ("partfield", 10)])
    await run_gpu_worker(settings, jobs=1, warm=(), unservable_s=0)
    async with db() as session:
        huge = await session.get(Task, uuid.UUID(ids[0]))
        small = await session.get(Task, uuid.UUID(ids[1]))
    assert (huge.status, huge.attempts, small.status) == ("FAILED", 0, "SUCCEEDED")
    assert huge.task_error["message"] == (
        "This model needs 26 GB of GPU memory; no worker of this server has that much (the largest budget is 16 GB)."
    )
    redis = await create_pool(redis_settings(settings.redis_url))
    try:
        assert await redis.zscore(queue_for_pool(settings.queue_name, "gpu"), ids[0]) is None
    finally:
        await redis.aclose()
