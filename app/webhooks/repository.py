"""All SQL of webhooks: endpoints per account, and claiming and settling the outbox's deliveries."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import delete, exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from app.webhooks.models import Webhook, WebhookDelivery


class WebhookRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, webhook: Webhook) -> Webhook:
        self.session.add(webhook)
        await self.session.flush()
        return webhook

    async def get_owned(self, webhook_id: uuid.UUID, account_id: uuid.UUID) -> Webhook | None:
        stmt = select(Webhook).where(Webhook.id == webhook_id, Webhook.account_id == account_id)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def list_owned(self, account_id: uuid.UUID) -> list[Webhook]:
        stmt = select(Webhook).where(Webhook.account_id == account_id).order_by(Webhook.created_at, Webhook.id)
        return list((await self.session.execute(stmt)).scalars())

    async def count_enabled(self, account_id: uuid.UUID) -> int:
        stmt = select(func.count()).where(Webhook.account_id == account_id, Webhook.enabled.is_(True))
        return int((await self.session.execute(stmt)).scalar_one())

    async def delete(self, webhook_id: uuid.UUID) -> None:
        await self.session.execute(delete(Webhook).where(Webhook.id == webhook_id))

    async def lock(self, webhook_id: uuid.UUID) -> Webhook | None:
        """The webhook, locked for its counters; FOR NO KEY UPDATE, so a task change inserting outbox rows for it
        (which takes a KEY SHARE lock through the foreign key) never waits on a delivery being settled."""
        stmt = select(Webhook).where(Webhook.id == webhook_id).with_for_update(key_share=True)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def get_many(self, webhook_ids: set[uuid.UUID]) -> dict[uuid.UUID, Webhook]:
        rows = await self.session.execute(select(Webhook).where(Webhook.id.in_(webhook_ids)))
        return {webhook.id: webhook for webhook in rows.scalars()}

    async def claim_due(self, now: datetime, *, limit: int, lease: timedelta) -> list[WebhookDelivery]:
        """Take up to `limit` due deliveries of enabled webhooks, each the oldest waiting change of its task for its
        webhook (so change n+1 never overtakes n), and lease them: due again only if this worker dies.

        SKIP LOCKED lets several workers claim at once; an earlier change another worker holds still blocks the
        later ones, since it stays in the table until it is settled.
        """
        earlier = aliased(WebhookDelivery)
        due = (
            select(WebhookDelivery.id)
            .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
            .where(
                WebhookDelivery.next_attempt_at <= now,
                Webhook.enabled.is_(True),
                ~exists().where(
                    earlier.webhook_id == WebhookDelivery.webhook_id,
                    earlier.task_id == WebhookDelivery.task_id,
                    earlier.id < WebhookDelivery.id,
                ),
            )
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
            .limit(limit)
            .with_for_update(of=WebhookDelivery, skip_locked=True)
        )
        result = await self.session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_(due.scalar_subquery()))
            .values(attempts=WebhookDelivery.attempts + 1, next_attempt_at=now + lease)
            .returning(WebhookDelivery)
        )
        return sorted(result.scalars(), key=lambda delivery: delivery.id)

    async def newer_waiting(self, delivery: WebhookDelivery) -> list[int]:
        """Ids of the later changes of the same task still waiting for the same webhook, oldest first."""
        stmt = (
            select(WebhookDelivery.id)
            .where(
                WebhookDelivery.webhook_id == delivery.webhook_id,
                WebhookDelivery.task_id == delivery.task_id,
                WebhookDelivery.id > delivery.id,
            )
            .order_by(WebhookDelivery.id)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def remove(self, delivery_ids: list[int]) -> None:
        await self.session.execute(delete(WebhookDelivery).where(WebhookDelivery.id.in_(delivery_ids)))

    async def reschedule(self, delivery_id: int, *, attempts: int, at: datetime) -> None:
        await self.session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id)
            .values(attempts=attempts, next_attempt_at=at)
        )

    async def drop_disabled(self) -> int:
        """Forget the deliveries of every disabled webhook: a change whose transaction read the webhook as enabled
        just before it was disabled can commit its outbox row after `drop_waiting` ran."""
        result = await self.session.execute(
            delete(WebhookDelivery).where(
                WebhookDelivery.webhook_id.in_(select(Webhook.id).where(Webhook.enabled.is_(False)))
            )
        )
        return int(result.rowcount or 0)

    async def drop_waiting(self, webhook_id: uuid.UUID) -> None:
        """Forget a disabled webhook's waiting deliveries."""
        await self.session.execute(delete(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id))
