"""Webhook endpoints of an account, and the outbox of deliveries still to make to them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, DateTime, ForeignKey, Identity, Index, Integer, String, Uuid, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base
from app.core.ids import new_id


class Webhook(Base):
    """An https URL that receives every task change of its account, signed with the endpoint's own secret."""

    __tablename__ = "webhooks"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(2048))
    # The signing secret is derived from this and the server's secret key: a database dump alone signs nothing.
    secret_seed: Mapped[str] = mapped_column(String(64))
    # The API's base URL as the registering client saw it: payload asset URLs use it when PUBLIC_URL is unset.
    base_url: Mapped[str] = mapped_column(String(2048))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    disabled_reason: Mapped[str | None] = mapped_column(String(200))
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    failing_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_success_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The newest failed attempts first: [{"at": iso, "task_id", "status_code" | null, "message"}], a few kept.
    last_errors: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list)


class WebhookDelivery(Base):
    """One task change still to deliver to one webhook (the outbox): written in the transaction of the change,
    deleted once delivered, given up or superseded. `snapshot` is the task row at that change."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        # The delivery loop's claim: what is due, and whether an earlier change of the same task still waits.
        Index("ix_webhook_deliveries_next_attempt_at", "next_attempt_at"),
        Index("ix_webhook_deliveries_webhook_id_task_id", "webhook_id", "task_id", "id"),
    )

    # Increasing in the order of the changes of a task (each change locks the task row until it commits).
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    webhook_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    # No foreign key: the snapshot is self-contained, and a deleted task's last changes are still delivered.
    task_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    snapshot: Mapped[dict[str, Any]] = mapped_column(JSONB)
    preceding_tasks: Mapped[int] = mapped_column(Integer, server_default="0")
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
