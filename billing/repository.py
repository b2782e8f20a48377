"""All SQL of the billing domain."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import bindparam, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import utcnow
from billing.models import Account, ApiKey, LedgerEntry, Plan

# Built once, bound per call: building the statement was a measurable share of a request's CPU (py-spy on bench/).
_FIND_ACTIVE_KEY = (
    select(ApiKey, Plan)
    .join(Account, Account.id == ApiKey.account_id)
    .join(Plan, Plan.name == Account.plan)
    .where(ApiKey.key_hash == bindparam("key_hash"), ApiKey.revoked_at.is_(None))
)


class BillingRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add_account(self, name: str, plan: str = "pro") -> Account:
        account = Account(name=name, balance=0, plan=plan)
        self.session.add(account)
        await self.session.flush()
        return account

    async def get_account(self, account_id: uuid.UUID) -> Account | None:
        return await self.session.get(Account, account_id)

    async def find_account_by_name(self, name: str) -> Account | None:
        result = await self.session.execute(select(Account).where(Account.name == name).limit(1))
        return result.scalar_one_or_none()

    async def add_key(self, account_id: uuid.UUID, *, name: str, key_hash: str, prefix: str) -> ApiKey:
        key = ApiKey(account_id=account_id, name=name, key_hash=key_hash, prefix=prefix)
        self.session.add(key)
        await self.session.flush()
        return key

    async def find_active_key(self, key_hash: str) -> tuple[ApiKey, Plan] | None:
        """The unrevoked key with this hash, with its account's plan (one query on the auth hot path)."""
        result = await self.session.execute(_FIND_ACTIVE_KEY, {"key_hash": key_hash})
        row = result.one_or_none()
        return (row[0], row[1]) if row else None

    async def get_key(self, key_id: uuid.UUID) -> ApiKey | None:
        return await self.session.get(ApiKey, key_id)

    async def list_keys(self, account_id: uuid.UUID | None = None) -> list[ApiKey]:
        stmt = select(ApiKey).order_by(ApiKey.created_at)
        if account_id is not None:
            stmt = stmt.where(ApiKey.account_id == account_id)
        return list((await self.session.execute(stmt)).scalars())

    async def revoke_key(self, key_id: uuid.UUID) -> ApiKey | None:
        result = await self.session.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=utcnow())
            .returning(ApiKey)
        )
        return result.scalar_one_or_none()

    async def lock_account(self, account_id: uuid.UUID) -> Account | None:
        """Serialise this account's creates: concurrency checks and charges then see each other's rows."""
        result = await self.session.execute(select(Account).where(Account.id == account_id).with_for_update())
        return result.scalar_one_or_none()

    async def list_accounts(self) -> list[Account]:
        return list((await self.session.execute(select(Account).order_by(Account.created_at))).scalars())

    async def set_plan(self, account_id: uuid.UUID, plan: str) -> Account | None:
        result = await self.session.execute(
            update(Account).where(Account.id == account_id).values(plan=plan).returning(Account)
        )
        return result.scalar_one_or_none()

    async def get_plan(self, name: str) -> Plan | None:
        return await self.session.get(Plan, name)

    async def list_plans(self) -> list[Plan]:
        return list((await self.session.execute(select(Plan).order_by(Plan.priority, Plan.name))).scalars())

    async def upsert_plan(
        self, name: str, *, requests_per_second: int, max_concurrent_tasks: int, priority: int
    ) -> Plan:
        plan = await self.get_plan(name)
        if plan is None:
            plan = Plan(name=name)
            self.session.add(plan)
        plan.requests_per_second = requests_per_second
        plan.max_concurrent_tasks = max_concurrent_tasks
        plan.priority = priority
        await self.session.flush()
        return plan

    async def ledger(self, account_id: uuid.UUID, limit: int = 50) -> list[LedgerEntry]:
        result = await self.session.execute(
            select(LedgerEntry).where(LedgerEntry.account_id == account_id).order_by(LedgerEntry.id.desc()).limit(limit)
        )
        return list(result.scalars())

    async def touch_key(self, key_id: uuid.UUID) -> None:
        """Record use, at most once a minute per key, so authentication is not a write per request."""
        now = utcnow()
        await self.session.execute(
            update(ApiKey)
            .where(
                ApiKey.id == key_id,
                or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < now - timedelta(seconds=60)),
            )
            .values(last_used_at=now)
        )

    async def apply_delta(
        self, account_id: uuid.UUID, delta: int, *, reason: str, task_id: uuid.UUID | None, note: str = ""
    ) -> int | None:
        """Move the balance by `delta` and append the ledger row, atomically.

        A debit only applies while the balance covers it; returns the new balance, or None when it did not.
        """
        stmt = update(Account).where(Account.id == account_id)
        if delta < 0:
            stmt = stmt.where(Account.balance >= -delta)
        result = await self.session.execute(stmt.values(balance=Account.balance + delta).returning(Account.balance))
        balance = result.scalar_one_or_none()
        if balance is None:
            return None
        self.session.add(
            LedgerEntry(
                account_id=account_id,
                delta=delta,
                balance_after=balance,
                reason=reason,
                task_id=task_id,
                note=note,
            )
        )
        await self.session.flush()
        return balance

    async def find_entry(self, task_id: uuid.UUID, reason: str) -> LedgerEntry | None:
        result = await self.session.execute(
            select(LedgerEntry).where(LedgerEntry.task_id == task_id, LedgerEntry.reason == reason)
        )
        return result.scalar_one_or_none()

    async def ledger_sum(self, account_id: uuid.UUID) -> int:
        result = await self.session.execute(
            select(func.coalesce(func.sum(LedgerEntry.delta), 0)).where(LedgerEntry.account_id == account_id)
        )
        return int(result.scalar_one())
