"""Per-account request-rate limits, counted in Redis so every API process shares them."""

from __future__ import annotations

import logging
import time
import uuid

from redis.asyncio import Redis
from redis.exceptions import RedisError

from billing.errors import RateLimitExceeded

log = logging.getLogger(__name__)

# One counter per account and second; INCR and EXPIRE in one round trip.
_HIT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], 2) end
return n
"""


class RateLimiter:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._script = redis.register_script(_HIT)

    async def hit(self, subject: uuid.UUID | str, requests_per_second: int) -> None:
        """Count one request; RateLimitExceeded over the limit. Redis trouble lets requests through (logged)."""
        now = time.time()
        window = int(now)
        try:
            count = int(await self._script(keys=[f"ratelimit:{subject}:{window}"]))
        except RedisError as exc:
            log.warning("rate limiter unavailable, not limiting: %s", exc)
            return
        if count > requests_per_second:
            raise RateLimitExceeded(retry_after_s=1)
