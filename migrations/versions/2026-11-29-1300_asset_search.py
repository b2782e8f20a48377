"""asset search: collections, assets, embedding spaces, and the pgvector extension where the server has it

Revision ID: a7c4e19d2b60
Revises: 5b1f3c2a9d41
Create Date: 2026-11-29 13:00:00.000000

The vector tables (one per embedding space) are created when a space is first used, not here. A server without
pgvector (`pg_available_extensions` lacks `vector`) gets the plain tables; asset search then answers 503.
"""

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "a7c4e19d2b60"
down_revision: str | None = "5b1f3c2a9d41"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.execute(sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")).scalar():
        # pgvector is not a trusted extension: a role that may not create it gets the plain tables and a warning
        # (an administrator can `CREATE EXTENSION vector` later; search is off until then), not a failed upgrade.
        try:
            with bind.begin_nested():
                bind.execute(sa.text("CREATE EXTENSION IF NOT EXISTS vector"))
        except sa.exc.DBAPIError as exc:
            logging.getLogger("alembic").warning("pgvector not enabled (asset search stays off): %s", exc.orig)
    op.create_table(
        "asset_collections",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=True),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name", name="uq_asset_collections_name"),
    )
    op.create_index("ix_asset_collections_account_id", "asset_collections", ["account_id"])
    op.create_table(
        "assets",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=True),
        sa.Column("collection_id", sa.Uuid(), nullable=True),
        sa.Column("task_id", sa.Uuid(), nullable=True),
        sa.Column("source_key", sa.String(length=500), nullable=False),
        sa.Column("caption", sa.Text(), server_default="", nullable=False),
        sa.Column("files", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("face_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["collection_id"], ["asset_collections.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("collection_id", "source_key", name="uq_assets_collection_source"),
        sa.UniqueConstraint("task_id"),
    )
    op.create_index("ix_assets_account_id", "assets", ["account_id"])
    op.create_table(
        "embedding_spaces",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("table_name", sa.String(length=63), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("modality", sa.String(length=16), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("name"),
        sa.UniqueConstraint("table_name"),
    )


def downgrade() -> None:
    bind = op.get_bind()
    for (table,) in bind.execute(sa.text("SELECT table_name FROM embedding_spaces")).all():
        op.execute(f'DROP TABLE IF EXISTS "{table}"')
    op.drop_table("embedding_spaces")
    op.drop_index("ix_assets_account_id", table_name="assets")
    op.drop_table("assets")
    op.drop_index("ix_asset_collections_account_id", table_name="asset_collections")
    op.drop_table("asset_collections")
