"""Webhook rules: registration (limits, URL checks, the secret shown once), and settling each delivery attempt
(retry with backoff, supersede, give up, disable)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import DateTime, Uuid
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.assets import UrlSigner
from app.core.clock import to_ms, utcnow
from app.core.fetch import FetchRefused
from app.core.ids import new_id
from app.tasks.models import Task
from app.tasks.render import AssetLinks, render_task, to_json_line
from app.webhooks import sender, signing
from app.webhooks.errors import InvalidWebhookUrl, TooManyWebhooks, WebhookNotFound
from app.webhooks.models import Webhook, WebhookDelivery
from app.webhooks.repository import WebhookRepository
from billing import service as billing_service

MAX_ENABLED = 5  # Meshy's limit of active webhooks per account
KEPT_ERRORS = 5  # failed attempts shown on the webhook, newest first


@dataclass(frozen=True)
class Registered:
    """A new webhook and its signing secret: returned once, never stored or shown again."""

    webhook: Webhook
    secret: str


@dataclass(frozen=True)
class Policy:
    """How the worker delivers (the edge builds it from the WEBHOOK_* settings)."""

    retry_schedule_s: tuple[float, ...]  # the wait after each failed attempt; then the change is given up
    disable_after_failures: int
    disable_after_s: float
    timeout_s: float
    allow_local: bool = False
    batch: int = 20  # attempts in flight per worker at once

    @property
    def max_attempts(self) -> int:
        return len(self.retry_schedule_s) + 1

    @property
    def lease(self) -> timedelta:
        """How long a claimed delivery is held: past it, a dead worker's claim is taken again."""
        return timedelta(seconds=self.timeout_s + 30)


@dataclass(frozen=True)
class Claimed:
    """A delivery leased to this worker, with its webhook as it was when claimed."""

    delivery: WebhookDelivery
    webhook: Webhook


async def check_url(url: str, *, allow_local: bool) -> None:
    """https, no credentials, and a name whose every address is public (InvalidWebhookUrl otherwise). Delivery
    checks again, since a name may point elsewhere later."""
    try:
        sender.check_target(url, allow_local=allow_local)
        await sender.addresses_of(url, allow_local=allow_local)
    except FetchRefused as exc:
        raise InvalidWebhookUrl(f"Invalid parameter url: {exc}") from exc
    except TimeoutError as exc:
        raise InvalidWebhookUrl("Invalid parameter url: its host name did not resolve in time") from exc


async def register(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    url: str,
    base_url: str,
    server_secret: bytes,
    allow_local: bool,
    max_enabled: int = MAX_ENABLED,
) -> Registered:
    """Add an enabled webhook; the account row is locked first, so parallel creates cannot pass the limit."""
    await check_url(url, allow_local=allow_local)
    await billing_service.lock_account(session, account_id=account_id)
    repo = WebhookRepository(session)
    if await repo.count_enabled(account_id) >= max_enabled:
        raise TooManyWebhooks(f"At most {max_enabled} enabled webhooks per account: delete one first")
    registered = _new(account_id=account_id, url=url, base_url=base_url, server_secret=server_secret)
    await repo.add(registered.webhook)
    return registered


async def register_test_mode(
    *, account_id: uuid.UUID, url: str, base_url: str, server_secret: bytes, allow_local: bool
) -> Registered:
    """The test-mode key's create: the same checks and answer, nothing stored. That key is public and shared by
    everyone, and its canned tasks never change, so a stored test-mode webhook would never receive anything."""
    await check_url(url, allow_local=allow_local)
    return _new(account_id=account_id, url=url, base_url=base_url, server_secret=server_secret)


def _new(*, account_id: uuid.UUID, url: str, base_url: str, server_secret: bytes) -> Registered:
    webhook = Webhook(
        id=new_id(), account_id=account_id, url=url, secret_seed=signing.new_seed(), base_url=base_url,
        enabled=True, created_at=utcnow(), consecutive_failures=0, last_errors=[],
    )  # fmt: skip
    return Registered(webhook, signing.secret_text(signing.signing_key(server_secret, webhook.secret_seed)))


async def list_webhooks(session: AsyncSession, *, account_id: uuid.UUID) -> list[Webhook]:
    """The account's webhooks, oldest first, disabled ones included (with their last errors)."""
    return await WebhookRepository(session).list_owned(account_id)


async def get_webhook(session: AsyncSession, *, account_id: uuid.UUID, webhook_id: uuid.UUID | None) -> Webhook:
    """The account's webhook (404 when unknown, malformed or another account's)."""
    webhook = await WebhookRepository(session).get_owned(webhook_id, account_id) if webhook_id else None
    if webhook is None:
        raise WebhookNotFound()
    return webhook


async def delete_webhook(session: AsyncSession, *, account_id: uuid.UUID, webhook_id: uuid.UUID | None) -> None:
    """Remove the webhook and its undelivered changes."""
    webhook = await get_webhook(session, account_id=account_id, webhook_id=webhook_id)
    await WebhookRepository(session).delete(webhook.id)


# --- worker side -------------------------------------------------------------------------------------------


async def claim(
    session: AsyncSession, *, policy: Policy, limit: int | None = None, now: datetime | None = None
) -> list[Claimed]:
    """Lease up to `limit` (the policy's batch) due deliveries, each the oldest waiting change of its task for its
    webhook, with their webhooks."""
    repo = WebhookRepository(session)
    deliveries = await repo.claim_due(now or utcnow(), limit=limit or policy.batch, lease=policy.lease)
    if not deliveries:
        return []
    webhooks = await repo.get_many({d.webhook_id for d in deliveries})
    return [Claimed(d, webhooks[d.webhook_id]) for d in deliveries if d.webhook_id in webhooks]


async def sweep_disabled(session: AsyncSession) -> int:
    """Remove what is left in the outbox for disabled webhooks (never delivered: claims skip them)."""
    return await WebhookRepository(session).drop_disabled()


def payload(claimed: Claimed, *, signer: UrlSigner, public_url: str | None) -> bytes:
    """The task object as GET answers it for the state of that change (asset URLs signed as GET signs them)."""
    task = task_from_snapshot(claimed.delivery.snapshot)
    links = AssetLinks(signer=signer, base_url=public_url or claimed.webhook.base_url)
    return to_json_line(render_task(task, claimed.delivery.preceding_tasks, links)).encode()


def signed_headers(claimed: Claimed, body: bytes, *, server_secret: bytes, now: datetime) -> dict[str, str]:
    """Standard Webhooks headers: the id is the same on every attempt of this change, the timestamp is now's."""
    key = signing.signing_key(server_secret, claimed.webhook.secret_seed)
    return signing.headers(key, f"msg_{claimed.delivery.id}", int(now.timestamp()), body)


def task_from_snapshot(snapshot: dict[str, Any]) -> Task:
    """A detached Task from `to_jsonb(tasks)`: ids and timestamps parsed back, the rest as stored."""
    values: dict[str, Any] = {}
    for column in Task.__table__.columns:
        value = snapshot.get(column.name)
        if value is not None and isinstance(column.type, Uuid):
            value = uuid.UUID(value)
        elif value is not None and isinstance(column.type, DateTime):
            value = datetime.fromisoformat(value)
        values[column.key] = value
    return Task(**values)


async def settle(
    session: AsyncSession, *, claimed: Claimed, delivered: bool, status_code: int | None, message: str, policy: Policy
) -> Literal["delivered", "failed", "disabled"]:
    """Record one attempt. Delivered: gone from the outbox, the failure count reset. Failed: the error kept on the
    webhook; retried after the next backoff step, carried by the newest waiting change of the task if there is
    one (so a recovered receiver gets the current state first, never an older one after a newer); given up after
    the last step; and the webhook disabled after too many failures in a row or a day without success."""
    now = utcnow()
    repo = WebhookRepository(session)
    webhook = await repo.lock(claimed.webhook.id)
    delivery = claimed.delivery
    if webhook is None:  # deleted meanwhile, its deliveries with it
        return "delivered" if delivered else "failed"
    if delivered:
        await repo.remove([delivery.id])
        webhook.consecutive_failures = 0
        webhook.failing_since = None
        webhook.last_success_at = now
        return "delivered"
    webhook.consecutive_failures += 1
    webhook.failing_since = webhook.failing_since or now
    gave_up = delivery.attempts >= policy.max_attempts
    error = {"at": to_ms(now), "task_id": str(delivery.task_id), "attempt": delivery.attempts,
             "status_code": status_code, "message": message + (" (gave up)" if gave_up else "")}  # fmt: skip
    webhook.last_errors = [error, *(webhook.last_errors or [])][:KEPT_ERRORS]
    reason = _disable_reason(webhook, policy, now)
    if reason is not None:
        webhook.enabled = False
        webhook.disabled_at = now
        webhook.disabled_reason = reason
        await repo.drop_waiting(webhook.id)
        return "disabled"
    newer = await repo.newer_waiting(delivery)
    if gave_up:
        await repo.remove([delivery.id])  # the later changes go on, on their own schedule
    elif newer:
        await repo.remove([delivery.id, *newer[:-1]])
        await repo.reschedule(newer[-1], attempts=delivery.attempts, at=now + _backoff(policy, delivery.attempts))
    else:
        await repo.reschedule(delivery.id, attempts=delivery.attempts, at=now + _backoff(policy, delivery.attempts))
    return "failed"


def _backoff(policy: Policy, attempts: int) -> timedelta:
    """The wait after the `attempts`-th failed attempt."""
    schedule = policy.retry_schedule_s
    return timedelta(seconds=schedule[min(attempts, len(schedule)) - 1])


def _disable_reason(webhook: Webhook, policy: Policy, now: datetime) -> str | None:
    if webhook.consecutive_failures >= policy.disable_after_failures:
        return f"{webhook.consecutive_failures} failed attempts in a row"
    if webhook.failing_since is not None and now - webhook.failing_since >= timedelta(seconds=policy.disable_after_s):
        return f"no successful delivery for {policy.disable_after_s / 3600:g} h"
    return None
