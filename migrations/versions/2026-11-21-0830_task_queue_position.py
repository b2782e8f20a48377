"""task queue position: queued_at orders each pool's queue, so a plan's priority moves its tasks ahead

Revision ID: 5b1f3c2a9d41
Revises: 278b687a50b9
Create Date: 2026-11-21 08:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5b1f3c2a9d41"
down_revision: str | None = "278b687a50b9"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "tasks", sa.Column("queued_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False)
    )
    # Only unfinished tasks are ever ranked; finished rows keep the default and are not rewritten.
    op.execute("UPDATE tasks SET queued_at = created_at WHERE status IN ('PENDING', 'IN_PROGRESS')")
    op.drop_index("ix_tasks_pending_pool", table_name="tasks", postgresql_where=sa.text("status = 'PENDING'"))
    op.create_index(
        "ix_tasks_pending_pool",
        "tasks",
        ["pool", "queued_at", "id"],
        unique=False,
        postgresql_where=sa.text("status = 'PENDING'"),
    )


def downgrade() -> None:
    op.drop_index("ix_tasks_pending_pool", table_name="tasks", postgresql_where=sa.text("status = 'PENDING'"))
    op.create_index(
        "ix_tasks_pending_pool", "tasks", ["pool", "id"], unique=False, postgresql_where=sa.text("status = 'PENDING'")
    )
    op.drop_column("tasks", "queued_at")
