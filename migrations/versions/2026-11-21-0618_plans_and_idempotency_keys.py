"""plans and idempotency keys

Revision ID: 278b687a50b9
Revises: 77e01da72473
Create Date: 2026-11-21 06:18:07.170012
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "278b687a50b9"
down_revision: str | None = "77e01da72473"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "plans",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("requests_per_second", sa.Integer(), nullable=False),
        sa.Column("max_concurrent_tasks", sa.Integer(), nullable=False),
        sa.Column("priority", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_plans")),
    )
    # Meshy's tiers (meshy-api.md §15), seeded here because accounts.plan references them from the start.
    plans = sa.table(
        "plans",
        sa.column("name", sa.String),
        sa.column("requests_per_second", sa.Integer),
        sa.column("max_concurrent_tasks", sa.Integer),
        sa.column("priority", sa.Integer),
    )
    op.bulk_insert(
        plans,
        [
            {"name": "pro", "requests_per_second": 20, "max_concurrent_tasks": 10, "priority": 0},
            {"name": "studio", "requests_per_second": 20, "max_concurrent_tasks": 20, "priority": 1},
            {"name": "premium", "requests_per_second": 20, "max_concurrent_tasks": 30, "priority": 1},
            {"name": "ultra", "requests_per_second": 20, "max_concurrent_tasks": 100, "priority": 2},
            {"name": "enterprise", "requests_per_second": 100, "max_concurrent_tasks": 50, "priority": 3},
        ],
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("task_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_idempotency_keys_account_id_accounts"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("account_id", "key", name=op.f("pk_idempotency_keys")),
    )
    op.create_index(op.f("ix_idempotency_keys_created_at"), "idempotency_keys", ["created_at"], unique=False)
    op.add_column("accounts", sa.Column("plan", sa.String(length=40), server_default="pro", nullable=False))
    op.create_index(op.f("ix_accounts_plan"), "accounts", ["plan"], unique=False)
    op.create_foreign_key(op.f("fk_accounts_plan_plans"), "accounts", "plans", ["plan"], ["name"], onupdate="CASCADE")


def downgrade() -> None:
    op.drop_constraint(op.f("fk_accounts_plan_plans"), "accounts", type_="foreignkey")
    op.drop_index(op.f("ix_accounts_plan"), table_name="accounts")
    op.drop_column("accounts", "plan")
    op.drop_index(op.f("ix_idempotency_keys_created_at"), table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
    op.drop_table("plans")
