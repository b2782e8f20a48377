"""A create's concurrency count reads only the account's unfinished tasks, and stops at the plan's limit.

Revision ID: f6b3c8d2e5a7
Revises: e5a2b7c9d1f4
Create Date: 2026-11-30 01:10:00

`mf_create_task()` counts the account's PENDING and IN_PROGRESS tasks of the limited types under the account's row
lock. The only indexes it could use were the unfinished tasks of *every* account (`ix_tasks_unfinished`) or the
account's whole history (`ix_tasks_account_id_created_at`): a create's cost grew with the whole queue or with the
account's age, while it held the lock that serialises the account's creates. The partial index below holds only
unfinished rows, keyed by account and type, and the count stops at the limit (`LIMIT`): a create reads at most
`max_concurrent_tasks * slot_factor` index entries whatever the queue or the history.

The index is built CONCURRENTLY (outside the migration's transaction), so that upgrading a live deployment does not
block its creates.
"""

from __future__ import annotations

from alembic import op

revision: str = "f6b3c8d2e5a7"
down_revision: str | None = "e5a2b7c9d1f4"
branch_labels = None
depends_on = None

_UNBOUNDED = """
    SELECT count(*) INTO v_unfinished FROM tasks t
     WHERE t.account_id = p_account_id AND t.status IN ('PENDING', 'IN_PROGRESS') AND t.type = ANY (p_limited_types);
"""
_BOUNDED = """
    SELECT count(*) INTO v_unfinished FROM (
        SELECT 1 FROM tasks t
         WHERE t.account_id = p_account_id AND t.status IN ('PENDING', 'IN_PROGRESS')
           AND t.type = ANY (p_limited_types)
         LIMIT v_max_concurrent::bigint * p_slot_factor
    ) AS counted;
"""


def _function(count: str) -> str:
    """mf_create_task()'s source as the previous revision created it, with its count statement replaced."""
    source = op.get_bind().exec_driver_sql("SELECT pg_get_functiondef('mf_create_task'::regproc)").scalar_one()
    for old in (_UNBOUNDED, _BOUNDED):
        if old.strip() in source:
            return source.replace(old.strip(), count.strip())
    raise RuntimeError("mf_create_task() does not hold the count this migration replaces")


def upgrade() -> None:
    with op.get_context().autocommit_block():
        # A concurrent build that failed or was cancelled leaves an INVALID index, which IF NOT EXISTS would keep.
        invalid = (
            op.get_bind()
            .exec_driver_sql(
                "SELECT 1 FROM pg_index"
                " WHERE indexrelid = to_regclass('ix_tasks_account_unfinished') AND NOT indisvalid"
            )
            .first()
        )
        if invalid is not None:
            op.execute("DROP INDEX CONCURRENTLY ix_tasks_account_unfinished")
        op.execute(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_tasks_account_unfinished ON tasks (account_id, type) "
            "WHERE status IN ('PENDING', 'IN_PROGRESS')"
        )
    op.execute(_function(_BOUNDED))


def downgrade() -> None:
    op.execute(_function(_UNBOUNDED))
    op.drop_index("ix_tasks_account_unfinished", table_name="tasks")
