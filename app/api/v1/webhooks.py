"""Webhooks, by API (Meshy has only a web page for them): `/openapi/v1/webhooks` registers up to 5 https URLs that
receive every task change of the account, signed the Standard Webhooks way. Delivery is the workers' (app.webhooks).
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from app.api.deps import ApiKeyAuth, DbSession, Links, ReadSession, State
from app.api.errors import error_responses
from app.core.clock import to_ms
from app.core.errors import BadRequest
from app.core.ids import parse_id
from app.webhooks import service as webhook_service
from app.webhooks.errors import WebhookNotFound
from app.webhooks.models import Webhook

router = APIRouter(prefix="/openapi/v1/webhooks", tags=["Webhooks"])


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [{"url": "https://example.com/hooks"}]})

    url: str = Field(max_length=2048, description="An https URL whose every address is public.")


class WebhookError(BaseModel):
    at: int = Field(description="When the attempt failed, epoch milliseconds.")
    task_id: str
    attempt: int = Field(description="Which attempt of that change it was (1 = the first).")
    status_code: int | None = Field(description="The receiver's HTTP status; null when it was never reached.")
    message: str


class WebhookRead(BaseModel):
    id: str
    url: str
    enabled: bool = Field(description="False once disabled after repeated failures; delete it and register again.")
    created_at: int
    disabled_at: int = Field(description="Epoch milliseconds; 0 while enabled.")
    disabled_reason: str
    consecutive_failures: int
    last_success_at: int
    last_errors: list[WebhookError] = Field(description="The newest failed attempts first (a few are kept).")

    @classmethod
    def from_webhook(cls, webhook: Webhook) -> WebhookRead:
        return cls(
            id=str(webhook.id), url=webhook.url, enabled=webhook.enabled, created_at=to_ms(webhook.created_at),
            disabled_at=to_ms(webhook.disabled_at), disabled_reason=webhook.disabled_reason or "",
            consecutive_failures=webhook.consecutive_failures, last_success_at=to_ms(webhook.last_success_at),
            last_errors=[WebhookError(**error) for error in webhook.last_errors or []],
        )  # fmt: skip


class WebhookCreated(WebhookRead):
    secret: str = Field(description="`whsec_...`: verifies the `webhook-signature` header. Shown only here, once.")


MAX_BASE_URL = 2048  # the column that keeps it


@router.post("", status_code=201, responses=error_responses(400, 401, 409, 429))
async def create_webhook(
    body: WebhookCreate, principal: ApiKeyAuth, session: DbSession, state: State, links: Links
) -> WebhookCreated:
    """Register a URL for every task status and progress change of the account (409 past 5 enabled ones).

    Each change is POSTed as the task object, exactly as GET returns it, with Standard Webhooks headers
    (`webhook-id`, `webhook-timestamp`, `webhook-signature`). The secret is in this answer only.
    """
    if len(links.base_url) > MAX_BASE_URL:  # the Host header names the asset URLs' base when PUBLIC_URL is unset
        raise BadRequest("The Host header is too long to build asset URLs from: set PUBLIC_URL")
    arguments = {"account_id": principal.account_id, "url": body.url, "base_url": links.base_url,
                 "server_secret": state.secret, "allow_local": state.settings.webhook_allow_local}  # fmt: skip
    if principal.test_mode:
        registered = await webhook_service.register_test_mode(**arguments)
    else:
        async with session.begin():
            registered = await webhook_service.register(session, **arguments)
    return WebhookCreated(**WebhookRead.from_webhook(registered.webhook).model_dump(), secret=registered.secret)


@router.get("", responses=error_responses(401, 429))
async def list_webhooks(principal: ApiKeyAuth, session: ReadSession) -> list[WebhookRead]:
    """The account's webhooks, oldest first, disabled ones with their last errors (never their secrets)."""
    if principal.test_mode:
        return []
    webhooks = await webhook_service.list_webhooks(session, account_id=principal.account_id)
    return [WebhookRead.from_webhook(webhook) for webhook in webhooks]


@router.get("/{webhook_id}", responses=error_responses(401, 404, 429))
async def get_webhook(webhook_id: str, principal: ApiKeyAuth, session: ReadSession) -> WebhookRead:
    """One webhook: whether it is enabled, its failures in a row and its last errors."""
    if principal.test_mode:
        raise WebhookNotFound()
    webhook = await webhook_service.get_webhook(
        session, account_id=principal.account_id, webhook_id=parse_id(webhook_id)
    )
    return WebhookRead.from_webhook(webhook)


@router.delete("/{webhook_id}", responses=error_responses(401, 404, 429))
async def delete_webhook(webhook_id: str, principal: ApiKeyAuth, session: DbSession) -> Response:
    """Remove a webhook; changes not yet delivered to it are dropped."""
    if principal.test_mode:
        raise WebhookNotFound()
    async with session.begin():
        await webhook_service.delete_webhook(session, account_id=principal.account_id, webhook_id=parse_id(webhook_id))
    return Response(status_code=200)
