"""mf_create_task(): a create as one round trip, its account lock held only while the server runs it.

Revision ID: e5a2b7c9d1f4
Revises: d4f1a9c2b8e3
Create Date: 2026-11-29 20:30:00

Creates of one account are serialised by a lock on its row (the concurrency limit and the charge must see each
other's tasks). Sent statement by statement, the lock was held across several client round trips, each waiting on a
busy API's event loop: under 16 parallel creates of one account the p99 was near a second. In a PL/pgSQL function
every statement still takes a fresh snapshot (READ COMMITTED, VOLATILE), so the count after the lock sees every
create that committed before it, and the whole create runs in one round trip, in its own transaction.

With `p_outputs` the task is created SUCCEEDED (an answer found by search), charged and announced in the same
transaction.

Outcomes: created, unauthorized (key revoked, or account gone), replay / replay_deleted / idempotency_conflict
(Idempotency-Key), no_slot (the plan's limit of unfinished tasks), insufficient_credits.
"""

from __future__ import annotations

from alembic import op

revision: str = "e5a2b7c9d1f4"
down_revision: str | None = "d4f1a9c2b8e3"
branch_labels = None
depends_on = None

_FUNCTION = """
CREATE FUNCTION mf_create_task(
    p_account_id uuid, p_key_id uuid, p_task_id uuid, p_type text, p_ai_model text, p_runner text, p_pool text,
    p_params jsonb, p_parent_id uuid, p_seed integer, p_price integer, p_head_start_s double precision,
    p_max_head_start_s double precision, p_limited_types text[], p_slot_factor integer,
    p_idempotency_key text, p_request_hash text, p_idempotency_window_s double precision, p_channel text,
    p_outputs jsonb, p_retention_s double precision
) RETURNS TABLE (outcome text, task_id uuid, created_at timestamptz, queued_at timestamptz)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    v_max_concurrent integer;
    v_priority integer;
    v_key_valid boolean;
    v_seen record;
    v_unfinished bigint;
    v_balance bigint;
    v_head_start double precision;
    v_queued_at timestamptz;
    v_created_at timestamptz;
BEGIN
    -- The lock first: what follows sees every create of this account that committed before it.
    SELECT p.max_concurrent_tasks, p.priority,
           EXISTS (SELECT 1 FROM api_keys k
                    WHERE k.id = p_key_id AND k.account_id = p_account_id AND k.revoked_at IS NULL)
      INTO v_max_concurrent, v_priority, v_key_valid
      FROM accounts a JOIN plans p ON p.name = a.plan
     WHERE a.id = p_account_id
       FOR UPDATE OF a;
    IF NOT FOUND OR NOT v_key_valid THEN
        RETURN QUERY SELECT 'unauthorized'::text, NULL::uuid, NULL::timestamptz, NULL::timestamptz;
        RETURN;
    END IF;

    IF p_idempotency_key IS NOT NULL THEN
        SELECT * INTO v_seen FROM idempotency_keys i WHERE i.account_id = p_account_id AND i.key = p_idempotency_key;
        IF FOUND THEN
            IF v_seen.created_at < now() - make_interval(secs => p_idempotency_window_s) THEN
                DELETE FROM idempotency_keys i WHERE i.account_id = p_account_id AND i.key = p_idempotency_key;
            ELSIF v_seen.request_hash <> p_request_hash THEN
                RETURN QUERY SELECT 'idempotency_conflict'::text, NULL::uuid, NULL::timestamptz, NULL::timestamptz;
                RETURN;
            ELSIF EXISTS (SELECT 1 FROM tasks t WHERE t.id = v_seen.task_id) THEN
                RETURN QUERY SELECT 'replay'::text, v_seen.task_id, NULL::timestamptz, NULL::timestamptz;
                RETURN;
            ELSE
                RETURN QUERY SELECT 'replay_deleted'::text, v_seen.task_id, NULL::timestamptz, NULL::timestamptz;
                RETURN;
            END IF;
        END IF;
    END IF;

    SELECT count(*) INTO v_unfinished FROM tasks t
     WHERE t.account_id = p_account_id AND t.status IN ('PENDING', 'IN_PROGRESS') AND t.type = ANY (p_limited_types);
    IF v_unfinished >= v_max_concurrent::bigint * p_slot_factor THEN
        RETURN QUERY SELECT 'no_slot'::text, NULL::uuid, NULL::timestamptz, NULL::timestamptz;
        RETURN;
    END IF;

    IF p_price > 0 THEN
        UPDATE accounts a SET balance = a.balance - p_price
         WHERE a.id = p_account_id AND a.balance >= p_price
        RETURNING a.balance INTO v_balance;
        IF NOT FOUND THEN
            RETURN QUERY SELECT 'insufficient_credits'::text, NULL::uuid, NULL::timestamptz, NULL::timestamptz;
            RETURN;
        END IF;
    END IF;

    -- A plan's priority moves the task ahead in its pool's queue (never behind now, at most p_max_head_start_s).
    -- The clock after the lock: a create that waited for it does not enter ahead of those committed meanwhile.
    v_head_start := LEAST(p_max_head_start_s, GREATEST(0, v_priority * p_head_start_s));
    v_queued_at := clock_timestamp() - make_interval(secs => v_head_start);
    IF p_outputs IS NULL THEN
        INSERT INTO tasks (id, account_id, type, status, progress, ai_model, runner, pool, params, parent_id, seed,
                           consumed_credits, attempts, outputs, queued_at)
        VALUES (p_task_id, p_account_id, p_type, 'PENDING', 0, p_ai_model, p_runner, p_pool, p_params, p_parent_id,
                p_seed, p_price, 0, '{}'::jsonb, v_queued_at)
        RETURNING tasks.created_at INTO v_created_at;
    ELSE
        -- Answered without a worker (retrieve-before-generate): SUCCEEDED in the same transaction as the charge,
        -- with the outbox rows of the account's webhooks, as TaskRepository.notify writes them for a change.
        INSERT INTO tasks (id, account_id, type, status, progress, ai_model, runner, pool, params, parent_id, seed,
                           consumed_credits, attempts, outputs, queued_at, started_at, finished_at, expires_at)
        VALUES (p_task_id, p_account_id, p_type, 'SUCCEEDED', 100, p_ai_model, p_runner, p_pool, p_params,
                p_parent_id, p_seed, p_price, 0, p_outputs, v_queued_at, clock_timestamp(), clock_timestamp(),
                clock_timestamp() + make_interval(secs => p_retention_s))
        RETURNING tasks.created_at INTO v_created_at;
        INSERT INTO webhook_deliveries (webhook_id, task_id, snapshot, preceding_tasks)
        SELECT w.id, t.id, to_jsonb(t), 0
          FROM tasks t JOIN webhooks w ON w.account_id = t.account_id AND w.enabled
         WHERE t.id = p_task_id;
    END IF;
    IF p_price > 0 THEN
        INSERT INTO credit_ledger (account_id, delta, balance_after, reason, task_id, note)
        VALUES (p_account_id, -p_price, v_balance, 'charge', p_task_id, '');
    END IF;
    IF p_idempotency_key IS NOT NULL THEN
        INSERT INTO idempotency_keys (account_id, key, request_hash, task_id)
        VALUES (p_account_id, p_idempotency_key, p_request_hash, p_task_id);
    END IF;
    IF p_outputs IS NOT NULL THEN
        PERFORM pg_notify(p_channel, json_build_object(
            'id', p_task_id, 'pool', p_pool, 'status', 'SUCCEEDED', 'progress', 100)::text);
    ELSIF v_head_start > 0 THEN  -- it enters ahead of waiting tasks: their streams' queue positions move
        PERFORM pg_notify(p_channel, json_build_object(
            'id', p_task_id, 'pool', p_pool, 'status', 'PENDING', 'progress', 0)::text);
    END IF;
    RETURN QUERY SELECT 'created'::text, p_task_id, v_created_at, v_queued_at;
END
$$
"""


def upgrade() -> None:
    op.execute(_FUNCTION)


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS mf_create_task")  # the only function of that name
