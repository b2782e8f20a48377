"""Test services: real Postgres and Redis (embedded, or DATABASE_URL / REDIS_URL), one database per test."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

os.environ["APP_ENV"] = "testing"

import asyncpg
import httpx
import pytest
import pytest_asyncio
import uvicorn
from arq.connections import create_pool
from arq.worker import Worker

from app.api.main import create_app
from app.core import embedded
from app.core.config import Settings, normalize_database_url
from app.core.db import create_engine, sessionmaker
from billing import service as billing_service

ROOT = Path(__file__).resolve().parents[1]
TEST_HOME = ROOT / ".meshfoundry-test"


@dataclass(frozen=True)
class Services:
    database_url: str  # the server's template database (migrated)
    redis_url: str

    def database(self, name: str) -> str:
        head, _, tail = self.database_url.partition("?")
        return f"{head.rsplit('/', 1)[0]}/{name}" + (f"?{tail}" if tail else "")


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    TEST_HOME.mkdir(exist_ok=True)
    pg = redis = None
    db_url = os.environ.get("DATABASE_URL")
    if db_url:
        db_url = normalize_database_url(db_url)
    else:
        pg, db_url = embedded.start_postgres(TEST_HOME / "pg")
    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        # One Valkey per test session: concurrent sessions on one checkout must not share (or unlink) a socket.
        redis = embedded.start_redis(TEST_HOME / f"redis-{os.getpid()}", persist=False)
        redis_url = redis.url
    template = f"mf_template_{os.getpid()}"
    services = Services(database_url=db_url, redis_url=redis_url)
    admin = _dsn(embedded.postgres_admin_url(db_url))

    async def create_template() -> None:
        conn = await asyncpg.connect(admin)
        await conn.execute(f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{template}"')
        await conn.close()

    asyncio.run(create_template())
    from app.cli import migrate

    migrate(services.database(template))
    yield Services(database_url=services.database(template), redis_url=redis_url)

    async def drop_template() -> None:
        conn = await asyncpg.connect(admin)
        await conn.execute(f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)')
        await conn.close()

    asyncio.run(drop_template())
    if redis is not None:
        redis.stop()
        shutil.rmtree(TEST_HOME / f"redis-{os.getpid()}", ignore_errors=True)
    if pg is not None:
        pg.cleanup()


@pytest_asyncio.fixture
async def database_url(services: Services) -> AsyncIterator[str]:
    """A fresh database cloned from the migrated template (about 0.05 s)."""
    name = f"mf_test_{uuid.uuid4().hex[:12]}"
    template = services.database_url.partition("?")[0].rsplit("/", 1)[1]
    admin = _dsn(embedded.postgres_admin_url(services.database_url))
    conn = await asyncpg.connect(admin)
    await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    await conn.close()
    yield services.database(name)
    conn = await asyncpg.connect(admin)
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await conn.close()


@pytest.fixture
def settings(database_url: str, services: Services, tmp_path: Path) -> Settings:
    return Settings(
        app_env="testing",
        MESHFOUNDRY_HOME=tmp_path / "home",
        database_url=database_url,
        redis_url=services.redis_url,
        MESHFOUNDRY_SECRET_KEY="test-secret-" + uuid.uuid4().hex,
        queue_name=f"arq:test:{uuid.uuid4().hex[:8]}",
        worker_poll_delay_s=0.02,
        heartbeat_interval_s=0.5,
        sse_keepalive_s=1.0,
        animation_previews=False,  # tests that want them render them themselves
        turntable_video=False,  # ~1 s per generation task; the turntable tests turn it on
    )


@pytest_asyncio.fixture
async def db(settings: Settings):  # type: ignore[no-untyped-def]
    """A session maker on the test database, for arranging and checking rows."""
    engine = create_engine(settings.database_url or "", pool_size=2)
    yield sessionmaker(engine)
    await engine.dispose()


@dataclass
class Api:
    client: httpx.AsyncClient
    base_url: str
    app: object


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.asynccontextmanager
async def serve(app: object) -> AsyncIterator[str]:
    """Run `app` under a real uvicorn on a free loopback port; yields its base URL."""
    sock = _free_socket()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110 (uvicorn offers no event for this)
        if serving.done():
            serving.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await serving
        sock.close()


@pytest_asyncio.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    """The real app behind a real uvicorn on a loopback port (SSE needs true streaming)."""
    app = create_app(settings)
    async with serve(app) as base_url, httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        yield Api(client=client, base_url=base_url, app=app)


@pytest_asyncio.fixture
async def worker(settings: Settings) -> AsyncIterator[Worker]:
    """An arq worker in this process, serving the test's own queue."""
    from inference.worker import worker_options  # the runner stack is heavy; only worker tests pay for it

    options = worker_options(settings, "default")
    options["handle_signals"] = False
    w = Worker(**options)
    running = asyncio.create_task(w.async_run())
    yield w
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    # A job still running at teardown: cancel it and wait here. arq's close() gathers its jobs without
    # return_exceptions, so a cancelled job would abort close() before on_shutdown, leaking the worker's reaper,
    # engine and Redis pool into the rest of the session (seen once as a cascade of unrelated failures).
    for job in w.tasks.values():
        job.cancel()
    await asyncio.gather(*w.tasks.values(), return_exceptions=True)
    w.tasks.clear()
    await w.close()


@pytest_asyncio.fixture
async def worker_up(worker: Worker) -> Worker:
    """The worker once it is up: its health-check key written (what /capabilities reads as "online"). For tests
    that load a page reading the capabilities once; the plain fixture starts the worker in the background, so that
    a test may still change the settings its start-up reads (a runner's step delay, for one)."""
    redis = await create_pool(worker.redis_settings)
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while not await redis.exists(worker.health_check_key):
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"the arq worker did not write {worker.health_check_key} within 30 s")
            await asyncio.sleep(0.02)
    finally:
        await redis.aclose()
    return worker


@dataclass
class Caller:
    account_id: uuid.UUID
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


async def make_caller(settings: Settings, db, credits: int = 1000, name: str = "acct") -> Caller:  # type: ignore[no-untyped-def]
    async with db() as session, session.begin():
        account = await billing_service.create_account(session, name=name, credits=credits)
        issued = await billing_service.issue_key(session, account=account, name=name, secret=settings.secret())
    return Caller(account_id=account.id, key=issued.plaintext)


@pytest_asyncio.fixture
async def caller(settings: Settings, db) -> Caller:  # type: ignore[no-untyped-def]
    return await make_caller(settings, db)


async def add_succeeded_task(  # type: ignore[no-untyped-def]
    db,
    caller: Caller,
    task_type: str,
    outputs: dict,
    *,
    task_id: str | None = None,
    runner: str = "auto-rig",
    expires_in_s: float = 3600,
) -> str:
    """A SUCCEEDED task of `caller`'s straight in the database (an input for another task), its id."""
    from datetime import timedelta

    from app.core.clock import utcnow
    from app.tasks.models import Task

    async with db() as session, session.begin():
        task = Task(account_id=caller.account_id, type=task_type, status="SUCCEEDED", ai_model="latest", runner=runner,
                    pool="default", params={}, outputs=outputs, expires_at=utcnow() + timedelta(seconds=expires_in_s),
                    **({"id": uuid.UUID(task_id)} if task_id else {}))  # fmt: skip
        session.add(task)
    return str(task.id)


async def unthrottle(db, caller: Caller, max_concurrent_tasks: int = 10) -> None:  # type: ignore[no-untyped-def]
    """Put `caller` on a plan with the pro queue limit but no practical request rate: tests that create many tasks
    quickly must meet the limit they test, never RateLimitExceeded on a fast machine."""
    async with db() as session, session.begin():
        await billing_service.upsert_plan(
            session, name="unthrottled", requests_per_second=10_000, max_concurrent_tasks=max_concurrent_tasks
        )
        await billing_service.set_plan(session, account_id=caller.account_id, plan="unthrottled")
