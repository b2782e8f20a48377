"""Authentication on the hot path: an in-process cache of principals, dropped the moment a key or plan changes.

A request's key is looked up by its keyed hash. The first request of a key reads its row with its account's plan (one
prepared statement on the read pool); later ones find the principal in this process's cache. Every change that could
alter a principal (a key revoked or deleted, an account's plan changed or the account deleted, a plan's limits
edited) fires a database trigger that NOTIFYs `auth_events` on commit (migration 2026-11-29-2000); each API process
LISTENs on the connection its task-event hub already holds and clears its cache when one arrives. The cache is used
only while that connection is up: when it drops, the cache is cleared and bypassed until it is back (a notification
may have been missed in between). Entries also expire after `ttl_s`, a backstop for a connection that died without
anyone noticing.

Key use (`last_used_at`) is still recorded at most once a minute per key, off the request (see KEY_TOUCH_INTERVAL).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, exists, or_, select, update

from app.core.clock import utcnow
from app.core.errors import Unauthorized
from app.core.rowdb import RowPool, compile_statement
from billing import keys
from billing.models import Account, ApiKey, Plan
from billing.service import KEY_TOUCH_INTERVAL, TEST_MODE_KEY, TEST_MODE_PRINCIPAL, Principal

log = logging.getLogger(__name__)

AUTH_CHANNEL = "auth_events"

_FIND = compile_statement(
    select(
        ApiKey.id,
        ApiKey.account_id,
        ApiKey.last_used_at,
        Plan.requests_per_second,
        Plan.max_concurrent_tasks,
        Plan.priority,
    )  # fmt: skip
    .join(Account, Account.id == ApiKey.account_id)
    .join(Plan, Plan.name == Account.plan)
    .where(ApiKey.key_hash == bindparam("key_hash"), ApiKey.revoked_at.is_(None))
)
_KEY_VALID = compile_statement(select(ApiKey.id).where(ApiKey.id == bindparam("key_id"), ApiKey.revoked_at.is_(None)))


def key_valid(key_id: Any, account_id: Any) -> Any:
    """A column for a hot statement: is the caller's key (bound as `key_id`) still unrevoked and its account's, read
    in the same snapshot as the rest of the statement. A principal from the cache is trusted only through this."""
    return exists().where(ApiKey.id == key_id, ApiKey.account_id == account_id, ApiKey.revoked_at.is_(None))


_TOUCH = compile_statement(
    update(ApiKey)
    .where(
        ApiKey.id == bindparam("key_id"),
        or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < bindparam("stale_before")),
    )
    .values(last_used_at=bindparam("now"))
)


@dataclass(frozen=True)
class _Entry:
    principal: Principal
    cached_at: float  # monotonic
    touched_at: float  # monotonic: when this process last recorded the key's use (or found it recent)


class PrincipalCache:
    """Principals by key hash; see the module docstring for when it is trusted."""

    def __init__(self, *, ttl_s: float = 60.0, size: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.size = size
        self._entries: dict[str, _Entry] = {}
        self._live = False  # the invalidation channel is connected and listening
        self.generation = 0  # bumped on every invalidation: a principal read before one is not cached (`put`)

    @property
    def enabled(self) -> bool:
        return self._live and self.ttl_s > 0

    def listening(self, live: bool) -> None:
        """The invalidation channel came up (True) or went down (False): either way, forget everything."""
        self._live = live
        self.invalidate()

    def invalidate(self, _payload: str = "") -> None:
        self._entries.clear()
        self.generation += 1

    def get(self, key_hash: str, now: float) -> _Entry | None:
        entry = self._entries.get(key_hash)
        if entry is None or not self.enabled:
            return None
        if now - entry.cached_at > self.ttl_s:
            del self._entries[key_hash]
            return None
        return entry

    def replace(self, key_hash: str, old: _Entry, new: _Entry) -> None:
        """Swap `old` for `new` only if `old` is still the cached entry (an invalidation may have dropped it)."""
        if self._entries.get(key_hash) is old:
            self._entries[key_hash] = new

    def put(self, key_hash: str, entry: _Entry, generation: int) -> None:
        """Remember `entry`, read while the cache was at `generation`: dropped if an invalidation came meanwhile
        (the row read may predate the change that invalidated)."""
        if not self.enabled or generation != self.generation:
            return
        if len(self._entries) >= self.size:
            del self._entries[next(iter(self._entries))]
        self._entries[key_hash] = entry


class Authenticator:
    """Bearer key -> Principal, through the cache, on the read pool."""

    def __init__(self, rows: RowPool, secret: bytes, cache: PrincipalCache) -> None:
        self.rows = rows
        self.secret = secret
        self.cache = cache
        self._touches: set[asyncio.Task[None]] = set()

    async def authenticate(self, token: str, *, cached: bool = False) -> Principal:
        """The principal behind `token`, read now; with `cached`, possibly from this process's cache: then the
        caller's own statement must check the key is still valid (`key_valid`), as the hot reads and create do."""
        if token == TEST_MODE_KEY:
            return TEST_MODE_PRINCIPAL
        if not keys.looks_like_key(token):
            raise Unauthorized()
        key_hash = keys.hash_key(token, self.secret)
        now = time.monotonic()
        entry = self.cache.get(key_hash, now) if cached else None
        if entry is None:
            generation = self.cache.generation
            row = await self.rows.fetchrow(_FIND, {"key_hash": key_hash}, idempotent=True)
            if row is None:
                raise Unauthorized()
            principal = Principal(
                account_id=row["account_id"], key_id=row["id"], requests_per_second=row["requests_per_second"],
                max_concurrent_tasks=row["max_concurrent_tasks"], priority=row["priority"],
            )  # fmt: skip
            last_used = row["last_used_at"]
            recent = last_used is not None and last_used >= utcnow() - KEY_TOUCH_INTERVAL
            entry = _Entry(principal, cached_at=now, touched_at=now if recent else float("-inf"))
            self.cache.put(key_hash, entry, generation)
        if now - entry.touched_at >= KEY_TOUCH_INTERVAL.total_seconds():
            self._touch(key_hash, entry, now)
        return entry.principal

    def forget(self, key_id: uuid.UUID) -> None:
        """A statement found this key revoked: drop it now (its notification may still be on its way)."""
        self.cache.invalidate()
        log.info("key %s was found revoked; principal cache cleared", key_id)

    def _touch(self, key_hash: str, entry: _Entry, now: float) -> None:
        """Record the key's use in the background (the request does not wait for a write)."""
        self.cache.replace(key_hash, entry, _Entry(entry.principal, entry.cached_at, touched_at=now))
        task = asyncio.create_task(self._write_touch(entry.principal.key_id))
        self._touches.add(task)
        task.add_done_callback(self._touches.discard)

    async def _write_touch(self, key_id: uuid.UUID) -> None:
        now = utcnow()
        try:
            await self.rows.execute(_TOUCH, {"key_id": key_id, "stale_before": now - KEY_TOUCH_INTERVAL, "now": now})
        except Exception as exc:  # bookkeeping only: a failed touch must not fail anything
            log.warning("recording the use of key %s failed: %s", key_id, exc)

    async def still_valid(self, principal: Principal) -> bool:
        """One statement: is the key behind `principal` unrevoked (for a hot read that found no row to carry it)."""
        if principal.test_mode:
            return True
        params = {"key_id": principal.key_id, "account_id": principal.account_id}
        return await self.rows.fetchrow(_KEY_VALID, params, idempotent=True) is not None

    async def drain(self) -> None:
        """Let the last use records finish (at shutdown)."""
        if self._touches:
            await asyncio.gather(*self._touches, return_exceptions=True)
