"""Per-account request-rate limits, counted in Redis so every API process shares them.

One counter per account and second. A process does not ask Redis for every request: it takes a lease of up to a
tenth of the limit at once (INCRBY) and spends it locally, so a busy account costs one round trip per lease, not per
request. The sum of what every process was granted never exceeds the limit (a lease is cut to what is left), so the
limit holds across processes; the cost is that tokens leased and not spent in that second are lost to the others
(at most a tenth of the limit per process, nothing at limits under 20).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from billing.errors import RateLimitExceeded

log = logging.getLogger(__name__)

# Add the lease to this second's counter (created with a 2 s expiry); the counter after it.
_TAKE = """
local n = redis.call('INCRBY', KEYS[1], ARGV[1])
if n == tonumber(ARGV[1]) then redis.call('EXPIRE', KEYS[1], 2) end
return n
"""
MAX_LEASE = 1000


def lease_size(requests_per_second: int) -> int:
    return max(1, min(MAX_LEASE, requests_per_second // 10))


@dataclass
class _Lease:
    window: int
    left: int  # tokens granted and not yet spent in this window; -1: the account's budget is spent


class RateLimiter:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._script = redis.register_script(_TAKE)
        self._leases: dict[uuid.UUID | str, _Lease] = {}
        self._asking: dict[uuid.UUID | str, asyncio.Future[None]] = {}  # one lease request in flight per subject
        self._window = 0

    async def hit(self, subject: uuid.UUID | str, requests_per_second: int) -> None:
        """Count one request; RateLimitExceeded over the limit. Redis trouble lets requests through (logged)."""
        while True:
            window = int(time.time())
            if window != self._window:  # a new second: last second's leases are worthless
                self._window = window
                self._leases.clear()
            lease = self._leases.get(subject)
            if lease is not None:
                if lease.left > 0:
                    lease.left -= 1
                    return
                if lease.left < 0:
                    raise RateLimitExceeded(retry_after_s=1)
            asking = self._asking.get(subject)
            if asking is None:
                break
            await asyncio.shield(asking)  # a burst waits for one lease instead of each taking its own
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._asking[subject] = done
        try:
            await self._take(subject, window, requests_per_second)
        finally:
            del self._asking[subject]
            done.set_result(None)

    async def _take(self, subject: uuid.UUID | str, window: int, requests_per_second: int) -> None:
        size = lease_size(requests_per_second)
        try:
            count = int(await self._script(keys=[f"ratelimit:{subject}:{window}"], args=[size]))
        except RedisError as exc:
            log.warning("rate limiter unavailable, not limiting: %s", exc)
            # Fail open for the rest of this second, in this process: the requests waiting on this one must not
            # each try Redis in turn (one timeout after another).
            if window == self._window:
                self._leases[subject] = _Lease(window, requests_per_second)
            return
        granted = max(0, min(size, requests_per_second - (count - size)))
        if window != self._window:
            return  # the second ended while we asked: this request counted in that second
        if granted == 0:
            self._leases[subject] = _Lease(window, -1)
            raise RateLimitExceeded(retry_after_s=1)
        self._leases[subject] = _Lease(window, granted - 1)
