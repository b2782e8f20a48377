"""The services a benchmark run needs, started and stopped by the run itself.

Embedded Postgres and Valkey in a temporary MESHFOUNDRY_HOME, unless DATABASE_URL / REDIS_URL are set: then a fresh
database `mf_bench_<pid>` is created on that server (and dropped at the end) and every Redis key uses a
`mfbench:<pid>:` queue prefix (removed at the end). API, worker and baseline servers are subprocesses on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from app.core import embedded
from app.core.config import normalize_database_url

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
NOFILE = 20_000
BENCH_PLAN = "bench-unlimited"
TENANTS = 16  # accounts besides the main one, for the many-accounts create phase


def _preexec() -> None:
    """Child side: die with the bench, and allow many sockets (SSE fan-out)."""
    embedded.die_with_parent()
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = NOFILE if hard == resource.RLIM_INFINITY else min(NOFILE, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def listeners(port: int) -> int:
    """Sockets listening on TCP `port` (IPv4), from /proc/net/tcp: one per SO_REUSEPORT process."""
    with open("/proc/net/tcp") as table:
        rows = [line.split() for line in table.readlines()[1:]]
    return sum(1 for row in rows if row[3] == "0A" and int(row[1].rsplit(":", 1)[1], 16) == port)


def asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def with_database(url: str, name: str) -> str:
    head, _, tail = url.partition("?")
    return f"{head.rsplit('/', 1)[0]}/{name}" + (f"?{tail}" if tail else "")


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    port: int = 0
    log: Path | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid


@dataclass
class Stack:
    """Datastores, an account with a key, and the child processes; `close()` undoes all of it."""

    quick: bool = False
    home: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="mfbench-")))
    database_url: str = ""
    redis_url: str = ""
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    api_key: str = ""
    account_id: uuid.UUID | None = None
    # Keys of TENANTS more accounts on the same plan, for the phases that load many accounts at once.
    tenant_keys: list[str] = field(default_factory=list)
    prefix: str = field(default_factory=lambda: f"mfbench:{os.getpid()}")
    external_db: bool = False
    external_redis: bool = False
    children: list[Server] = field(default_factory=list)
    _pg: Any = None
    _redis: Any = None
    _admin_dsn: str = ""
    _db_name: str = ""

    # --- setup ------------------------------------------------------------------------------------------

    def start(self) -> None:
        (self.home / "logs").mkdir(parents=True, exist_ok=True)
        self._db_name = f"mf_bench_{os.getpid()}"
        configured = os.environ.get("DATABASE_URL")
        if configured:
            self.external_db = True
            base = normalize_database_url(configured)
            self._admin_dsn = asyncpg_dsn(embedded.postgres_admin_url(base))
            asyncio.run(
                self._admin(
                    f'DROP DATABASE IF EXISTS "{self._db_name}" WITH (FORCE)', f'CREATE DATABASE "{self._db_name}"'
                )
            )
            self.database_url = with_database(base, self._db_name)
        else:
            self._pg, self.database_url = embedded.start_postgres(self.home / "pg", database=self._db_name)
        configured_redis = os.environ.get("REDIS_URL")
        if configured_redis:
            self.external_redis = True
            self.redis_url = configured_redis
        else:
            self._redis = embedded.start_redis(self.home / "redis", persist=False)
            self.redis_url = self._redis.url
        from app.cli import migrate

        migrate(self.database_url)
        asyncio.run(self._create_key())

    async def _admin(self, *statements: str) -> None:
        conn = await asyncpg.connect(self._admin_dsn)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    async def _create_key(self) -> None:
        from app.core.db import create_engine, sessionmaker
        from billing import service as billing_service

        engine = create_engine(self.database_url, pool_size=1)
        try:
            async with sessionmaker(engine)() as session, session.begin():
                plan: dict[str, str] = {}
                if hasattr(billing_service, "upsert_plan"):  # plans with rate and concurrency limits
                    # Limits out of the way: the bench measures the service, not the plan's throttle.
                    await billing_service.upsert_plan(
                        session, name=BENCH_PLAN, requests_per_second=1_000_000, max_concurrent_tasks=1_000_000
                    )
                    plan["plan"] = BENCH_PLAN
                account = await billing_service.create_account(session, name="bench", credits=10**9, **plan)
                issued = await billing_service.issue_key(
                    session, account=account, name="bench", secret=self.secret.encode()
                )
                tenants = []
                for n in range(TENANTS):
                    tenant = await billing_service.create_account(
                        session, name=f"bench-tenant-{n}", credits=10**9, **plan
                    )
                    tenants.append(
                        await billing_service.issue_key(
                            session, account=tenant, name="bench", secret=self.secret.encode()
                        )
                    )
        finally:
            await engine.dispose()
        self.api_key = issued.plaintext
        self.account_id = account.id
        self.tenant_keys = [t.plaintext for t in tenants]

    def queue(self, name: str) -> str:
        return f"{self.prefix}:{name}"

    def env(self, **extra: str) -> dict[str, str]:
        values = {
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "MESHFOUNDRY_HOME": str(self.home / "home"),
            "MESHFOUNDRY_SECRET_KEY": self.secret,
            "APP_ENV": "development",
            "PROCEDURAL_STEP_DELAY_S": "0",
            "PYTHONUNBUFFERED": "1",
        }
        values.update(extra)
        return embedded.child_env(**values)

    # --- child processes --------------------------------------------------------------------------------

    def spawn(self, name: str, args: list[str], env: dict[str, str], port: int = 0) -> Server:
        log = self.home / "logs" / f"{name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                args,
                env=env,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_preexec,
            )
        server = Server(name=name, proc=proc, port=port, log=log)
        self.children.append(server)
        return server

    def start_uvicorn(
        self, name: str, app: str, env: dict[str, str], timeout: float = 60.0, workers: int = 1
    ) -> Server:
        port = free_port()
        args = [sys.executable, "-m", "uvicorn", app, "--host", HOST, "--port", str(port), "--log-level", "warning"]
        if workers > 1:
            args += ["--workers", str(workers)]
        server = self.spawn(name, args, env, port)
        self.wait_port(server, timeout)
        return server

    def start_cli_api(self, name: str, env: dict[str, str], workers: int, timeout: float = 60.0) -> Server:
        """`meshfoundry api --workers N`: a process per worker, each on its own SO_REUSEPORT socket."""
        port = free_port()
        args = [sys.executable, "-m", "app.cli", "api", "--host", HOST, "--port", str(port), "--workers", str(workers),
                "--log-level", "warning"]  # fmt: skip
        server = self.spawn(name, args, env, port)
        deadline = time.monotonic() + timeout
        while listeners(port) < workers:  # each process listens once its startup is done: wait for all of them
            if server.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name}: {listeners(port)} of {workers} listening:\n{self.log_tail(server)}")
            time.sleep(0.05)
        return server

    def start_api(self, name: str, queue: str) -> Server:
        return self.start_uvicorn(name, "app.api.main:app", self.env(QUEUE_NAME=self.queue(queue)))

    def start_baseline(self) -> Server:
        return self.start_uvicorn("baseline", "bench.baseline_app:app", self.env())

    def start_worker(self, queue: str, poll_delay_s: float, pool: str = "default") -> Server:
        env = self.env(
            MESHFOUNDRY_POOL=pool, QUEUE_NAME=self.queue(queue), WORKER_POLL_DELAY_S=str(poll_delay_s), LOG_LEVEL="INFO"
        )
        return self.spawn("worker", [sys.executable, "-m", "inference.worker"], env)

    def start_noop_worker(self, queue: str, poll_delay_s: float) -> Server:
        env = self.env(BENCH_QUEUE=self.queue(queue), WORKER_POLL_DELAY_S=str(poll_delay_s))
        return self.spawn("arq-noop", [sys.executable, "-m", "bench.arq_noop"], env)

    def wait_port(self, server: Server, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if server.proc.poll() is not None:
                raise RuntimeError(f"{server.name} exited with {server.proc.returncode}:\n{self.log_tail(server)}")
            with contextlib.suppress(OSError), socket.create_connection((HOST, server.port), timeout=0.5):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{server.name} did not listen on {server.port}:\n{self.log_tail(server)}")
            time.sleep(0.05)

    def log_tail(self, server: Server, chars: int = 3000) -> str:
        if server.log is None or not server.log.exists():
            return ""
        return server.log.read_text(errors="replace")[-chars:]

    def stop(self, server: Server, timeout: float = 10.0) -> None:
        if server.proc.poll() is None:
            server.proc.send_signal(signal.SIGTERM)
            try:
                server.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                server.proc.kill()
                server.proc.wait()
        if server in self.children:
            self.children.remove(server)

    # --- teardown ---------------------------------------------------------------------------------------

    def close(self) -> None:
        for server in list(reversed(self.children)):
            with contextlib.suppress(Exception):
                self.stop(server, timeout=5.0)
        if self.external_redis and self.redis_url:
            with contextlib.suppress(Exception):
                asyncio.run(self._clean_redis())
        if self._redis is not None:
            self._redis.stop()
        if self.external_db and self._admin_dsn:
            with contextlib.suppress(Exception):
                asyncio.run(self._admin(f'DROP DATABASE IF EXISTS "{self._db_name}" WITH (FORCE)'))
        if self._pg is not None:
            self._pg.cleanup()
        shutil.rmtree(self.home, ignore_errors=True)

    async def _clean_redis(self) -> None:
        """Our queues, and the arq job/result keys of every task and no-op job this run created."""
        from redis.asyncio import Redis

        redis = Redis.from_url(self.redis_url)
        try:
            keys = [key async for key in redis.scan_iter(match=f"{self.prefix}:*")]
            if self.account_id is not None:  # the plan rate limiter's per-second counters (they expire anyway)
                keys += [key async for key in redis.scan_iter(match=f"ratelimit:{self.account_id}:*")]
            ids = list(NOOP_JOB_IDS)
            if self.database_url:
                with contextlib.suppress(Exception):
                    conn = await asyncpg.connect(asyncpg_dsn(self.database_url))
                    ids += [str(r[0]) for r in await conn.fetch("SELECT id FROM tasks")]
                    await conn.close()
            for job_id in ids:
                keys += [f"arq:{kind}:{job_id}" for kind in ("job", "result", "in-progress", "retry")]
            for start in range(0, len(keys), 500):
                await redis.delete(*keys[start : start + 500])
        finally:
            await redis.aclose()


NOOP_JOB_IDS: list[str] = []  # filled by the arq baseline, for cleaning an external Redis
