"""What the API shows of itself: the per-request log context, HTTP metrics and access log, and `/metrics`."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import re
import time
from typing import Annotated

from arq.constants import job_key_prefix
from arq.jobs import deserialize_job
from fastapi import APIRouter, Depends, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from starlette.types import Scope

from app.api.deps import State
from app.api.state import AppState
from app.core import logs, metrics
from app.core.errors import NotFound, Unauthorized
from app.core.queue import HEALTH_CHECK_INTERVAL_S, queue_for_pool

log = logging.getLogger(__name__)
access_log = logging.getLogger("meshfoundry.access")

UNSAFE_ID = re.compile(r"[^\w.:-]")
UNMATCHED = "unmatched"  # one label for every path no route serves (raw paths would explode the series)
OLDEST_OF = 20  # the oldest job is looked for among this many at the head of a queue


def route_of(scope: Scope) -> str:
    """The matched route's template (`/openapi/v1/image-to-3d/{task_id}`), a mount's (`/playground/static/{path}`),
    or UNMATCHED."""
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    if isinstance(template, str) and template:
        return template
    if "endpoint" in scope and scope.get("root_path"):  # a mount matched: FastAPI sets no `route` for those
        return f"{scope['root_path']}/{{path}}"
    return UNMATCHED


def access(scope: Scope, method: str, route: str, status: int, duration_ms: float) -> None:
    if not access_log.isEnabledFor(logging.INFO):
        return
    path = scope.get("path", "")
    query = scope.get("query_string", b"").decode("latin-1")
    target = logs.redact(f"{path}?{query}" if query else path)
    client = scope.get("client")
    access_log.info(
        "%s %s %d %.1fms", method, target, status, duration_ms,
        extra={"method": method, "route": route, "path": target, "status": status,
               "duration_ms": round(duration_ms, 2), "client": client[0] if client else None},
    )  # fmt: skip


# --- /metrics ---------------------------------------------------------------------------------------------------

router = APIRouter(include_in_schema=False)
_bearer = HTTPBearer(auto_error=False)


@router.get("/metrics")
async def scrape(
    state: State, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Response:
    """Prometheus text format: the API's and the workers' metrics, and queue depths read from Redis now."""
    settings = state.settings
    if not settings.metrics_enabled:
        raise NotFound("Not Found")
    token = settings.metrics_token
    if token is not None:
        given = credentials.credentials if credentials else ""
        if not given or not hmac.compare_digest(given.encode(), token.get_secret_value().encode()):
            raise Unauthorized("Invalid metrics token")
    try:
        # Shielded: a slow Redis is abandoned, not cancelled in the middle of a command.
        families = await asyncio.wait_for(asyncio.shield(queue_families(state)), timeout=2.0)
    except Exception:  # the process metrics still go out; the queue families are missing from this scrape
        log.warning("metrics: could not read the queues from Redis", exc_info=True)
        families = []
    body = await asyncio.to_thread(metrics.exposition, families)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


async def queue_families(state: AppState) -> list[Metric]:
    """Per pool: jobs in its queue, the oldest one's age, and whether a worker's heartbeat is fresh."""
    pools = sorted({e.pool for table in state.registry.models.values() for e in table.values()})
    depth = GaugeMetricFamily(
        "meshfoundry_queue_jobs", "Jobs in the pool's queue, waiting or running (arq keeps a job there until it "
        "ends).", labels=["pool"],
    )  # fmt: skip
    oldest = GaugeMetricFamily(
        "meshfoundry_queue_oldest_job_age_seconds",
        f"Seconds since the oldest of the first {OLDEST_OF} jobs of the pool's queue was enqueued; 0 when empty.",
        labels=["pool"],
    )
    up = GaugeMetricFamily(
        "meshfoundry_worker_up", "1 while a worker of the pool refreshes its heartbeat, else 0.", labels=["pool"]
    )
    age = GaugeMetricFamily(
        "meshfoundry_worker_heartbeat_age_seconds", "Seconds since a worker of the pool last wrote its heartbeat "
        "(present while one is up).", labels=["pool"],
    )  # fmt: skip
    redis = state.redis
    async with redis.pipeline(transaction=False) as pipe:
        for pool in pools:
            queue = queue_for_pool(state.settings.queue_name, pool)
            pipe.zcard(queue)
            pipe.zrange(queue, 0, OLDEST_OF - 1)
            pipe.pttl(queue + ":health-check")
        replies = await pipe.execute()
    now = time.time()
    for index, pool in enumerate(pools):
        count, head, ttl_ms = replies[3 * index : 3 * index + 3]
        depth.add_metric([pool], count)
        oldest.add_metric([pool], await _oldest_age(state, head, now))
        up.add_metric([pool], 1 if ttl_ms > 0 else 0)
        if ttl_ms > 0:  # arq writes the key with a TTL of its interval + 1 s
            age.add_metric([pool], max(0.0, HEALTH_CHECK_INTERVAL_S + 1 - ttl_ms / 1000))
    return [depth, oldest, up, age]


async def _oldest_age(state: AppState, job_ids: list[bytes], now: float) -> float:
    if not job_ids:
        return 0.0
    raw = await state.redis.mget([job_key_prefix + j.decode() for j in job_ids])
    enqueued = []
    for value in raw:
        if value:  # gone meanwhile: finished, or its key expired
            with contextlib.suppress(Exception):  # one unreadable job must not hide the queue
                enqueued.append(deserialize_job(value).enqueue_time.timestamp())
    return max(0.0, now - min(enqueued)) if enqueued else 0.0
