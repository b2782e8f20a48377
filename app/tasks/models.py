"""The task table: one row per Meshy task, the source of truth for its state."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import DateTime, ForeignKey, Index, Integer, String, Uuid, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base
from app.core.ids import new_id


class TaskStatus(StrEnum):
    PENDING = "PENDING"
    IN_PROGRESS = "IN_PROGRESS"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"


TERMINAL = frozenset({TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELED})


class TaskType(StrEnum):
    TEXT_TO_3D_PREVIEW = "text-to-3d-preview"
    TEXT_TO_3D_REFINE = "text-to-3d-refine"
    IMAGE_TO_3D = "image-to-3d"
    MULTI_IMAGE_TO_3D = "multi-image-to-3d"
    TEXT_TO_IMAGE = "text-to-image"
    IMAGE_TO_IMAGE = "image-to-image"
    REMESH = "remesh"
    CONVERT = "convert"
    RESIZE = "resize"
    RETEXTURE = "retexture"
    TEXT_TO_TEXTURE = "text-to-texture"
    UV_UNWRAP = "uv-unwrap"
    PRINT_ANALYZE = "print-analyze"
    PRINT_REPAIR = "print-repair"
    PRINT_MULTI_COLOR = "print-multi-color"
    RIG = "rig"
    ANIMATE = "animate"
    TEXT_TO_MOTION = "text-to-motion"
    MESH_SEGMENTATION = "mesh-segmentation"
    PART_COMPLETION = "part-completion"
    TALKING_HEAD = "talking-head"


class Task(Base):
    __tablename__ = "tasks"
    __table_args__ = (
        Index("ix_tasks_account_id_created_at", "account_id", "created_at", "id"),
        # Queue position (`preceding_tasks`) and the reaper read only unfinished rows.
        Index("ix_tasks_pending_pool", "pool", "queued_at", "id", postgresql_where=text("status = 'PENDING'")),
        Index("ix_tasks_unfinished", "status", postgresql_where=text("status IN ('PENDING', 'IN_PROGRESS')")),
        # A create counts the account's unfinished tasks of the limited types: without it that count walked every
        # unfinished task of every account (or the account's whole history).
        Index(
            "ix_tasks_account_unfinished",
            "account_id",
            "type",
            postgresql_where=text("status IN ('PENDING', 'IN_PROGRESS')"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(16), default=TaskStatus.PENDING.value)
    progress: Mapped[int] = mapped_column(Integer, default=0)
    ai_model: Mapped[str] = mapped_column(String(40))
    runner: Mapped[str] = mapped_column(String(40))
    pool: Mapped[str] = mapped_column(String(40))
    # The normalised request, echoed back on the task object and handed to the runner.
    params: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    parent_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    seed: Mapped[int] = mapped_column(Integer, default=0)
    consumed_credits: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # {"model": {"glb": "model.glb", ...}, "textures": [{"base_color": "texture_0.png"}], "thumbnail": ...}
    outputs: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    task_error: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # The task's place in its pool's queue (and its arq score): created_at, moved earlier by the plan's priority.
    queued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    deadline_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class IdempotencyKey(Base):
    """A create request's `Idempotency-Key`: the same key and body give back the same task for 24 h."""

    __tablename__ = "idempotency_keys"

    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    task_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), index=True)
