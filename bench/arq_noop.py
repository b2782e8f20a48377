"""The arq baseline worker: one no-op function, same poll delay and max_jobs as the MeshFoundry worker.

`python -m bench.arq_noop` with REDIS_URL, BENCH_QUEUE and WORKER_POLL_DELAY_S set.
"""

from __future__ import annotations

import os
from typing import Any

from arq.connections import RedisSettings
from arq.worker import run_worker


async def noop(_ctx: dict[str, Any]) -> None:
    return None


class WorkerSettings:
    functions = [noop]
    redis_settings = RedisSettings.from_dsn(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379"))
    queue_name = os.environ.get("BENCH_QUEUE", "arq:bench-noop")
    poll_delay = float(os.environ.get("WORKER_POLL_DELAY_S", "0.1"))
    max_jobs = 1
    keep_result = 300
    health_check_interval = 5
    handle_signals = True


if __name__ == "__main__":
    run_worker(WorkerSettings)  # type: ignore[arg-type]
