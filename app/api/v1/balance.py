"""Meshy `GET /openapi/v1/balance`: the account's credits."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from app.api import testmode
from app.api.deps import ApiKeyAuth, ReadSession
from app.api.errors import error_responses
from billing import service as billing_service

router = APIRouter(prefix="/openapi/v1/balance", tags=["Balance"])


class Balance(BaseModel):
    balance: int


@router.get("", responses=error_responses(401, 429))
async def get_balance(principal: ApiKeyAuth, session: ReadSession) -> Balance:
    """The calling account's credit balance (shared by all its keys). Free, and a cheap key check."""
    if principal.test_mode:
        return Balance(balance=testmode.TEST_MODE_BALANCE)
    return Balance(balance=await billing_service.balance_of(session, account_id=principal.account_id))
