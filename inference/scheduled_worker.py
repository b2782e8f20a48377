"""The arq worker with MeshFoundry's GPU job selection, publishing its state for the API.

arq 0.28's `Worker._poll_iteration` reads up to `queue_read_limit` due job ids from the pool's queue, lowest score
first, and hands them to `start_jobs`, which starts them in that order while slots are free (skipping any another
worker holds). `ScheduledWorker.start_jobs` first narrows that list to what `inference.scheduling.policy.select`
picks for this GPU: jobs it can fit, its resident models first, within the aging window. It reads each candidate's
runner from its task row (job id = task id; cached, as a task's runner never changes), its queue score, and which
candidates are already running elsewhere (arq's in-progress keys). Should selection fail, arq's own order is used.
A pool whose runners all need no VRAM (the CPU pool) keeps the queue's order, without task-row reads.

Only as many ids as there are free slots go on to arq: given more, arq's `start_jobs` waits inside the poll for a
slot to free up, and meanwhile neither heartbeats nor aborts (nor this worker's state) are processed. A job for a model
that neither this worker nor any live peer could ever fit (queued before admission could refuse it) is failed with
a refund after `UNSERVABLE_S`.

Every few seconds (and when a job starts or ends) the worker publishes its state through `app.core.workers`: GPU,
budget, resident models, running jobs; the API admits creates and lists workers from it, and peer workers skip jobs
whose model an idle peer already holds.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
import uuid
from collections import deque
from typing import Any

from arq.constants import in_progress_key_prefix, job_key_prefix
from arq.worker import Worker

from app.core.clock import to_ms, utcnow
from app.core.config import Settings
from app.core.registry import load_registry
from app.core.workers import PUBLISH_INTERVAL_S, WorkerState, live_workers, publish, withdraw
from app.tasks import service as task_service
from app.tasks.models import TaskStatus
from app.tasks.repository import TaskRepository
from inference.gpu import DEFAULT_BUDGET_GB, GpuInfo
from inference.jobs.context import task_error
from inference.scheduling.budget import EPSILON_GB, Gpu, Model, Need
from inference.scheduling.policy import Candidate, Peer, select

log = logging.getLogger(__name__)

PEERS_TTL_S = 1.0  # how long a read of the peers' states is reused between polls
UNSERVABLE_S = 600.0  # a job no live worker could fit for this long is failed: longer than a crash loop's cool-down
# (5 min), so a large GPU's worker that is restarting or cooling down is waited for


class ScheduledWorker(Worker):
    """An arq Worker for one pool (and one GPU); see the module docstring. `gpu`: from `inference.gpu.resolve`."""

    def __init__(self, *args: Any, gpu: GpuInfo | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings: Settings = self.ctx["settings"]
        self.settings = settings
        self.pool_name: str = self.ctx.get("pool", "default")
        self.gpu = gpu or GpuInfo(None, settings.vram_budget_gb or DEFAULT_BUDGET_GB)
        self.ctx["vram_budget_gb"] = self.gpu.budget_gb  # the worker's startup sizes its model cache with it
        runners = load_registry().runners
        self.needs = {n: Need(n, r.vram_gb, r.peak_vram_gb, r.load_s) for n, r in runners.items()}
        self.scheduling = any(r.pool == self.pool_name and self.needs[n].top_gb > 0 for n, r in runners.items())
        suffix = f"-gpu{self.gpu.index}" if self.gpu.index is not None else ""
        self.worker_id = f"{self.pool_name}-{socket.gethostname()}-{os.getpid()}{suffix}"
        self.running: dict[str, tuple[str | None, int]] = {}  # job id -> (runner, started at, epoch ms)
        self._runner_of: dict[str, str | None] = {}
        self._durations: deque[float] = deque(maxlen=20)
        self._peers: tuple[float, list[WorkerState]] = (float("-inf"), [])
        self._published = float("-inf")
        self._unservable: dict[str, float] = {}  # job id -> when no live worker could fit it, first seen
        self.unservable_s = UNSERVABLE_S

    # --- selection ---------------------------------------------------------------------------------------------

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        if job_ids:
            try:
                job_ids = await self.choose(job_ids)
            except Exception:  # selection is an optimisation: never stop taking jobs because of it
                log.exception("job selection failed; taking jobs in queue order")
                # Only as many as there are free slots: more would block arq's poll loop (its semaphore) until a
                # job ends, and with it heartbeats, aborts and this worker's published state.
                job_ids = job_ids[: max(0, self.max_jobs - self.job_counter)]
        await super().start_jobs(job_ids)

    async def choose(self, job_ids: list[bytes]) -> list[bytes]:
        """The ids to start now, in order, out of arq's candidates (see the module docstring)."""
        free = self.max_jobs - self.job_counter
        ids = [raw.decode() for raw in job_ids if raw.decode() not in self.tasks]
        if free <= 0 or not ids:
            return []
        async with self.pool.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.exists(in_progress_key_prefix + job_id)
            for job_id in ids:  # ZSCORE, not ZMSCORE: that needs Redis 6.2
                pipe.zscore(self.queue_name, job_id)
            answers = await pipe.execute()
        busy, scores = answers[: len(ids)], answers[len(ids) :]
        waiting = [(i, s) for i, b, s in zip(ids, busy, scores, strict=True) if not b and s is not None]
        if not self.scheduling:  # nothing to weigh: the queue's order, without the jobs other workers run
            return [job_id.encode() for job_id, _ in waiting[:free]]
        runners = await self._runners([i for i, _ in waiting])
        candidates = [Candidate(i, runners.get(i), score / 1000) for i, score in waiting]
        peers = await self._peer_views()
        await self._fail_unservable(candidates)
        chosen = select(candidates, self.gpu_view(), self.needs, window_s=self.settings.gpu_affinity_window_s,
                        slots=free, peers=peers)  # fmt: skip
        return [c.job_id.encode() for c in chosen]

    async def _fail_unservable(self, candidates: list[Candidate]) -> None:
        """Jobs queued before admission could refuse them (no worker was up yet), for a model that neither this
        worker nor any live peer of the pool could ever fit: once that has lasted `unservable_s`, their tasks are
        FAILED with a refund and the jobs dropped, rather than wait for a larger GPU that may never come."""
        budgets = [self.gpu.budget_gb] + [s.budget_gb for s in self._peers[1] if s.pool == self.pool_name]
        largest, now = max(budgets), time.monotonic()
        for candidate in candidates:
            need = self.needs.get(candidate.runner or "")
            if need is None or need.top_gb <= largest + EPSILON_GB:
                self._unservable.pop(candidate.job_id, None)
                continue
            if now - self._unservable.setdefault(candidate.job_id, now) < self.unservable_s:
                continue
            message = (f"This model needs {need.top_gb:g} GB of GPU memory; no worker of this server has that much "
                       f"(the largest budget is {largest:g} GB).")  # fmt: skip
            job = self.ctx["job"]
            async with job.sessionmaker() as session, session.begin():
                failed = await task_service.fail(
                    session, task_id=uuid.UUID(candidate.job_id), error=task_error(message),
                    expected=[TaskStatus.PENDING.value],
                )  # fmt: skip
            if failed is None:  # not PENDING any more (started elsewhere, cancelled, deleted): not ours to drop
                self._unservable.pop(candidate.job_id, None)
                continue
            await self.pool.zrem(self.queue_name, candidate.job_id)
            await self.pool.delete(job_key_prefix + candidate.job_id)
            self._unservable.pop(candidate.job_id, None)
            log.warning("task %s failed: %s", candidate.job_id, message)

    def gpu_view(self) -> Gpu:
        """This GPU as the policy sees it: the model cache's residents and leases, plus models still loading."""
        job = self.ctx.get("job")
        stats = job.runners.cache.stats() if job is not None else {"models": []}
        models = [Model(str(m["key"]), float(m["vram_gb"]), int(m["leases"])) for m in stats["models"]]
        held = {m.runner for m in models}
        running = [runner for runner, _ in self.running.values() if runner is not None]
        for runner in running:
            if runner not in held and runner in self.needs:  # its load is in flight: count it as resident, in use
                models.append(Model(runner, self.needs[runner].vram_gb, 1))
                held.add(runner)
        extra = sum(self.needs[r].extra_gb for r in running if r in self.needs)
        return Gpu(self.gpu.budget_gb, tuple(models), extra)

    async def _runners(self, ids: list[str]) -> dict[str, str | None]:
        unknown: dict[str, uuid.UUID] = {}
        for job_id in ids:
            if job_id in self._runner_of:
                continue
            try:
                unknown[job_id] = uuid.UUID(job_id)
            except ValueError:
                self._runner_of[job_id] = None
        job = self.ctx.get("job")
        if unknown and job is not None:
            async with job.sessionmaker() as session:
                found = await TaskRepository(session).runners_of(list(unknown.values()))
            for job_id, task_id in unknown.items():
                self._runner_of[job_id] = found.get(task_id)  # None: deleted; its job skips itself
        if len(self._runner_of) > 10 * self.queue_read_limit:  # forget ids that left the queue
            keep = set(ids) | set(self.running)
            self._runner_of = {k: v for k, v in self._runner_of.items() if k in keep}
        return {job_id: self._runner_of.get(job_id) for job_id in ids}

    async def _peer_views(self) -> list[Peer]:
        read_at, states = self._peers
        if time.monotonic() - read_at > PEERS_TTL_S:
            states = await live_workers(self.pool, self.settings.queue_name)
            self._peers = (time.monotonic(), states)
        return [
            Peer(idle=not s.running, runners=frozenset(m["runner"] for m in s.resident if m.get("vram_gb", 0) > 0))
            for s in states
            if s.pool == self.pool_name and s.worker_id != self.worker_id
        ]

    # --- state ---------------------------------------------------------------------------------------------------

    async def run_job(self, job_id: str, score: int) -> None:
        self.running[job_id] = (self._runner_of.get(job_id), to_ms(utcnow()))
        started = time.monotonic()
        await self.publish_state()
        try:
            await super().run_job(job_id, score)
        finally:
            self._durations.append(time.monotonic() - started)
            self.running.pop(job_id, None)
            self._runner_of.pop(job_id, None)
        await self.publish_state()

    async def heart_beat(self) -> None:
        await super().heart_beat()
        if time.monotonic() - self._published >= PUBLISH_INTERVAL_S:
            await self.publish_state()

    def state(self) -> WorkerState:
        """What this worker publishes (and `GET /openapi/v1/models` shows)."""
        job = self.ctx.get("job")
        stats = job.runners.cache.stats() if job is not None else {"models": []}
        counters = {k: int(stats[k]) for k in ("loads", "evictions", "hits", "misses") if k in stats}
        if job is not None:
            counters.update(job.runners.counters)
        return WorkerState(
            worker_id=self.worker_id, pool=self.pool_name, budget_gb=self.gpu.budget_gb, max_jobs=self.max_jobs,
            gpu=self.gpu.index, device=self.gpu.device, total_gb=self.gpu.total_gb,
            resident=[{"runner": str(m["key"]), "vram_gb": m["vram_gb"], "jobs": m["leases"]} for m in stats["models"]],
            running=[{"task_id": k, "runner": r, "started_at": at} for k, (r, at) in self.running.items()],
            mean_job_s=round(sum(self._durations) / len(self._durations), 1) if self._durations else None,
            counters=counters, host=socket.gethostname(), pid=os.getpid(), updated_at=to_ms(utcnow()),
        )  # fmt: skip

    async def publish_state(self) -> None:
        self._published = time.monotonic()
        try:
            await publish(self.pool, self.settings.queue_name, self.state())
        except Exception:  # the API then sees this worker as gone a few seconds later; jobs run on regardless
            log.warning("could not publish the worker state", exc_info=True)

    async def close(self) -> None:
        if self._pool is not None:
            with contextlib.suppress(Exception):
                await withdraw(self.pool, self.settings.queue_name, self.worker_id)
        await super().close()
