"""Enqueueing generation jobs: a small protocol with the arq implementation behind it."""

from __future__ import annotations

import uuid
import weakref
from datetime import datetime, timedelta
from typing import Protocol

from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.constants import job_key_prefix, result_key_prefix
from arq.jobs import Job, serialize_job
from arq.utils import timestamp_ms, to_unix_ms
from redis.commands.core import AsyncScript

from app.core.clock import utcnow

JOB_NAME = "generate_model"  # a wire contract between API and worker: rename both together
# arq keeps a job's key for a day past its score; a score further back than this is clamped (a task that waited
# that long is at the head of its queue anyway).
OLDEST_SCORE = timedelta(hours=1)
# How often a worker refreshes arq's `<queue>:health-check` key (its TTL is this + 1 s): /health and /metrics read it.
HEALTH_CHECK_INTERVAL_S = 5


def queue_for_pool(base: str, pool: str) -> str:
    return f"{base}:{pool}"


def redis_settings(url: str) -> RedisSettings:
    return RedisSettings.from_dsn(url)


# arq's enqueue (arq.connections.ArqRedis.enqueue_job, 0.28) as one script: WATCH, EXISTS, MULTI/PSETEX/ZADD/EXEC
# were three round trips per create. Same keys, same job encoding, same expiry, same "None when queued already".
_ENQUEUE = """
if redis.call('EXISTS', KEYS[1], KEYS[2]) > 0 then return 0 end
redis.call('PSETEX', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4])
return 1
"""


async def enqueue_task(
    redis: ArqRedis, base: str, task_id: uuid.UUID, pool: str, queued_at: datetime | None = None
) -> Job | None:
    """Enqueue a task's job (job id = task id: None when it is queued already) at its queue position.

    arq's workers take the lowest score first among jobs whose score has passed, so a score in the past (a plan's
    priority, or a task that has waited) runs before jobs enqueued after it.
    """
    now = utcnow()
    # Never in the future (a database clock ahead of ours would make workers wait), never older than OLDEST_SCORE.
    position = min(max(queued_at, now - OLDEST_SCORE), now) if queued_at is not None else None
    job_id = str(task_id)
    queue = queue_for_pool(base, pool)
    enqueued_ms = timestamp_ms()
    score = to_unix_ms(position) if position is not None else enqueued_ms
    job = serialize_job(JOB_NAME, (job_id,), {}, None, enqueued_ms, serializer=redis.job_serializer)
    script = _scripts.get(redis)
    if script is None:
        script = _scripts[redis] = redis.register_script(_ENQUEUE)
    keys = [job_key_prefix + job_id, result_key_prefix + job_id, queue]
    added = await script(keys=keys, args=[score - enqueued_ms + redis.expires_extra_ms, job, score, job_id])
    if not added:
        return None
    return Job(job_id, redis=redis, _queue_name=queue, _deserializer=redis.job_deserializer)


_scripts: weakref.WeakKeyDictionary[ArqRedis, AsyncScript] = weakref.WeakKeyDictionary()  # one per client


class Queue(Protocol):
    async def enqueue(self, task_id: uuid.UUID, pool: str, queued_at: datetime | None = None) -> None: ...


class ArqQueue:
    """Jobs keyed by task id, so enqueueing twice is harmless."""

    def __init__(self, redis: ArqRedis, base_name: str) -> None:
        self.redis = redis
        self.base_name = base_name

    @classmethod
    async def connect(cls, url: str, base_name: str) -> ArqQueue:
        return cls(await create_pool(redis_settings(url)), base_name)

    async def enqueue(self, task_id: uuid.UUID, pool: str, queued_at: datetime | None = None) -> None:
        await enqueue_task(self.redis, self.base_name, task_id, pool, queued_at)

    async def close(self) -> None:
        await self.redis.aclose()
