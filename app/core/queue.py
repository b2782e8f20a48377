"""Enqueueing generation jobs: a small protocol with the arq implementation behind it."""

from __future__ import annotations

import uuid
from typing import Protocol

from arq.connections import ArqRedis, RedisSettings, create_pool

JOB_NAME = "generate_model"  # a wire contract between API and worker: rename both together


def queue_for_pool(base: str, pool: str) -> str:
    return f"{base}:{pool}"


def redis_settings(url: str) -> RedisSettings:
    return RedisSettings.from_dsn(url)


class Queue(Protocol):
    async def enqueue(self, task_id: uuid.UUID, pool: str) -> None: ...


class ArqQueue:
    """Jobs keyed by task id, so enqueueing twice is harmless."""

    def __init__(self, redis: ArqRedis, base_name: str) -> None:
        self.redis = redis
        self.base_name = base_name

    @classmethod
    async def connect(cls, url: str, base_name: str) -> ArqQueue:
        return cls(await create_pool(redis_settings(url)), base_name)

    async def enqueue(self, task_id: uuid.UUID, pool: str) -> None:
        await self.redis.enqueue_job(
            JOB_NAME, str(task_id), _job_id=str(task_id), _queue_name=queue_for_pool(self.base_name, pool)
        )

    async def close(self) -> None:
        await self.redis.aclose()
