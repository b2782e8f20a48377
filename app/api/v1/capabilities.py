"""Capability discovery, which none of Meshy's endpoints offers: `GET /openapi/v1/models`.

Every task resource with the `ai_model` values this server maps for it (`inference/registry.yaml`), the runner behind
each, its worker pool and VRAM need, whether a live worker serves that pool right now (arq refreshes
`<queue>:health-check` while a worker runs), and the price in credits (with the variants a body can select). The
playground and 3DAIGC-API's `/api/v1/system/*` routes read the same table.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from fastapi import APIRouter
from pydantic import BaseModel

from app.api.catalog import RESOURCES
from app.api.deps import ApiKeyAuth, State
from app.api.errors import error_responses
from app.api.state import AppState
from app.core.queue import queue_for_pool
from app.core.workers import WorkerState, live_workers
from billing.prices import price_of

router = APIRouter(prefix="/openapi/v1/models", tags=["Capabilities"])
# Price variants a request body can select, per task type (image-to-3d's should_texture, text-to-motion's mode).
VARIANTS: dict[str, tuple[str, ...]] = {
    "text-to-3d-preview": ("retrieved",),  # retrieve_min_score met: answered from an existing asset
    "image-to-3d": ("textured", "retrieved"),
    "multi-image-to-3d": ("textured",),
    "text-to-motion": ("swift",),
}


class ModelInfo(BaseModel):
    ai_model: str
    task_type: str
    runner: str
    pool: str
    vram_gb: float
    worker_online: bool
    price: int
    price_variants: dict[str, int] = {}


class ResourceInfo(BaseModel):
    resource: str
    path: str
    task_types: list[str]
    models: list[ModelInfo]


class ResidentModel(BaseModel):
    runner: str
    vram_gb: float
    jobs: int  # running jobs using it (it cannot be unloaded meanwhile)


class RunningJob(BaseModel):
    runner: str | None
    started_at: int  # epoch ms


class WorkerInfo(BaseModel):
    """A live worker as it last published itself (every few seconds; gone a few seconds after it stops)."""

    worker_id: str
    pool: str
    gpu: int | None
    device: str | None
    budget_gb: float
    total_gb: float | None
    max_jobs: int
    resident: list[ResidentModel]
    running: list[RunningJob]
    mean_job_s: float | None
    counters: dict[str, int]
    updated_at: int

    @classmethod
    def from_state(cls, state: WorkerState) -> WorkerInfo:
        return cls(
            worker_id=state.worker_id, pool=state.pool, gpu=state.gpu, device=state.device, budget_gb=state.budget_gb,
            total_gb=state.total_gb, max_jobs=state.max_jobs,
            resident=[ResidentModel(runner=m["runner"], vram_gb=m["vram_gb"], jobs=m.get("jobs", 0))
                      for m in state.resident],
            running=[RunningJob(runner=j.get("runner"), started_at=j.get("started_at", 0)) for j in state.running],
            mean_job_s=state.mean_job_s, counters=state.counters, updated_at=state.updated_at,
        )  # fmt: skip


class Capabilities(BaseModel):
    resources: list[ResourceInfo]
    pools: dict[str, bool]
    workers: list[WorkerInfo] = []  # GPU workers show their GPU, VRAM budget, resident models and running jobs


@dataclass(frozen=True)
class _Row:
    resource: str
    path: str
    task_type: str
    ai_model: str
    runner: str
    pool: str
    vram_gb: float


async def pools_online(state: AppState, pools: set[str]) -> dict[str, bool]:
    """Per pool: is a worker serving its queue now (its arq health-check key is alive)?"""
    names = sorted(pools)
    keys = [queue_for_pool(state.settings.queue_name, p) + ":health-check" for p in names]
    try:
        alive = await asyncio.wait_for(asyncio.gather(*(state.redis.exists(k) for k in keys)), timeout=2.0)
    except Exception:  # noqa: BLE001 (Redis down: report every pool offline rather than fail the listing)
        alive = [0] * len(keys)
    return {pool: bool(n) for pool, n in zip(names, alive, strict=True)}


async def capabilities(state: AppState) -> Capabilities:
    rows = [
        _Row(resource.slug, resource.path, task_type, entry.ai_model, entry.runner, entry.pool, entry.vram_gb)
        for resource in RESOURCES
        for task_type in resource.types
        for entry in sorted(state.registry.models.get(task_type, {}).values(), key=lambda e: e.ai_model)
    ]
    online = await pools_online(state, {row.pool for row in rows})
    prices = state.settings.credit_prices
    by_resource: dict[str, ResourceInfo] = {}
    for resource in RESOURCES:
        by_resource[resource.slug] = ResourceInfo(resource=resource.slug, path=resource.path,
                                                  task_types=list(resource.types), models=[])  # fmt: skip
    for row in rows:
        variants = VARIANTS.get(row.task_type, ())
        by_resource[row.resource].models.append(
            ModelInfo(
                ai_model=row.ai_model,
                task_type=row.task_type,
                runner=row.runner,
                pool=row.pool,
                vram_gb=row.vram_gb,
                worker_online=online[row.pool],
                price=price_of(row.task_type, row.ai_model, prices),
                price_variants={v: price_of(row.task_type, row.ai_model, prices, variant=v) for v in variants},
            )  # fmt: skip
        )
    return Capabilities(resources=list(by_resource.values()), pools=online, workers=await worker_infos(state))


async def worker_infos(state: AppState) -> list[WorkerInfo]:
    """The live workers' published states (Redis down: none, rather than fail the listing)."""
    try:
        states = await asyncio.wait_for(live_workers(state.redis, state.settings.queue_name), timeout=2.0)
    except Exception:  # noqa: BLE001
        return []
    return [WorkerInfo.from_state(s) for s in states]


@router.get("", responses=error_responses(401, 429))
async def list_models(principal: ApiKeyAuth, state: State) -> Capabilities:
    """Every resource's `ai_model` values: runner, pool, VRAM, whether a worker serves it now, and the price; and
    every live worker: its GPU, VRAM budget, resident models and running jobs."""
    del principal  # authenticated and rate-limited only
    return await capabilities(state)
