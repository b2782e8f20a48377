"""A plan's priority moves its tasks ahead in their pool's queue: in `preceding_tasks` and in the order workers run."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest
from arq.connections import ArqRedis, create_pool

from app.core.clock import utcnow
from app.core.queue import OLDEST_SCORE, enqueue_task, queue_for_pool, redis_settings
from app.tasks.service import MAX_HEAD_START_S, queue_position
from billing import service as billing_service
from tests.conftest import Api, Caller, make_caller, unthrottle

URL = "/openapi/v2/text-to-3d"
PREVIEW = {"mode": "preview", "prompt": "a lamp", "seed": 3}


async def on_plan(db, caller: Caller, plan: str) -> Caller:  # type: ignore[no-untyped-def]
    async with db() as session, session.begin():
        await billing_service.set_plan(session, account_id=caller.account_id, plan=plan)
    return caller


async def create(api: Api, caller: Caller) -> str:
    response = await api.client.post(URL, json=PREVIEW, headers=caller.headers)
    assert response.status_code == 202, response.text
    return str(response.json()["result"])


async def get(api: Api, caller: Caller, task_id: str) -> dict:
    return (await api.client.get(f"{URL}/{task_id}", headers=caller.headers)).json()  # type: ignore[no-any-return]


@pytest.mark.asyncio
async def test_a_higher_plan_goes_ahead_of_recent_tasks(api: Api, caller: Caller, settings, db) -> None:  # type: ignore[no-untyped-def]
    studio = await on_plan(db, await make_caller(settings, db, name="studio"), "studio")  # priority 1
    pro = [await create(api, caller), await create(api, caller)]  # no worker: everything stays PENDING
    first_studio = await create(api, studio)
    assert (await get(api, studio, first_studio))["preceding_tasks"] == 0
    assert [(await get(api, caller, t))["preceding_tasks"] for t in pro] == [1, 2]
    listed = (await api.client.get(URL, params={"sort_by": "+created_at"}, headers=caller.headers)).json()
    assert [t["preceding_tasks"] for t in listed] == [1, 2]
    second_studio = await create(api, studio)  # same priority: first come, first served
    assert (await get(api, studio, second_studio))["preceding_tasks"] == 1


@pytest.mark.asyncio
async def test_workers_run_the_higher_plan_first(api: Api, caller: Caller, settings, db) -> None:  # type: ignore[no-untyped-def]
    from arq.worker import Worker

    from inference.worker import worker_options

    enterprise = await on_plan(db, await make_caller(settings, db, name="ent"), "enterprise")
    pro = [await create(api, caller) for _ in range(2)]
    ahead = await create(api, enterprise)
    options = worker_options(settings, "default")
    options.update(handle_signals=False, max_jobs=1)
    worker = Worker(**options)
    running = asyncio.create_task(worker.async_run())
    try:
        deadline = time.monotonic() + 120
        tasks: list[dict] = []
        while time.monotonic() < deadline:
            tasks = [await get(api, enterprise, ahead)] + [await get(api, caller, t) for t in pro]
            if all(t["status"] == "SUCCEEDED" for t in tasks):
                break
            await asyncio.sleep(0.2)
        assert [t["status"] for t in tasks] == ["SUCCEEDED"] * 3, tasks
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await worker.close()
    started = [t["started_at"] for t in tasks]
    assert started == sorted(started), "the enterprise task, created last, started first; then the pro tasks in order"


def test_queue_position_is_bounded() -> None:
    now = utcnow()
    assert queue_position(now, 0, 60) == now
    assert queue_position(now, 2, 60) == now - timedelta(seconds=120)
    assert queue_position(now, 10**6, 60) == now - timedelta(seconds=MAX_HEAD_START_S)
    assert queue_position(now, -1, 60) == now  # never in the future: arq would hold the job until then


@pytest.mark.asyncio
async def test_a_long_waiting_task_is_enqueued_with_a_clamped_score(settings) -> None:  # type: ignore[no-untyped-def]
    import uuid

    redis: ArqRedis = await create_pool(redis_settings(settings.redis_url))
    try:
        task_id = uuid.uuid4()
        job = await enqueue_task(redis, settings.queue_name, task_id, "default", utcnow() - timedelta(days=3))
        assert job is not None
        score = await redis.zscore(queue_for_pool(settings.queue_name, "default"), str(task_id))
        oldest = (utcnow() - OLDEST_SCORE).timestamp() * 1000
        assert oldest - 60_000 < score <= oldest + 1000
        assert await redis.pttl(f"arq:job:{task_id}") > 0  # arq kept the job: its expiry did not go negative
        assert await enqueue_task(redis, settings.queue_name, task_id, "default") is None  # job id = task id
    finally:
        await redis.aclose()


class StreamReader:
    """Follows one task stream in the background, keeping every (event, data) pair."""

    def __init__(self, api: Api, caller: Caller, task_id: str) -> None:
        self.events: list[tuple[str, dict]] = []
        self._task = asyncio.create_task(self._read(api, caller, task_id))

    async def _read(self, api: Api, caller: Caller, task_id: str) -> None:
        import json

        event = "message"
        headers = {**caller.headers, "Accept": "text/event-stream"}
        async with api.client.stream("GET", f"{URL}/{task_id}/stream", headers=headers) as response:
            async for line in response.aiter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    self.events.append((event, json.loads(line[5:])))
                    event = "message"

    def positions(self) -> list[int]:
        """The queue positions seen, consecutive repeats (keep-alives) folded."""
        seen: list[int] = []
        for event, data in self.events:
            if event == "message" and (not seen or seen[-1] != data["preceding_tasks"]):
                seen.append(data["preceding_tasks"])
        return seen

    async def wait_for(self, expected: list[int], timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while self.positions() != expected:
            assert time.monotonic() < deadline, f"positions {self.positions()}, expected {expected}"
            await asyncio.sleep(0.05)

    async def finish(self) -> None:
        await asyncio.wait_for(self._task, 15)


@pytest.mark.asyncio
async def test_a_pending_tasks_stream_follows_its_queue_position(api: Api, caller: Caller, settings, db) -> None:  # type: ignore[no-untyped-def]
    settings.sse_keepalive_s = 0.3  # keep-alives repeat the full object: they must keep the position too
    studio = await on_plan(db, await make_caller(settings, db, name="studio"), "studio")
    first, second, watched = [await create(api, caller) for _ in range(3)]
    stream = StreamReader(api, caller, watched)
    await stream.wait_for([2])
    jumper = await create(api, studio)  # a higher plan's task enters ahead
    await stream.wait_for([2, 3])
    await api.client.delete(f"{URL}/{first}", headers=caller.headers)
    await stream.wait_for([2, 3, 2])
    await api.client.delete(f"{URL}/{jumper}", headers=studio.headers)
    await stream.wait_for([2, 3, 2, 1])
    await api.client.delete(f"{URL}/{second}", headers=caller.headers)
    await stream.wait_for([2, 3, 2, 1, 0])
    await api.client.delete(f"{URL}/{watched}", headers=caller.headers)
    await stream.finish()
    assert stream.events[-1] == ("error", {"status_code": 404, "message": "Task not found"})
    assert sum(event == "message" for event, _ in stream.events) > 5  # keep-alives arrived in between


@pytest.mark.asyncio
async def test_every_list_page_gives_each_pending_task_its_exact_queue_position(
    api: Api, caller: Caller, settings, db
) -> None:  # type: ignore[no-untyped-def]
    # The list counts a page's queue positions in one pass (each PENDING row counts only back to the page's previous
    # one, then a running sum): it must give what the GET gives and what counting from scratch gives, whatever the
    # pools, statuses, sort, page size and other accounts' tasks in between.
    import random
    import uuid

    from app.tasks.models import Task

    await unthrottle(db, caller)  # some 150 reads
    other = await make_caller(settings, db, name="other")
    rng = random.Random(7)
    start = utcnow() - timedelta(hours=1)
    rows = []
    for i in range(40):
        mine = i % 3 != 0
        rows.append(
            Task(
                id=uuid.uuid4(), account_id=(caller if mine else other).account_id, type="text-to-3d-preview",
                status=rng.choice(["PENDING", "PENDING", "PENDING", "IN_PROGRESS", "SUCCEEDED"]), progress=0,
                ai_model="latest", runner="procedural", pool=rng.choice(["default", "gpu"]), params={}, seed=0,
                outputs={}, consumed_credits=0, attempts=0, created_at=start + timedelta(seconds=i),
                # queue order differs from creation order (a plan's head start), ties broken by id
                queued_at=start + timedelta(seconds=rng.randrange(15)),
            )
        )  # fmt: skip
    async with db() as session, session.begin():
        session.add_all(rows)

    def expected(task: Task) -> int:
        if task.status != "PENDING":
            return 0
        return sum(
            1
            for t in rows
            if t.status == "PENDING" and t.pool == task.pool and (t.queued_at, t.id) < (task.queued_at, task.id)
        )

    truth = {str(t.id): expected(t) for t in rows if t.account_id == caller.account_id}
    assert max(truth.values()) > 5  # the data does exercise queues
    for sort in ("-created_at", "+created_at"):
        for size in (1, 4, 7, 50):
            seen: dict[str, int] = {}
            for page_num in range(1, len(truth) // size + 2):
                params = {"page_size": size, "page_num": page_num, "sort_by": sort}
                page = (await api.client.get(URL, params=params, headers=caller.headers)).json()
                seen.update({t["id"]: t["preceding_tasks"] for t in page})
            assert seen == truth, (sort, size)
    for task_id, position in truth.items():
        assert (await get(api, caller, task_id))["preceding_tasks"] == position
