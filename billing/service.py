"""Billing rules: accounts and keys, authentication, charging and refunding credits."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import utcnow
from app.core.errors import BadRequest, Unauthorized
from billing import keys
from billing.errors import UnknownPlan
from billing.models import Account, ApiKey, LedgerEntry, Plan
from billing.repository import BillingRepository

KEY_TOUCH_INTERVAL = timedelta(seconds=60)  # last_used_at precision; authentication is otherwise read-only

# Meshy's documented test-mode key (meshy-api.md §1.3): works everywhere, charges nothing, canned results.
TEST_MODE_KEY = "msy_dummy_api_key_for_test_mode_12345678"
TEST_MODE_ACCOUNT = uuid.UUID("00000000-0000-7000-8000-000000000001")


@dataclass(frozen=True)
class Principal:
    """Who is calling: the account, the key it used and its plan's limits."""

    account_id: uuid.UUID
    key_id: uuid.UUID
    requests_per_second: int = 20
    max_concurrent_tasks: int = 10
    priority: int = 0
    test_mode: bool = False


TEST_MODE_PRINCIPAL = Principal(account_id=TEST_MODE_ACCOUNT, key_id=TEST_MODE_ACCOUNT, test_mode=True)


@dataclass(frozen=True)
class IssuedKey:
    account: Account
    key: ApiKey
    plaintext: str


INT32 = 2**31 - 1  # ledger deltas and plan limits are 32-bit columns


def _in_range(name: str, value: int, low: int = -INT32) -> None:
    if not low <= value <= INT32:
        raise BadRequest(f"{name} must be between {low} and {INT32}")


async def create_account(session: AsyncSession, *, name: str, credits: int = 0, plan: str = "pro") -> Account:
    """A new account, with an opening grant recorded in the ledger."""
    _in_range("credits", credits, 0)
    repo = BillingRepository(session)
    if await repo.get_plan(plan) is None:
        raise UnknownPlan(f"Unknown plan {plan!r}")
    account = await repo.add_account(name, plan)
    if credits:
        await repo.apply_delta(account.id, credits, reason="grant", task_id=None, note="opening balance")
    await session.refresh(account)
    return account


async def issue_key(session: AsyncSession, *, account: Account, name: str, secret: bytes) -> IssuedKey:
    """A new key for `account`; the plaintext exists only in the return value."""
    plaintext = keys.generate_key()
    key = await BillingRepository(session).add_key(
        account.id,
        name=name,
        key_hash=keys.hash_key(plaintext, secret),
        prefix=keys.display_prefix(plaintext),
    )
    return IssuedKey(account=account, key=key, plaintext=plaintext)


async def authenticate(session: AsyncSession, *, token: str, secret: bytes) -> Principal:
    """The principal behind a bearer token, or Unauthorized. Revocation takes effect on the next request."""
    if token == TEST_MODE_KEY:
        return TEST_MODE_PRINCIPAL
    if not keys.looks_like_key(token):
        raise Unauthorized()
    repo = BillingRepository(session)
    found = await repo.find_active_key(keys.hash_key(token, secret))
    if found is None:
        raise Unauthorized()
    key, plan = found
    if key.last_used_at is None or key.last_used_at < utcnow() - KEY_TOUCH_INTERVAL:
        await repo.touch_key(key.id)
    return Principal(
        account_id=key.account_id,
        key_id=key.id,
        requests_per_second=plan.requests_per_second,
        max_concurrent_tasks=plan.max_concurrent_tasks,
        priority=plan.priority,
    )


async def principal_for_account(session: AsyncSession, *, account_id: uuid.UUID, key_id: uuid.UUID) -> Principal | None:
    """The principal behind a stream token: None when its key was revoked (or the account is gone)."""
    if account_id == TEST_MODE_ACCOUNT:
        return TEST_MODE_PRINCIPAL
    repo = BillingRepository(session)
    key = await repo.get_key(key_id)
    if key is None or key.revoked_at is not None or key.account_id != account_id:
        return None
    account = await repo.get_account(account_id)
    plan = await repo.get_plan(account.plan) if account else None
    if account is None or plan is None:
        return None
    return Principal(
        account_id=account.id,
        key_id=key.id,
        requests_per_second=plan.requests_per_second,
        max_concurrent_tasks=plan.max_concurrent_tasks,
        priority=plan.priority,
    )


# Tasks outside Meshy's queue limit (text-to-image, image-to-image) may still not flood the shared queue: an account
# holds at most this many times its plan's queue limit of them unfinished (429 NoMorePendingTasks past that).
PENDING_FACTOR = 5


async def lock_account(session: AsyncSession, *, account_id: uuid.UUID) -> Account:
    account = await BillingRepository(session).lock_account(account_id)
    if account is None:
        raise Unauthorized()
    return account


async def refund(session: AsyncSession, *, task_id: uuid.UUID) -> int:
    """Give back exactly what a task was charged, once (the ledger's unique index backs this up)."""
    repo = BillingRepository(session)
    charge_entry = await repo.find_entry(task_id, "charge")
    if charge_entry is None or await repo.find_entry(task_id, "refund") is not None:
        return 0
    await repo.apply_delta(charge_entry.account_id, -charge_entry.delta, reason="refund", task_id=task_id)
    return -charge_entry.delta


async def grant(session: AsyncSession, *, account_id: uuid.UUID, amount: int, note: str = "") -> int | None:
    _in_range("amount", amount)
    return await BillingRepository(session).apply_delta(account_id, amount, reason="grant", task_id=None, note=note)


async def balance_of(session: AsyncSession, *, account_id: uuid.UUID) -> int:
    account = await BillingRepository(session).get_account(account_id)
    return account.balance if account else 0


async def revoke_key(session: AsyncSession, *, key_id: uuid.UUID) -> ApiKey | None:
    return await BillingRepository(session).revoke_key(key_id)


async def list_keys(session: AsyncSession, *, account_id: uuid.UUID | None = None) -> list[ApiKey]:
    return await BillingRepository(session).list_keys(account_id)


async def set_plan(session: AsyncSession, *, account_id: uuid.UUID, plan: str) -> Account | None:
    repo = BillingRepository(session)
    if "\x00" in plan or await repo.get_plan(plan) is None:
        raise UnknownPlan(f"Unknown plan {plan!r}")
    return await repo.set_plan(account_id, plan)


async def list_accounts(session: AsyncSession) -> list[Account]:
    return await BillingRepository(session).list_accounts()


async def list_plans(session: AsyncSession) -> list[Plan]:
    return await BillingRepository(session).list_plans()


async def upsert_plan(
    session: AsyncSession, *, name: str, requests_per_second: int, max_concurrent_tasks: int, priority: int = 0
) -> Plan:
    _in_range("requests_per_second", requests_per_second, 1)
    _in_range("max_concurrent_tasks", max_concurrent_tasks, 1)
    _in_range("priority", priority)
    if not 1 <= len(name) <= 40 or "\x00" in name:
        raise BadRequest("plan names are 1 to 40 characters, without NUL")
    return await BillingRepository(session).upsert_plan(
        name, requests_per_second=requests_per_second, max_concurrent_tasks=max_concurrent_tasks, priority=priority
    )


async def statement(session: AsyncSession, *, account_id: uuid.UUID, limit: int = 50) -> list[LedgerEntry]:
    """The newest ledger rows, newest first."""
    return await BillingRepository(session).ledger(account_id, limit)


async def ledger_drift(session: AsyncSession, *, account_id: uuid.UUID) -> int:
    """Balance minus the sum of the ledger: always 0 unless something bypassed the ledger."""
    repo = BillingRepository(session)
    account = await repo.get_account(account_id)
    return (account.balance if account else 0) - await repo.ledger_sum(account_id)
