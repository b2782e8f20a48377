"""The arq worker: one process per GPU (or CPU pool), serving one pool's queue. `python -m inference.worker`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from typing import Any

from arq import func

from app.core import logs, metrics
from app.core.config import Settings, get_settings
from app.core.db import open_checked_engine, sessionmaker
from app.core.queue import HEALTH_CHECK_INTERVAL_S, queue_for_pool, redis_settings
from app.core.registry import load_registry
from app.core.storage import store_from_settings
from app.search import service as search_service
from inference.gpu import DEFAULT_BUDGET_GB, gpu_from_env
from inference.gpu import resolve as resolve_gpu
from inference.jobs.deliver_webhooks import run_deliveries
from inference.jobs.generate_model import JobContext, generate_model
from inference.jobs.previews import render_missing_previews
from inference.jobs.reap_tasks import run_reaper
from inference.runtime import RunnerSet
from inference.scheduled_worker import ScheduledWorker

log = logging.getLogger("meshfoundry.worker")


def build_runners(settings: Settings, vram_budget_gb: float | None = None) -> RunnerSet:
    """The runners available here; `vram_budget_gb` is the GPU's (inference.gpu), else VRAM_BUDGET_GB or 20."""
    vram = {name: runner.vram_gb for name, runner in load_registry().runners.items()}
    return RunnerSet.from_settings(
        models_dir=settings.models_path,
        vram_budget_gb=vram_budget_gb or settings.vram_budget_gb or DEFAULT_BUDGET_GB,
        procedural_step_delay_s=settings.procedural_step_delay_s,
        vram_need=vram,
    )


def _warm_search_models(settings: Settings) -> None:
    try:
        models = search_service.Models.from_settings(settings)
        models.text()
        models.image()
    except Exception:  # indexing reports its own failures; a worker must start anyway
        log.exception("could not load the asset search models")


async def startup(ctx: dict[str, Any]) -> None:
    settings: Settings = ctx["settings"]
    metrics.sweep_dead_processes()  # live gauges of earlier workers that died without a supervisor
    assert settings.database_url
    engine = await open_checked_engine(settings.database_url, pool_size=5)
    ctx["engine"] = engine
    ctx["job"] = JobContext(
        settings=settings,
        sessionmaker=sessionmaker(engine),
        store=store_from_settings(settings),
        runners=build_runners(settings, ctx.get("vram_budget_gb")),  # set by ScheduledWorker
    )
    if settings.search_index_generated:  # load the search encoders now, not after the first task succeeds
        ctx["search_warmup"] = asyncio.create_task(asyncio.to_thread(_warm_search_models, settings))
    ctx["reaper_stop"] = stop = asyncio.Event()
    ctx["reaper"] = asyncio.create_task(run_reaper(ctx, stop))
    ctx["webhooks"] = asyncio.create_task(run_deliveries(ctx, stop))  # the webhook outbox, stopped with the reaper
    if settings.animation_previews and ctx.get("pool", "default") == "default":
        ctx["previews_stop"] = previews_stop = threading.Event()
        ctx["previews"] = asyncio.create_task(
            asyncio.to_thread(render_missing_previews, settings.assets_path, previews_stop)
        )


async def shutdown(ctx: dict[str, Any]) -> None:
    if "search_warmup" in ctx and not ctx["search_warmup"].done():
        # Not awaited: a model still loading in its thread would hold a shutdown ~25 s for nothing; its thread ends
        # by itself (the process waits for it at exit), and its outcome is only a log line.
        ctx["search_warmup"].add_done_callback(lambda task: task.cancelled() or task.exception())
    if "previews" in ctx:  # stops between two previews; a half-written one is never left behind
        ctx["previews_stop"].set()
        with contextlib.suppress(Exception):
            await ctx["previews"]
    if "reaper" in ctx:
        ctx["reaper_stop"].set()  # let a pass finish rather than cancel it inside a database call
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(ctx["reaper"]), timeout=30)
    if "webhooks" in ctx:  # its stop is the reaper's: the attempts in flight finish and are recorded
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(ctx["webhooks"]), timeout=30)
    engine = ctx.get("engine")
    if engine is not None:
        await engine.dispose()


def worker_options(settings: Settings, pool: str) -> dict[str, Any]:
    """arq Worker keyword arguments for one pool, from settings."""
    if not settings.database_url or not settings.redis_url:
        raise RuntimeError("DATABASE_URL and REDIS_URL must be set (`meshfoundry up` sets both)")
    return {
        # Results live in Postgres (keep_result=0); attempts are counted on the task row, not by arq.
        "functions": [
            func(
                generate_model,
                name="generate_model",
                keep_result=0,
                max_tries=1000,
                timeout=settings.job_timeout_s + 30,
            )
        ],
        "redis_settings": redis_settings(settings.redis_url),
        "queue_name": queue_for_pool(settings.queue_name, pool),
        "on_startup": startup,
        "on_shutdown": shutdown,
        "ctx": {"settings": settings, "pool": pool},
        "max_jobs": settings.worker_max_jobs,
        "poll_delay": settings.worker_poll_delay_s,
        "health_check_interval": HEALTH_CHECK_INTERVAL_S,
        "allow_abort_jobs": True,
        "keep_result": 0,
        "handle_signals": True,
    }


def main() -> None:
    settings = get_settings()
    logs.configure(settings.log_style, settings.log_level, force=True)  # text or JSON lines, secrets redacted
    index = gpu_from_env()  # MESHFOUNDRY_GPU (`up --gpus`, `worker --gpu`): this process owns that GPU
    pool = os.environ.get("MESHFOUNDRY_POOL", "gpu" if index is not None else "default")
    gpu = resolve_gpu(settings.vram_budget_gb, settings.vram_margin_gb, index)
    ScheduledWorker(**worker_options(settings, pool), gpu=gpu).run()  # arq's Worker, with GPU job selection


if __name__ == "__main__":
    main()
