"""The per-process principal cache: a revoked key is refused on the very next request by every API process (the
route's own statement re-checks the key), a plan change is seen by the next create on any process, the trigger's
NOTIFY clears the cache (and only for what can change a principal), and the cache is bypassed while the LISTEN
connection is down."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy import func, select, text, update

from app.core.clock import utcnow
from app.core.config import Settings
from app.core.embedded import child_env
from app.tasks.models import Task
from billing import service as billing_service
from billing.auth import PrincipalCache, _Entry
from billing.models import Account, ApiKey, Plan
from billing.repository import BillingRepository
from billing.service import Principal
from tests.conftest import Api, Caller, add_succeeded_task, make_caller, unthrottle

pytestmark = pytest.mark.asyncio

ROOT = Path(__file__).resolve().parents[3]
URL = "/openapi/v2/text-to-3d"
PREVIEW = {"mode": "preview", "prompt": "a vase"}
INVALID = {"message": "Invalid API key"}


def _dsn(url: str | None) -> str:
    return (url or "").replace("postgresql+asyncpg://", "postgresql://", 1)


async def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def _issue(settings: Settings, db, account_id: uuid.UUID, name: str = "k") -> tuple[uuid.UUID, str]:  # type: ignore[no-untyped-def]
    async with db() as session, session.begin():
        account = await session.get(Account, account_id)
        issued = await billing_service.issue_key(session, account=account, name=name, secret=settings.secret())
    return issued.key.id, issued.plaintext


@contextlib.asynccontextmanager
async def _silently(session, table: str) -> AsyncIterator[None]:  # type: ignore[no-untyped-def]
    """Within the transaction, change `table` without its auth trigger: no NOTIFY, as if the notification were late
    or lost. The caches keep their principals; only the statements' own checks stand between them and the change."""
    await session.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER {table}_auth_change"))
    yield
    await session.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER {table}_auth_change"))


async def _revoke(db, key_id: uuid.UUID, *, silently: bool = False) -> None:  # type: ignore[no-untyped-def]
    async with db() as session, session.begin():
        async with _silently(session, "api_keys") if silently else contextlib.nullcontext():
            assert await billing_service.revoke_key(session, key_id=key_id) is not None


# --- two real API processes ------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_api(settings: Settings, home: Path, i: int) -> tuple[subprocess.Popen[bytes], Path, int]:
    """One `uvicorn app.api.main:app` process on the test's database, Redis and secret; its log and port."""
    port, log = _free_port(), home / f"api-{i}.log"
    env = child_env(
        APP_ENV="testing", DATABASE_URL=settings.database_url or "", REDIS_URL=settings.redis_url or "",
        MESHFOUNDRY_SECRET_KEY=settings.secret().decode(), MESHFOUNDRY_HOME=str(home / f"home-{i}"),
        QUEUE_NAME=settings.queue_name, PYTHONUNBUFFERED="1",
    )  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app.api.main:app", "--host", "127.0.0.1", "--port", str(port),
             "--log-level", "warning"],
            env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    return proc, log, port


@contextlib.asynccontextmanager
async def api_processes(settings: Settings, home: Path, count: int = 2) -> AsyncIterator[list[httpx.AsyncClient]]:
    """`count` real API processes sharing one database, Redis and secret; a client to each."""
    procs: list[tuple[subprocess.Popen[bytes], Path]] = []
    clients: list[httpx.AsyncClient] = []
    try:
        for i in range(count):
            proc, log, port = _start_api(settings, home, i)
            procs.append((proc, log))
            clients.append(httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30))
        deadline = time.monotonic() + 90
        for (proc, log), client in zip(procs, clients, strict=True):
            while True:  # uvicorn listens once the lifespan (pools, LISTEN connection) is up
                if proc.poll() is not None:
                    raise AssertionError(f"API process exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
                with contextlib.suppress(httpx.TransportError):
                    await client.get("/health", timeout=2)
                    break
                if time.monotonic() > deadline:
                    raise AssertionError(f"API process did not start:\n{log.read_text()[-3000:]}")
                await asyncio.sleep(0.1)
        yield clients
    finally:
        for client in clients:
            await client.aclose()
        for proc, _log in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc, _log in procs:
            try:
                await asyncio.to_thread(proc.wait, 15)
            except subprocess.TimeoutExpired:
                proc.kill()
                await asyncio.to_thread(proc.wait)


async def test_revocation_and_plan_changes_are_exact_across_processes(settings: Settings, db, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    caller = await make_caller(settings, db, credits=1_000_000, name="two-processes")
    await unthrottle(db, caller, max_concurrent_tasks=10_000)
    async with api_processes(settings, tmp_path) as processes:
        for round_ in range(10):
            key_id, key = await _issue(settings, db, caller.account_id, name=f"round-{round_}")
            headers = _bearer(key)
            created = await processes[round_ % 2].post(URL, json=PREVIEW, headers=headers)
            assert created.status_code == 202, created.text
            task_id = created.json()["result"]
            for client in processes:  # each process reads the key and caches its principal
                got = await client.get(f"{URL}/{task_id}", headers=headers)
                listed = await client.get(URL, headers=headers)
                made = await client.post(URL, json=PREVIEW, headers=headers)
                assert (got.status_code, listed.status_code, made.status_code) == (200, 200, 202), (got, listed, made)
                assert got.json()["id"] == task_id and task_id in {t["id"] for t in listed.json()}

            # Every other round without the NOTIFY (late or lost): the processes still hold the principal in cache.
            await _revoke(db, key_id, silently=round_ % 2 == 1)
            # At once: no process may still honour the key, whether or not the NOTIFY has reached it yet.
            responses = await asyncio.gather(*(
                request
                for client in processes
                for request in (
                    client.get(f"{URL}/{task_id}", headers=headers),
                    client.get(URL, headers=headers),
                    client.post(URL, json=PREVIEW, headers=headers),
                    client.get("/openapi/v1/balance", headers=headers),
                )
            ))  # fmt: skip
            summary = [(r.request.method, r.request.url.path, r.status_code, r.text) for r in responses]
            assert all(r.status_code == 401 and r.json() == INVALID for r in responses), (round_, summary)

        # A plan change: the next create on any process meets the new limit, read in the statement that locks the
        # account (whatever principal that process has cached).
        key_id, key = await _issue(settings, db, caller.account_id, name="plan")
        headers = _bearer(key)
        for client in processes:
            assert (await client.post(URL, json=PREVIEW, headers=headers)).status_code == 202
            assert (await client.get(URL, headers=headers)).status_code == 200
        async with db() as session:
            unfinished = (
                await session.execute(
                    select(func.count()).where(Task.account_id == caller.account_id, Task.status == "PENDING")
                )
            ).scalar_one()
        assert unfinished == 10 * 3 + 2
        async with db() as session, session.begin():  # without the NOTIFY: the cached principals keep the old limit
            await billing_service.upsert_plan(
                session, name="full", requests_per_second=10_000, max_concurrent_tasks=unfinished
            )
            async with _silently(session, "accounts"):
                await billing_service.set_plan(session, account_id=caller.account_id, plan="full")
        for client in (processes[1], processes[0]):
            refused = await client.post(URL, json=PREVIEW, headers=headers)
            assert refused.status_code == 429, refused.text
            assert refused.json() == {"message": "NoMoreConcurrentTasks"}
            assert (await client.get(URL, headers=headers)).status_code == 200  # the key itself is fine
        async with db() as session:
            count = (await session.execute(select(func.count()).where(Task.account_id == caller.account_id))).scalar()
        assert count == unfinished  # nothing was created past the limit


# --- the running app's cache and its LISTEN connection ---------------------------------------------------------


def _cache(api: Api) -> PrincipalCache:
    return api.app.state.mf.auth.cache  # type: ignore[attr-defined,no-any-return]


async def test_notify_clears_the_cache_only_on_changes_that_matter(api: Api, caller: Caller, settings, db) -> None:  # type: ignore[no-untyped-def]
    cache = _cache(api)
    assert await wait_until(lambda: cache.enabled, 5)
    assert (await api.client.get(URL, headers=caller.headers)).status_code == 200
    assert len(cache._entries) == 1  # the principal is cached

    # Not a principal change: recording a key's use, moving a balance. No notification, the cache stays.
    await api.app.state.mf.auth.drain()  # type: ignore[attr-defined]  # the first request's own use record is done
    async with db() as session, session.begin():
        key_id = (await session.execute(select(ApiKey.id).where(ApiKey.account_id == caller.account_id))).scalar_one()
        await session.execute(
            update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=utcnow() - timedelta(minutes=5))
        )
    generation = cache.generation
    async with db() as session, session.begin():
        await BillingRepository(session).touch_key(key_id)
        await billing_service.grant(session, account_id=caller.account_id, amount=5)
    async with db() as session:  # the touch did write
        last_used = (await session.execute(select(ApiKey.last_used_at).where(ApiKey.id == key_id))).scalar_one()
    assert utcnow() - last_used < timedelta(minutes=1)
    await asyncio.sleep(0.5)  # time for a notification to arrive, had one been sent
    assert cache.generation == generation
    assert len(cache._entries) == 1

    # A plan's limits edited: cleared.
    async with db() as session:
        plan = (await session.execute(select(Account.plan).where(Account.id == caller.account_id))).scalar_one()
    async with db() as session, session.begin():
        await session.execute(update(Plan).where(Plan.name == plan).values(priority=Plan.priority + 1))
    assert await wait_until(lambda: cache.generation > generation, 5), "no invalidation after a plan UPDATE"
    assert cache._entries == {}

    # An account moved to another plan: cleared.
    assert (await api.client.get(URL, headers=caller.headers)).status_code == 200
    assert len(cache._entries) == 1
    generation = cache.generation
    await unthrottle(db, caller)
    assert await wait_until(lambda: cache.generation > generation, 5), "no invalidation after a plan change"
    assert cache._entries == {}

    # A key revoked: cleared, by the notification alone (no request in between).
    assert (await api.client.get(URL, headers=caller.headers)).status_code == 200
    assert len(cache._entries) == 1
    generation = cache.generation
    async with db() as session:
        key_id = (await session.execute(select(ApiKey.id).where(ApiKey.account_id == caller.account_id))).scalar_one()
    await _revoke(db, key_id)
    assert await wait_until(lambda: cache.generation > generation, 5), "no invalidation after a revocation"
    assert cache._entries == {}
    response = await api.client.get(URL, headers=caller.headers)
    assert (response.status_code, response.json()) == (401, INVALID)


async def test_a_revocation_without_its_notification_is_refused_by_the_statement(
    api: Api, caller: Caller, settings, db
) -> None:  # type: ignore[no-untyped-def]
    cache = _cache(api)
    assert await wait_until(lambda: cache.enabled, 5)
    await unthrottle(db, caller)
    task_id = await add_succeeded_task(db, caller, "text-to-3d-preview", {"model": {"glb": "model.glb"}})
    routes = {
        "get": lambda headers: api.client.get(f"{URL}/{task_id}", headers=headers),
        "list": lambda headers: api.client.get(URL, headers=headers),
        "create": lambda headers: api.client.post(URL, json=PREVIEW, headers=headers),
        "list (empty page)": lambda headers: api.client.get(URL, params={"page_num": 99}, headers=headers),
        "get (unknown task)": lambda headers: api.client.get(f"{URL}/{uuid.uuid4()}", headers=headers),
    }
    for name, call in routes.items():
        key_id, key = await _issue(settings, db, caller.account_id, name=name)
        warm = await call(_bearer(key))
        assert warm.status_code in (200, 202, 404), (name, warm.text)
        assert len(cache._entries) == 1  # the principal is cached
        generation = cache.generation
        await _revoke(db, key_id, silently=True)
        assert cache.generation == generation and len(cache._entries) == 1  # no notification: still cached
        refused = await call(_bearer(key))
        assert (refused.status_code, refused.json()) == (401, INVALID), (name, refused.text)
        assert cache._entries == {} and cache.generation > generation, name  # found revoked: cleared
        cache.invalidate()  # the next route starts from an empty cache


async def test_cache_is_bypassed_while_the_listen_connection_is_down(api: Api, caller: Caller, settings, db) -> None:  # type: ignore[no-untyped-def]
    cache = _cache(api)
    hub = api.app.state.mf.hub  # type: ignore[attr-defined]
    assert await wait_until(lambda: cache.enabled, 5)
    # The loop below sends requests as fast as they are answered: past the pro plan's 20 per second (a 429) on a
    # fast machine. The plan change is itself an invalidation: wait for it before filling the cache.
    generation = cache.generation
    await unthrottle(db, caller)
    assert await wait_until(lambda: cache.generation > generation, 5)
    task_id = await add_succeeded_task(db, caller, "text-to-3d-preview", {"model": {"glb": "model.glb"}})
    assert (await api.client.get(f"{URL}/{task_id}", headers=caller.headers)).status_code == 200
    assert len(cache._entries) == 1

    # Every change of the listening state, in order (the window while it is down can be a few milliseconds).
    seen: list[bool] = []
    hook = hub._on_listening

    def record(up: bool) -> None:
        seen.append(up)
        hook(up)

    hub._on_listening = record

    statuses: list[int] = []
    stop = asyncio.Event()

    async def keep_requesting() -> None:
        while not stop.is_set():
            for path in (f"{URL}/{task_id}", URL, "/openapi/v1/balance"):
                statuses.append((await api.client.get(path, headers=caller.headers)).status_code)
            await asyncio.sleep(0.005)

    requests = asyncio.create_task(keep_requesting())
    admin = await asyncpg.connect(_dsn(settings.database_url))
    try:
        old_pid = hub._conn.get_server_pid()
        listening = await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND datname = current_database()", old_pid
        )
        assert listening == 1
        assert await admin.fetchval("SELECT pg_terminate_backend($1, 5000)", old_pid)

        assert await wait_until(lambda: False in seen, 10), "the lost LISTEN connection went unnoticed"  # ping: 5 s
        assert await wait_until(lambda: cache.enabled and seen[-1] is True, 10), f"not listening again: {seen}"
        assert seen[seen.index(False) :][-1] is True
        assert hub._conn.get_server_pid() != old_pid
        await asyncio.sleep(0.2)  # a few more requests on the new connection
    finally:
        stop.set()
        await requests
        await admin.close()
    assert statuses and set(statuses) == {200}, statuses

    # Notifications arrive on the new connection: a revocation clears the cache again.
    assert (await api.client.get(URL, headers=caller.headers)).status_code == 200
    generation = cache.generation
    async with db() as session:
        key_id = (await session.execute(select(ApiKey.id).where(ApiKey.account_id == caller.account_id))).scalar_one()
    await _revoke(db, key_id)
    assert await wait_until(lambda: cache.generation > generation, 5), "no notification after reconnecting"


# --- the cache itself ------------------------------------------------------------------------------------------


def _principal() -> Principal:
    return Principal(account_id=uuid.uuid4(), key_id=uuid.uuid4())


async def test_principal_cache_ttl_generation_and_listening() -> None:
    cache = PrincipalCache(ttl_s=0.05)
    now = time.monotonic()
    entry = _Entry(_principal(), cached_at=now, touched_at=now)

    cache.put("h", entry, cache.generation)
    assert cache.get("h", now) is None  # not listening yet: nothing is trusted, nothing kept
    assert not cache.enabled

    cache.listening(True)
    assert cache.enabled
    cache.put("h", entry, cache.generation)
    assert cache.get("h", now + 0.01) is entry
    assert cache.get("h", now + 0.06) is None  # past the TTL
    assert "h" not in cache._entries  # and dropped
    assert cache.get("h", now) is None

    # Read before an invalidation, stored after it: ignored (the row read may predate the change).
    stale = cache.generation
    cache.invalidate("plans")
    cache.put("h", entry, stale)
    assert cache.get("h", now) is None
    cache.put("h", entry, cache.generation)
    assert cache.get("h", now) is entry

    # The channel lost: cleared and bypassed until it is back.
    generation = cache.generation
    cache.listening(False)
    assert not cache.enabled and cache.generation == generation + 1
    assert cache.get("h", now) is None
    cache.put("h", entry, cache.generation)
    assert cache._entries == {}
    cache.listening(True)
    assert cache.get("h", now) is None  # nothing survived
    cache.put("h", entry, cache.generation)
    assert cache.get("h", now) is entry

    # A TTL of 0: never trusted.
    off = PrincipalCache(ttl_s=0)
    off.listening(True)
    assert not off.enabled
    off.put("h", entry, off.generation)
    assert off.get("h", now) is None


async def test_principal_cache_is_bounded() -> None:
    cache = PrincipalCache(size=3)
    cache.listening(True)
    now = time.monotonic()
    for i in range(5):
        cache.put(f"h{i}", _Entry(_principal(), cached_at=now, touched_at=now), cache.generation)
    assert list(cache._entries) == ["h2", "h3", "h4"]  # the oldest went first
