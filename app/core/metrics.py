"""Prometheus metrics of the API and the workers: their definitions, and exposition across processes.

prometheus-client picks its storage when it is first imported: with `PROMETHEUS_MULTIPROC_DIR` set, every process
writes its samples to files there and one scrape (the API's `/metrics`) adds them up, so the API's uvicorn workers
and the arq workers beside it show as one service. Without it, each process keeps its own (a single API process).
A supervisor calls `prepare_multiprocess_dir` before it starts its children and passes them the variable.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import psutil
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client import values as _values
from prometheus_client.metrics_core import Metric

if TYPE_CHECKING:
    from app.core.config import Settings

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
if os.environ.get(MULTIPROC_ENV):  # before the first metric: each one opens its process's file in the directory
    Path(os.environ[MULTIPROC_ENV]).mkdir(parents=True, exist_ok=True)
_JOB_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600)

HTTP_REQUESTS = Counter(
    "meshfoundry_http_requests_total", "HTTP requests by method, route template and status.",
    ["method", "route", "status"],
)  # fmt: skip
HTTP_DURATION = Histogram(
    "meshfoundry_http_request_duration_seconds",
    "Time from a request's arrival to its response headers (a stream's lifetime is not counted), by method and "
    "route template.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
HTTP_IN_PROGRESS = Gauge(
    "meshfoundry_http_requests_in_progress", "Requests being served, open task streams included.",
    multiprocess_mode="livesum",
)  # fmt: skip
TASKS_CREATED = Counter("meshfoundry_tasks_created_total", "Tasks created, by task type.", ["type"])
TASKS_FINISHED = Counter(
    "meshfoundry_tasks_finished_total", "Tasks that reached SUCCEEDED or FAILED, by task type and status.",
    ["type", "status"],
)  # fmt: skip
JOB_STAGE_DURATION = Histogram(
    "meshfoundry_job_stage_duration_seconds",
    "Seconds a job spent in each stage, by task type: queue (created to first claim), step (the whole step), "
    "runner (the model), deliverables (the mesh pipeline), publish, total (claim to SUCCEEDED). Completed stages "
    "only.",
    ["type", "stage"],
    buckets=_JOB_BUCKETS,
)
JOBS_RUNNING = Gauge(
    "meshfoundry_jobs_running", "Jobs the workers are running now, by pool.", ["pool"], multiprocess_mode="livesum"
)
WebhookOutcome = Literal["delivered", "failed", "refused", "disabled"]
WEBHOOK_OUTCOMES: tuple[WebhookOutcome, ...] = ("delivered", "failed", "refused", "disabled")
WEBHOOK_DELIVERIES = Counter(
    "meshfoundry_webhook_deliveries_total",
    "Webhook delivery attempts by outcome: delivered (2xx), failed (an error status, a timeout or a connection "
    "error; retried later), refused (the address is not allowed), disabled (the endpoint was switched off).",
    ["outcome"],
)
for _outcome in WEBHOOK_OUTCOMES:  # present from the start, so rate() sees the first one
    WEBHOOK_DELIVERIES.labels(_outcome)


# Label children by their labels: `.labels()` takes a lock and normalises its arguments on every call.
_HTTP_DURATION_BY: dict[tuple[str, str], Histogram] = {}
_HTTP_REQUESTS_BY: dict[tuple[str, str, int], Counter] = {}


def http_duration(method: str, route: str) -> Histogram:
    child = _HTTP_DURATION_BY.get((method, route))
    if child is None:
        child = _HTTP_DURATION_BY[(method, route)] = HTTP_DURATION.labels(method, route)
    return child


def http_requests(method: str, route: str, status: int) -> Counter:
    child = _HTTP_REQUESTS_BY.get((method, route, status))
    if child is None:
        child = _HTTP_REQUESTS_BY[(method, route, status)] = HTTP_REQUESTS.labels(method, route, str(status))
    return child


def task_created(task_type: str) -> None:
    TASKS_CREATED.labels(task_type).inc()


def task_finished(task_type: str, status: Literal["SUCCEEDED", "FAILED"]) -> None:
    TASKS_FINISHED.labels(task_type, status).inc()


def webhook_delivery(outcome: WebhookOutcome) -> None:
    WEBHOOK_DELIVERIES.labels(outcome).inc()


def observe_stage(task_type: str, stage: str, seconds: float) -> None:
    JOB_STAGE_DURATION.labels(task_type, stage).observe(max(0.0, seconds))


@contextmanager
def timed_stage(task_type: str, stage: str) -> Iterator[None]:
    """Observe the block's duration as `stage` when it completes (a failed stage is not a duration)."""
    start = time.perf_counter()
    yield
    observe_stage(task_type, stage, time.perf_counter() - start)


# --- processes --------------------------------------------------------------------------------------------------


def multiprocess_dir() -> Path | None:
    """The directory this process writes its samples to, or None when it keeps them in memory."""
    directory = os.environ.get(MULTIPROC_ENV)
    # The client chose at its import: the variable set later would not make this process write files.
    return Path(directory) if directory and getattr(_values.ValueClass, "_multiprocess", False) else None


def prepare_multiprocess_dir(settings: Settings) -> dict[str, str]:
    """For a supervisor, once, before it starts the API and the workers: the environment to give them.

    The directory is `PROMETHEUS_MULTIPROC_DIR` when the operator set it, else `<home>/metrics`; the files of an
    earlier run are removed (their processes are gone). Nothing when metrics are off.
    """
    if not settings.metrics_enabled:
        return {}
    directory = Path(os.environ.get(MULTIPROC_ENV) or settings.home / "metrics").resolve()
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink(missing_ok=True)
    return {MULTIPROC_ENV: str(directory)}


def child_exited(pid: int, env: Mapping[str, str]) -> None:
    """For a supervisor, when a child it started with `env` died: drop its live gauges (requests or jobs in
    progress); its counters and histograms stay, they are totals."""
    directory = env.get(MULTIPROC_ENV)
    if directory and Path(directory).is_dir():
        multiprocess.mark_process_dead(pid, directory)


def sweep_dead_processes() -> int:
    """At a process's start: drop the live gauges of processes that died without a supervisor to say so."""
    directory = multiprocess_dir()
    if directory is None:
        return 0
    dead = set()
    for path in directory.glob("gauge_live*_*.db"):
        pid = path.stem.rsplit("_", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not psutil.pid_exists(int(pid)):
            dead.add(int(pid))
    for pid in dead:
        multiprocess.mark_process_dead(pid, str(directory))
    return len(dead)


class _Families:
    """A collector of metric families read at scrape time (queue depths, worker heartbeats)."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self._families


def exposition(scraped: Iterable[Metric] = ()) -> bytes:
    """The Prometheus text format: every process's samples (or this process's), then `scraped`. Blocking (it may
    read the multiprocess files): call it from a thread."""
    directory = multiprocess_dir()
    if directory is not None:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, str(directory))
        body = generate_latest(registry)
    else:
        body = generate_latest(REGISTRY)
    extra = CollectorRegistry()
    extra.register(_Families(scraped))
    return body + generate_latest(extra)
