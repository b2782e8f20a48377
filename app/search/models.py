"""Searchable assets: collections, assets, and the registry of embedding spaces.

The vectors themselves live in one table per embedding space (`asset_vectors_<space>`), created when a space is
first used (app.search.store.ensure_space): a new model is a new space with its own dimension and HNSW index, never
a migration of an old one. Those tables are not in this metadata; Alembic's drift check ignores them
(migrations/env.py).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint, Uuid, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base
from app.core.ids import new_id

VECTOR_TABLE_PREFIX = "asset_vectors_"


class AssetCollection(Base):
    """A library an operator imported: shared with every account (`account_id` null) or with one."""

    __tablename__ = "asset_collections"
    __table_args__ = (UniqueConstraint("name", name="uq_asset_collections_name"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100))
    account_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    description: Mapped[str] = mapped_column(Text, default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Asset(Base):
    """One searchable 3D asset: a SUCCEEDED task of an account (its private `generated` collection) or a library
    file. Files: a task's own folder in the asset store, or the asset's folder (keyed by its id) for a library."""

    __tablename__ = "assets"
    __table_args__ = (
        UniqueConstraint("collection_id", "source_key", name="uq_assets_collection_source"),
        Index("ix_assets_account_id", "account_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    # Exactly one of the two: an account's own generated asset, or a collection's member.
    account_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    collection_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("asset_collections.id", ondelete="CASCADE"))
    task_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("tasks.id", ondelete="CASCADE"), unique=True
    )  # deleting the task removes it
    source_key: Mapped[str] = mapped_column(String(500))  # the file's path in its library, or the task id
    caption: Mapped[str] = mapped_column(Text, default="", server_default="")
    # {"glb": "model.glb", "fbx": ..., "thumbnail": "preview.png"}: file names in the asset's folder
    files: Mapped[dict[str, str]] = mapped_column(JSONB, default=dict)
    face_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class EmbeddingSpace(Base):
    """One embedding model's vector table: its name, dimension and what it embeds."""

    __tablename__ = "embedding_spaces"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    table_name: Mapped[str] = mapped_column(String(63), unique=True)
    dim: Mapped[int] = mapped_column(Integer)
    modality: Mapped[str] = mapped_column(String(16))  # "text" (captions) or "image" (rendered views)
    model: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
