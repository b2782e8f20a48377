"""Live workers as each one publishes itself in Redis, and admission: queue a new task, refuse it, or ask for a retry.

Every worker writes its state (pool, GPU, VRAM budget, resident models, running jobs) under
`<queue>:worker:<id>` with a short expiry and refreshes it every few seconds, so a worker that died drops out by
itself; `<queue>:workers` lists the ids. The API reads them to admit creates and to show them in
`GET /openapi/v1/models`.

Admission, per create, for the runner its `ai_model` maps to (`admission()`):
- no live worker serves the pool: queue it, as always (the task waits for a worker; the models listing says so);
- live workers serve the pool but none has the budget for the runner's peak VRAM: 400, at once, whatever the load;
- every worker that could run it has `bound` jobs or more queued in the pool: 503 with `Retry-After`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from redis.asyncio import Redis

from app.core.errors import AppError, BadRequest
from app.core.queue import queue_for_pool

STATE_TTL_S = 10  # a worker refreshes every PUBLISH_INTERVAL_S; three missed refreshes and it is gone
PUBLISH_INTERVAL_S = 3.0
DEFAULT_RETRY_AFTER_S = 30  # before any worker has finished a job to time


@dataclass(frozen=True)
class WorkerState:
    """One worker as it publishes itself (JSON in Redis; the models listing shows it as is)."""

    worker_id: str
    pool: str
    budget_gb: float
    max_jobs: int = 1
    gpu: int | None = None  # MESHFOUNDRY_GPU; None for a CPU worker
    device: str | None = None  # the GPU's name, when the worker measured it
    total_gb: float | None = None  # the GPU's memory, when measured
    resident: list[dict[str, Any]] = field(default_factory=list)  # {"runner", "vram_gb", "jobs"}, LRU first
    running: list[dict[str, Any]] = field(default_factory=list)  # {"task_id", "runner", "started_at"} (epoch ms)
    mean_job_s: float | None = None  # recent jobs' mean duration, for Retry-After
    counters: dict[str, int] = field(default_factory=dict)  # loads, evictions, oom_retries, oom_failures, ...
    host: str = ""
    pid: int = 0
    updated_at: int = 0  # epoch ms

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> WorkerState:
        data = json.loads(raw)
        known = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        return cls(**known)


def workers_key(base: str) -> str:
    return f"{base}:workers"


def worker_key(base: str, worker_id: str) -> str:
    return f"{base}:worker:{worker_id}"


async def publish(redis: Redis, base: str, state: WorkerState, ttl_s: int = STATE_TTL_S) -> None:
    """Write (or refresh) a worker's state, expiring `ttl_s` from now."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set(worker_key(base, state.worker_id), state.to_json(), ex=ttl_s)
        pipe.sadd(workers_key(base), state.worker_id)
        await pipe.execute()


async def withdraw(redis: Redis, base: str, worker_id: str) -> None:
    """Remove a worker's state (a clean shutdown; a crash is covered by the expiry)."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(worker_key(base, worker_id))
        pipe.srem(workers_key(base), worker_id)
        await pipe.execute()


async def live_workers(redis: Redis, base: str) -> list[WorkerState]:
    """Every worker whose state has not expired, sorted by pool and id; expired ids are pruned from the list."""
    ids = sorted(v.decode() if isinstance(v, bytes) else str(v) for v in await redis.smembers(workers_key(base)))
    if not ids:
        return []
    values = await redis.mget([worker_key(base, i) for i in ids])
    gone = [i for i, v in zip(ids, values, strict=True) if v is None]
    if gone:
        await redis.srem(workers_key(base), *gone)
    states = [WorkerState.from_json(v) for v in values if v is not None]
    return sorted(states, key=lambda s: (s.pool, s.worker_id))


class NoWorkerFits(BadRequest):
    message = "No worker of this server has enough GPU memory for this ai_model"


class WorkersSaturated(AppError):
    status_code = 503
    message = "Server busy: too many tasks are queued for this ai_model. Retry later."

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.headers = {"Retry-After": str(retry_after_s)}  # app/api/errors.py sends them with the 503


@dataclass(frozen=True)
class Verdict:
    """`admit`, or `never` (no live worker could fit it) / `busy` (all that could are saturated) with a message."""

    outcome: str
    message: str = ""
    retry_after_s: int = 0


def admission(
    workers: Sequence[WorkerState], *, pool: str, need_gb: float, queued: int, bound: int, label: str
) -> Verdict:
    """The admission rule of the module docstring; `label` names the model in the messages."""
    serving = [w for w in workers if w.pool == pool]
    if not serving:
        return Verdict("admit")
    able = [w for w in serving if need_gb <= w.budget_gb + 1e-6]
    if not able:
        largest = max(w.budget_gb for w in serving)
        return Verdict(
            "never",
            f"ai_model {label!r} needs {need_gb:g} GB of GPU memory; the largest GPU budget among this server's "
            f"{len(serving)} {pool!r} worker(s) is {largest:g} GB. Choose another ai_model.",
        )
    if bound > 0 and queued >= bound * len(able):
        times = [w.mean_job_s for w in able if w.mean_job_s]
        retry = math.ceil(min(times)) if times else DEFAULT_RETRY_AFTER_S
        retry = max(1, min(600, retry))
        return Verdict(
            "busy",
            f"Server busy: {queued} tasks are queued for the {len(able)} worker(s) that can run ai_model {label!r}. "
            f"Retry in {retry} s.",
            retry,
        )
    return Verdict("admit")


async def admit(redis: Redis, base: str, *, pool: str, need_gb: float, bound: int, label: str) -> None:
    """Raise NoWorkerFits or WorkersSaturated when `admission()` refuses a new task for this pool and VRAM need."""
    workers = await live_workers(redis, base)
    queued = int(await redis.zcard(queue_for_pool(base, pool))) if bound > 0 and workers else 0
    verdict = admission(workers, pool=pool, need_gb=need_gb, queued=queued, bound=bound, label=label)
    if verdict.outcome == "never":
        raise NoWorkerFits(verdict.message)
    if verdict.outcome == "busy":
        raise WorkersSaturated(verdict.message, verdict.retry_after_s)
