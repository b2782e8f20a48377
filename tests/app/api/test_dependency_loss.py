"""A lost database or Redis connection is a 503 with Retry-After for at most a request or two, never a 500, and the
service recovers by itself: the server side really closes the connections (pg_terminate_backend; a Valkey of the
test's own, stopped and started again on the same socket)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import httpx
import pytest

from app.api.errors import unavailable
from app.core import embedded
from app.core.config import Settings
from tests.conftest import Caller, serve

PREVIEW = {"mode": "preview", "prompt": "a small wooden chair", "target_formats": ["glb"]}


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def _terminate_backends(database_url: str) -> int:
    conn = await asyncpg.connect(_dsn(database_url))
    try:
        return int(
            await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
    finally:
        await conn.close()


def _check_unavailable(response: httpx.Response, what: str) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"].isdigit()
    assert response.json() == {
        "message": f"Service temporarily unavailable: the connection to the {what} was lost. Retry in a moment."
    }


@pytest.mark.asyncio
async def test_database_connections_lost_give_a_503_then_recover(api, caller: Caller, settings: Settings) -> None:
    created = await api.client.post("/openapi/v2/text-to-3d", json=PREVIEW, headers=caller.headers)
    assert created.status_code == 202
    task_id = created.json()["result"]
    # Several requests at once, so the pool holds several connections that all die together.
    warm = await asyncio.gather(*(api.client.get(f"/openapi/v2/text-to-3d/{task_id}", headers=caller.headers)
                                  for _ in range(6)))  # fmt: skip
    assert {r.status_code for r in warm} == {200}

    assert await _terminate_backends(settings.database_url or "") >= 1

    # Reads (the asyncpg read pool) and creates (SQLAlchemy's pool) in turn: each pool meets its dead connections.
    gets, posts = [], []
    for _ in range(6):
        response = await api.client.get(f"/openapi/v2/text-to-3d/{task_id}", headers=caller.headers)
        if response.status_code == 503:
            _check_unavailable(response, "database")
        gets.append(response.status_code)
        response = await api.client.post("/openapi/v2/text-to-3d", json=PREVIEW, headers=caller.headers)
        if response.status_code == 503:
            _check_unavailable(response, "database")
        posts.append(response.status_code)
    assert 500 not in gets + posts
    # The read pool replaces connections the server closed before using them (no error at all), or, at worst,
    # answers one 503 and replaces the rest; SQLAlchemy's first use of a dead connection is a 503 (no pre-ping),
    # and one disconnect invalidates its whole pool: what follows reconnects.
    assert gets[0] in (200, 503) and gets[1:] == [200] * 5, gets
    assert posts[0] in (202, 503) and posts[1:] == [202] * 5, posts


@pytest.mark.asyncio
async def test_redis_down_keeps_the_api_serving(settings: Settings, caller: Caller, tmp_path: Path) -> None:
    """Redis is a helper, not the truth: while it is down, creates are still accepted (the task waits in Postgres;
    the rate limiter lets requests through; the reaper enqueues the task once Redis is back) and reads work."""
    from app.api.main import create_app

    valkey = embedded.start_redis(tmp_path / "valkey", persist=False)
    try:
        app = create_app(settings.model_copy(update={"redis_url": valkey.url}))
        async with serve(app) as base, httpx.AsyncClient(base_url=base, timeout=30) as client:
            first = await client.post("/openapi/v2/text-to-3d", json=PREVIEW, headers=caller.headers)
            assert first.status_code == 202
            valkey.stop()
            down = await client.post("/openapi/v2/text-to-3d", json=PREVIEW, headers=caller.headers)
            assert down.status_code == 202, down.text
            health = await client.get("/health")
            assert health.status_code == 503 and health.json()["redis"] is False
            assert health.headers["Retry-After"].isdigit()
            for path in ("/openapi/v2/text-to-3d", f"/openapi/v2/text-to-3d/{down.json()['result']}",
                         "/openapi/v1/balance", "/openapi/v1/models"):  # fmt: skip
                response = await client.get(path, headers=caller.headers)
                assert response.status_code == 200, (path, response.text)

            valkey = embedded.start_redis(tmp_path / "valkey", persist=False)
            statuses = [(await client.post("/openapi/v2/text-to-3d", json=PREVIEW, headers=caller.headers)).status_code
                        for _ in range(3)]  # fmt: skip
            assert statuses == [202, 202, 202]
            assert (await client.get("/health")).json()["redis"] is True
            balance = (await client.get("/openapi/v1/balance", headers=caller.headers)).json()["balance"]
            assert balance == 1000 - 20 * 5
    finally:
        valkey.stop()


@pytest.mark.parametrize(
    ("exc", "what"),
    [
        (ConnectionRefusedError(111, "refused"), None),  # on its own: not known to be a dependency
        (asyncpg.exceptions.AdminShutdownError("terminating connection"), "database"),
        (asyncpg.exceptions.CannotConnectNowError("the database system is starting up"), "database"),
        (ValueError("no"), None),
    ],
)
def test_what_counts_as_a_lost_dependency(exc: BaseException, what: str | None) -> None:
    assert unavailable(exc) == what
    wrapped = RuntimeError("while reading")
    wrapped.__cause__ = exc
    assert unavailable(wrapped) == what


@pytest.mark.asyncio
async def test_an_os_error_counts_only_when_a_database_client_raised_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as missing_socket:
        await asyncpg.connect(host=str(tmp_path), user="nobody")  # no server socket there
    assert unavailable(missing_socket.value) == "database"
    with pytest.raises(FileNotFoundError) as missing_file:
        (tmp_path / "absent").read_bytes()
    assert unavailable(missing_file.value) is None
