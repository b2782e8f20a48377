"""`meshfoundry keys|credits|plans|accounts|webhooks`: administration against the service's own database."""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings, get_settings
from app.core.db import create_engine, sessionmaker
from app.core.errors import AppError
from app.webhooks import service as webhook_service
from billing import service as billing_service
from billing.models import Account

# An action returns its exit code, or the code and a line to print on stdout once the transaction committed.
Action = Callable[[AsyncSession, Settings, argparse.Namespace], Awaitable[int | tuple[int, str]]]


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _run(action: Action) -> Callable[[argparse.Namespace], int]:
    """Open the database (embedded Postgres joined if needed), run `action` in one transaction."""

    def command(args: argparse.Namespace) -> int:
        from app.cli import NoService, database, existing_home, migrate  # the CLI owns the embedded servers

        try:
            settings = existing_home(get_settings())
        except NoService as exc:
            _say(f"error: {exc}")
            return 2

        async def go(url: str) -> int:
            engine = create_engine(url, pool_size=1)
            try:
                async with sessionmaker(engine)() as session, session.begin():
                    result = await action(session, settings, args)
            finally:
                await engine.dispose()
            code, line = result if isinstance(result, tuple) else (result, None)
            if line is not None:
                print(line, flush=True)
            return code

        with database(settings) as url:
            migrate(url)
            try:
                return asyncio.run(go(url))
            except AppError as exc:
                _say(f"error: {exc.detail}")
                return 2

    return command


def _uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an id: {value}") from exc


def _table(rows: list[dict[str, Any]]) -> None:
    if not rows:
        _say("(none)")
        return
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(str(row[c]).ljust(widths[c]) for c in columns))


async def keys_create(session: AsyncSession, settings: Settings, args: argparse.Namespace) -> int | tuple[int, str]:
    if args.account:
        account = await session.get(Account, args.account)
        if account is None:
            _say(f"error: no account {args.account}")
            return 2
    else:
        account = await billing_service.create_account(session, name=args.name, credits=args.credits, plan=args.plan)
        _say(f"account {account.id} ({account.name}, plan {account.plan}) with {args.credits} credits")
    issued = await billing_service.issue_key(session, account=account, name=args.name, secret=settings.secret())
    _say(f"key {issued.key.id} ({issued.key.prefix}…); shown once, store it now:")
    return 0, issued.plaintext  # printed after the commit, as the last line of stdout (for scripts)


async def keys_list(session: AsyncSession, _settings: Settings, args: argparse.Namespace) -> int:
    keys = await billing_service.list_keys(session, account_id=args.account)
    _table([{"id": k.id, "account": k.account_id, "prefix": k.prefix, "name": k.name,
             "created": f"{k.created_at:%Y-%m-%d %H:%M}",
             "last_used": f"{k.last_used_at:%Y-%m-%d %H:%M}" if k.last_used_at else "-",
             "revoked": f"{k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "-"} for k in keys])  # fmt: skip
    return 0


async def keys_revoke(session: AsyncSession, _settings: Settings, args: argparse.Namespace) -> int:
    key = await billing_service.revoke_key(session, key_id=args.key_id)
    if key is None:
        _say(f"error: no active key {args.key_id}")
        return 2
    _say(f"revoked {key.id} ({key.prefix}…)")
    return 0


async def credits_grant(session: AsyncSession, _settings: Settings, args: argparse.Namespace) -> int:
    balance = await billing_service.grant(session, account_id=args.account, amount=args.amount, note=args.note)
    if balance is None:
        _say("error: no such account, or the balance would go below zero")
        return 2
    print(balance)
    return 0


async def credits_show(session: AsyncSession, _settings: Settings, args: argparse.Namespace) -> int:
    account = await session.get(Account, args.account)
    if account is None:
        _say(f"error: no account {args.account}")
        return 2
    _say(f"{account.name} ({account.plan}): balance {account.balance}")
    entries = await billing_service.statement(session, account_id=account.id, limit=args.limit)
    _table([{"at": f"{e.created_at:%Y-%m-%d %H:%M:%S}", "delta": e.delta, "balance": e.balance_after,
             "reason": e.reason, "task": e.task_id or "-", "note": e.note} for e in entries])  # fmt: skip
    print(account.balance)
    return 0


async def plans_list(session: AsyncSession, _settings: Settings, _args: argparse.Namespace) -> int:
    plans = await billing_service.list_plans(session)
    _table([{"plan": p.name, "requests_per_second": p.requests_per_second,
             "max_concurrent_tasks": p.max_concurrent_tasks, "priority": p.priority} for p in plans])  # fmt: skip
    return 0


async def plans_set(session: AsyncSession, _settings: Settings, args: argparse.Namespace) -> int:
    plan = await billing_service.upsert_plan(
        session, name=args.name, requests_per_second=args.rps, max_concurrent_tasks=args.concurrency,
        priority=args.priority,
    )  # fmt: skip
    _say(f"plan {plan.name}: {plan.requests_per_second} req/s, {plan.max_concurrent_tasks} concurrent tasks")
    return 0


async def plans_assign(session: AsyncSession, _settings: Settings, args: argparse.Namespace) -> int:
    account = await billing_service.set_plan(session, account_id=args.account, plan=args.plan)
    if account is None:
        _say(f"error: no account {args.account}")
        return 2
    _say(f"{account.name} is on plan {account.plan}")
    return 0


async def accounts_list(session: AsyncSession, _settings: Settings, _args: argparse.Namespace) -> int:
    accounts = await billing_service.list_accounts(session)
    _table([{"id": a.id, "name": a.name, "plan": a.plan, "balance": a.balance,
             "created": f"{a.created_at:%Y-%m-%d %H:%M}"} for a in accounts])  # fmt: skip
    return 0


async def webhooks_create(session: AsyncSession, settings: Settings, args: argparse.Namespace) -> int | tuple[int, str]:
    if await session.get(Account, args.account) is None:
        _say(f"error: no account {args.account}")
        return 2
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    registered = await webhook_service.register(
        session, account_id=args.account, url=args.url, server_secret=settings.secret(),
        base_url=settings.public_url or f"http://{host}:{settings.port}", allow_local=settings.webhook_allow_local,
    )  # fmt: skip
    _say(f"webhook {registered.webhook.id} -> {args.url}; its signing secret is shown once, store it now:")
    return 0, registered.secret


async def webhooks_list(session: AsyncSession, _settings: Settings, args: argparse.Namespace) -> int:
    webhooks = await webhook_service.list_webhooks(session, account_id=args.account)
    _table([{"id": w.id, "url": w.url, "enabled": w.enabled, "failures": w.consecutive_failures,
             "last_error": (w.last_errors or [{}])[0].get("message", "-"),
             "disabled": w.disabled_reason or "-"} for w in webhooks])  # fmt: skip
    return 0


async def webhooks_delete(session: AsyncSession, _settings: Settings, args: argparse.Namespace) -> int:
    await webhook_service.delete_webhook(session, account_id=args.account, webhook_id=args.webhook_id)
    _say(f"deleted webhook {args.webhook_id}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    keys = sub.add_parser("keys", help="API keys").add_subparsers(dest="keys_command", required=True)
    create = keys.add_parser("create", help="a key for a new account (or --account); prints the key last")
    create.add_argument("--name", default="account")
    create.add_argument("--credits", type=int, default=1000)
    create.add_argument("--plan", default="pro")
    create.add_argument("--account", type=_uuid, help="add the key to this existing account instead")
    create.set_defaults(func=_run(keys_create))
    listing = keys.add_parser("list", help="keys (never their secrets)")
    listing.add_argument("--account", type=_uuid)
    listing.set_defaults(func=_run(keys_list))
    revoke = keys.add_parser("revoke", help="revoke a key by id; it is refused from the next request on")
    revoke.add_argument("key_id", type=_uuid)
    revoke.set_defaults(func=_run(keys_revoke))

    credits = sub.add_parser("credits", help="balances").add_subparsers(dest="credits_command", required=True)
    grant = credits.add_parser("grant", help="add (or, negative, remove) credits; prints the new balance")
    grant.add_argument("account", type=_uuid)
    grant.add_argument("amount", type=int)
    grant.add_argument("--note", default="")
    grant.set_defaults(func=_run(credits_grant))
    show = credits.add_parser("show", help="balance and recent ledger rows")
    show.add_argument("account", type=_uuid)
    show.add_argument("--limit", type=int, default=20)
    show.set_defaults(func=_run(credits_show))

    plans = sub.add_parser("plans", help="plans and their limits").add_subparsers(dest="plans_command", required=True)
    plans.add_parser("list").set_defaults(func=_run(plans_list))
    setter = plans.add_parser("set", help="create or change a plan")
    setter.add_argument("name")
    setter.add_argument("--rps", type=int, required=True, help="requests per second per account")
    setter.add_argument("--concurrency", type=int, required=True, help="unfinished tasks per account")
    setter.add_argument("--priority", type=int, default=0)
    setter.set_defaults(func=_run(plans_set))
    assign = plans.add_parser("assign", help="put an account on a plan")
    assign.add_argument("account", type=_uuid)
    assign.add_argument("plan")
    assign.set_defaults(func=_run(plans_assign))

    accounts = sub.add_parser("accounts", help="accounts").add_subparsers(dest="accounts_command", required=True)
    accounts.add_parser("list").set_defaults(func=_run(accounts_list))

    hooks = sub.add_parser("webhooks", help="an account's webhooks").add_subparsers(dest="webhooks_command",
                                                                                   required=True)  # fmt: skip
    hook_create = hooks.add_parser("create", help="register a URL for the account's task changes; prints the secret")
    hook_create.add_argument("url")
    hook_create.add_argument("--account", type=_uuid, required=True)
    hook_create.set_defaults(func=_run(webhooks_create))
    hook_list = hooks.add_parser("list", help="the account's webhooks, failures and last errors")
    hook_list.add_argument("--account", type=_uuid, required=True)
    hook_list.set_defaults(func=_run(webhooks_list))
    hook_delete = hooks.add_parser("delete", help="remove a webhook and its undelivered changes")
    hook_delete.add_argument("webhook_id", type=_uuid)
    hook_delete.add_argument("--account", type=_uuid, required=True)
    hook_delete.set_defaults(func=_run(webhooks_delete))
