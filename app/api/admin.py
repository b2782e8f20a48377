"""Operator endpoints under /admin, behind ADMIN_TOKEN; with no token configured they do not exist (404)."""

from __future__ import annotations

import hmac
import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from app.api.deps import DbSession, State
from app.api.errors import error_responses
from app.core.errors import NotFound, Unauthorized
from billing import service as billing_service
from billing.errors import BalanceWouldGoNegative
from billing.models import Account

_bearer = HTTPBearer(auto_error=False, description="The operator's ADMIN_TOKEN")


async def require_admin(
    state: State, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    token = state.settings.admin_token
    if token is None:
        raise NotFound("Not Found")
    given = credentials.credentials if credentials else ""
    if not given or not hmac.compare_digest(given.encode(), token.get_secret_value().encode()):
        raise Unauthorized("Invalid admin token")


router = APIRouter(
    prefix="/admin", tags=["Admin"], dependencies=[Depends(require_admin)], responses=error_responses(401, 404)
)


class AccountOut(BaseModel):
    id: uuid.UUID
    name: str
    plan: str
    balance: int
    created_at: datetime


class AccountCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00]*$")
    credits: int = Field(0, ge=0, le=2**31 - 1)
    plan: str = Field("pro", max_length=40)


class KeyCreate(BaseModel):
    name: str = Field("", max_length=200, pattern=r"^[^\x00]*$")


class IssuedKeyOut(BaseModel):
    account: AccountOut
    key_id: uuid.UUID
    key: str = Field(description="The API key. It is shown only here, once.")


class KeyOut(BaseModel):
    id: uuid.UUID
    account_id: uuid.UUID
    prefix: str
    name: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class Grant(BaseModel):
    amount: int = Field(ge=-(2**31 - 1), le=2**31 - 1)
    note: str = Field("", max_length=200, pattern=r"^[^\x00]*$")


class PlanIn(BaseModel):
    requests_per_second: int = Field(ge=1, le=2**31 - 1)
    max_concurrent_tasks: int = Field(ge=1, le=2**31 - 1)
    priority: int = Field(0, ge=-(2**31 - 1), le=2**31 - 1)


class PlanOut(PlanIn):
    name: str


class PlanAssign(BaseModel):
    plan: str = Field(max_length=40)


async def _account(session: DbSession, account_id: uuid.UUID) -> Account:
    account = await session.get(Account, account_id)
    if account is None:
        raise NotFound("Account not found")
    return account


@router.get("/accounts")
async def list_accounts(session: DbSession) -> list[AccountOut]:
    """Every account with its plan and balance."""
    return [AccountOut.model_validate(a, from_attributes=True) for a in await billing_service.list_accounts(session)]


@router.post("/accounts", status_code=201, responses=error_responses(400))
async def create_account(body: AccountCreate, session: DbSession, state: State) -> IssuedKeyOut:
    """A new account with an opening balance and its first key (returned once)."""
    async with session.begin():
        account = await billing_service.create_account(session, name=body.name, credits=body.credits, plan=body.plan)
        issued = await billing_service.issue_key(session, account=account, name=body.name, secret=state.secret)
    return IssuedKeyOut(
        account=AccountOut.model_validate(account, from_attributes=True), key_id=issued.key.id, key=issued.plaintext
    )


@router.get("/accounts/{account_id}")
async def get_account(account_id: uuid.UUID, session: DbSession) -> AccountOut:
    """One account: plan and balance."""
    return AccountOut.model_validate(await _account(session, account_id), from_attributes=True)


@router.post("/accounts/{account_id}/keys", status_code=201)
async def create_key(account_id: uuid.UUID, body: KeyCreate, session: DbSession, state: State) -> IssuedKeyOut:
    """Another key for an account (keys share the account's credits and limits)."""
    async with session.begin():
        account = await _account(session, account_id)
        issued = await billing_service.issue_key(session, account=account, name=body.name, secret=state.secret)
    return IssuedKeyOut(
        account=AccountOut.model_validate(account, from_attributes=True), key_id=issued.key.id, key=issued.plaintext
    )


@router.get("/accounts/{account_id}/keys")
async def list_keys(account_id: uuid.UUID, session: DbSession) -> list[KeyOut]:
    """An account's keys (prefixes and dates; the keys themselves are never stored)."""
    keys = await billing_service.list_keys(session, account_id=account_id)
    return [KeyOut.model_validate(k, from_attributes=True) for k in keys]


@router.post("/keys/{key_id}/revoke")
async def revoke_key(key_id: uuid.UUID, session: DbSession) -> KeyOut:
    """Revoke a key: it gets 401 from the next request on."""
    async with session.begin():
        key = await billing_service.revoke_key(session, key_id=key_id)
    if key is None:
        raise NotFound("No active key with this id")
    return KeyOut.model_validate(key, from_attributes=True)


@router.post("/accounts/{account_id}/credits", responses=error_responses(400))
async def grant_credits(account_id: uuid.UUID, body: Grant, session: DbSession) -> AccountOut:
    """Add (or, with a negative amount, remove) credits, recorded in the ledger."""
    async with session.begin():
        await _account(session, account_id)
        if await billing_service.grant(session, account_id=account_id, amount=body.amount, note=body.note) is None:
            raise BalanceWouldGoNegative()
        account = await _account(session, account_id)
        await session.refresh(account)
    return AccountOut.model_validate(account, from_attributes=True)


@router.put("/accounts/{account_id}/plan", responses=error_responses(400))
async def assign_plan(account_id: uuid.UUID, body: PlanAssign, session: DbSession) -> AccountOut:
    """Move an account to another plan; its new limits apply from the next request."""
    async with session.begin():
        account = await billing_service.set_plan(session, account_id=account_id, plan=body.plan)
    if account is None:
        raise NotFound("Account not found")
    return AccountOut.model_validate(account, from_attributes=True)


@router.get("/plans")
async def list_plans(session: DbSession) -> list[PlanOut]:
    """Every plan with its limits."""
    return [PlanOut.model_validate(p, from_attributes=True) for p in await billing_service.list_plans(session)]


@router.put("/plans/{name}")
async def put_plan(name: str, body: PlanIn, session: DbSession) -> PlanOut:
    """Create or change a plan; accounts on it get the new limits on their next request."""
    async with session.begin():
        plan = await billing_service.upsert_plan(session, name=name, **body.model_dump())
    return PlanOut.model_validate(plan, from_attributes=True)
