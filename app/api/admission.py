"""Admission of a new task: refused at once when no live worker could ever fit its model, 503 with Retry-After when
every worker that could is saturated past the queue bound (the rule is `app.core.workers.admission`)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from app.api.state import AppState
from app.core import workers

log = logging.getLogger(__name__)
ADMISSION_TIMEOUT_S = 2.0


async def admit_task(state: AppState, task_type: str, params: dict[str, Any]) -> None:
    """Raise `NoWorkerFits` (400) or `WorkersSaturated` (503) for a task a worker would have to run."""
    entry = state.registry.resolve(task_type, params.get("ai_model", "latest"))
    if entry is None:  # create_task answers with the models this server offers
        return
    check = workers.admit(
        state.redis, state.settings.queue_name, pool=entry.pool, need_gb=entry.need_gb,
        bound=state.settings.admission_queue_bound, label=entry.ai_model,
    )  # fmt: skip
    try:
        async with asyncio.timeout(ADMISSION_TIMEOUT_S):  # (not wait_for: no task made per create)
            await check
    except (workers.NoWorkerFits, workers.WorkersSaturated):
        raise
    except Exception:  # Redis unreachable or slow: admit, as enqueueing does (the reaper enqueues once it is back)
        log.warning("admission check skipped: the worker states could not be read", exc_info=True)
