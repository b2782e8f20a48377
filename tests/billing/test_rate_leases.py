"""Rate-limit leases on a real Redis: a process takes a tenth of the limit at once and spends it locally, one lease
request in flight per account, and never more than the limit granted in a second across processes."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from billing.errors import RateLimitExceeded
from billing.quotas import MAX_LEASE, RateLimiter, lease_size
from tests.billing.conftest import Clock
from tests.conftest import Services

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def redis_clients(services: Services) -> AsyncIterator[Callable[[], Redis]]:
    """Separate Redis clients (one per simulated API process), closed at the end."""
    made: list[Redis] = []

    def make() -> Redis:
        client = Redis.from_url(services.redis_url)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()


@pytest.fixture
def subject() -> str:
    return f"lease-test-{uuid.uuid4().hex}"


class Counting:
    """Wraps a limiter's Redis script: how many times Redis was asked for a lease."""

    def __init__(self, limiter: RateLimiter) -> None:
        self.calls = 0
        self._script = limiter._script
        limiter._script = self  # type: ignore[assignment]

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return await self._script(*args, **kwargs)


async def _allowed(limiter: RateLimiter, subject: str, limit: int) -> bool:
    refused: RateLimitExceeded | None = None
    try:
        await limiter.hit(subject, limit)
    except RateLimitExceeded as exc:
        refused = exc
    if refused is None:
        return True
    assert refused.status_code == 429 and refused.headers == {"Retry-After": "1"}
    return False


async def test_lease_size() -> None:
    assert [lease_size(n) for n in (1, 6, 9, 10, 19, 20, 99, 100, 10_000, 50_000)] == [1, 1, 1, 1, 1, 2, 9, 10, 1000,
                                                                                       1000]  # fmt: skip
    assert MAX_LEASE == 1000 and lease_size(10**9) == MAX_LEASE


async def test_two_processes_share_a_limit_of_6(redis_clients, subject: str, window: Clock) -> None:  # type: ignore[no-untyped-def]
    a, b = RateLimiter(redis_clients()), RateLimiter(redis_clients())
    outcomes = [await _allowed(limiter, subject, 6) for _ in range(8) for limiter in (a, b)]  # 16, interleaved
    assert outcomes.count(True) == 6, outcomes
    assert outcomes[:6] == [True] * 6  # leases of one: the first six are served, wherever they land
    # The same at once (a burst on both processes), in the next second.
    window.now += 1
    burst = await asyncio.gather(*(_allowed(limiter, subject, 6) for _ in range(8) for limiter in (a, b)))
    assert burst.count(True) == 6, burst
    # And a fresh budget the second after.
    window.now += 1
    assert await _allowed(b, subject, 6) and await _allowed(a, subject, 6)


async def test_two_processes_with_leases_of_10_never_exceed_100(redis_clients, subject: str, window: Clock) -> None:  # type: ignore[no-untyped-def]
    a, b = RateLimiter(redis_clients()), RateLimiter(redis_clients())
    counts = Counting(a), Counting(b)
    outcomes = [await _allowed(limiter, subject, 100) for _ in range(75) for limiter in (a, b)]  # 150 hits
    assert outcomes.count(True) == 100, outcomes.count(True)
    assert sum(c.calls for c in counts) == 12  # 10 leases of 10, then one refused ask each; then refused locally
    counter = await redis_clients().get(f"ratelimit:{subject}:{int(window.now)}")
    assert int(counter) == 120  # every ask is counted, granted or not


async def test_a_burst_takes_one_lease(redis_clients, subject: str, window: Clock) -> None:  # type: ignore[no-untyped-def]
    limiter = RateLimiter(redis_clients())
    asked = Counting(limiter)
    results = await asyncio.gather(*(_allowed(limiter, subject, 10_000) for _ in range(200)), return_exceptions=True)
    assert results == [True] * 200  # without single-flight, each first hit took its own lease of 1000: 10 did
    assert asked.calls == 1
    counter = await redis_clients().get(f"ratelimit:{subject}:{int(window.now)}")
    assert int(counter) == 1000  # one lease of a tenth of the limit
    # The next second: last second's lease is worthless, a new one is taken.
    window.now += 1
    assert await _allowed(limiter, subject, 10_000)
    assert asked.calls == 2
    assert int(await redis_clients().get(f"ratelimit:{subject}:{int(window.now)}")) == 1000


async def test_redis_down_lets_requests_through(subject: str, window: Clock) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    down = Redis.from_url(f"redis://127.0.0.1:{port}", socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        limiter = RateLimiter(down)
        started = time.monotonic()
        assert [await _allowed(limiter, subject, 2) for _ in range(5)] == [True] * 5
        assert await asyncio.gather(*(_allowed(limiter, subject, 2) for _ in range(5))) == [True] * 5
        assert time.monotonic() - started < 20
    finally:
        await down.aclose()
