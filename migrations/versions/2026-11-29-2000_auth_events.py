"""Auth change notifications: a trigger NOTIFYs `auth_events` whenever a cached principal could be stale.

Revision ID: d4f1a9c2b8e3
Revises: c3e8d5a1f0b7
Create Date: 2026-11-29 20:00:00

The API caches principals (key -> account, plan limits) per process and clears the cache on these notifications
(billing/auth.py). Triggers rather than application code, so that every path is covered: the CLI, the admin API,
an operator's UPDATE in psql. Statement-level and column-scoped: recording a key's use (`last_used_at`) or moving
a balance does not fire them.
"""

from __future__ import annotations

from alembic import op

revision: str = "d4f1a9c2b8e3"
down_revision: str | None = "c3e8d5a1f0b7"
branch_labels = None
depends_on = None

_TRIGGERS = {
    "api_keys": "UPDATE OF revoked_at, key_hash, account_id OR DELETE OR TRUNCATE",
    "accounts": "UPDATE OF plan, id OR DELETE OR TRUNCATE",
    "plans": "UPDATE OR DELETE OR TRUNCATE",
}


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION notify_auth_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('auth_events', TG_TABLE_NAME);
            RETURN NULL;
        END
        $$
        """
    )
    for table, events in _TRIGGERS.items():
        op.execute(
            f"CREATE TRIGGER {table}_auth_change AFTER {events} ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION notify_auth_change()"
        )


def downgrade() -> None:
    for table in _TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_auth_change ON {table}")
    op.execute("DROP FUNCTION IF EXISTS notify_auth_change()")
