"""Property-based fuzzing of every route from the OpenAPI schema (schemathesis): no input gives a 500."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from billing import service as billing_service
from tests.conftest import Api, make_caller

# Two schemathesis runs, public and admin routes: a few minutes with fourteen task resources, so more time.
pytestmark = [pytest.mark.asyncio, pytest.mark.slow, pytest.mark.timeout(900)]
ADMIN_TOKEN = "fuzz-admin-token"


@pytest.fixture
def settings(settings):  # type: ignore[no-untyped-def]
    settings.admin_token = SecretStr(ADMIN_TOKEN)
    return settings


async def schemathesis(base_url: str, token: str, *extra: str, cwd: Path) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "schemathesis"), "run", f"{base_url}/openapi.json",
        "-H", f"Authorization: Bearer {token}", "--checks", "not_a_server_error", "--max-examples", "10",
        "--request-timeout", "20", "--seed", "1", *extra,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=cwd,  # its cache stays out of the repo
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(), 600)
    return process.returncode or 0, out.decode()


async def test_no_route_answers_500(api: Api, settings, db, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    caller = await make_caller(settings, db, credits=10**8, name="fuzz")
    async with db() as session, session.begin():
        await billing_service.upsert_plan(session, name="fuzz", requests_per_second=10**6, max_concurrent_tasks=10**6)
        await billing_service.set_plan(session, account_id=caller.account_id, plan="fuzz")
    # Without a worker here, streams stay open, /generate-motion waits for its clip and /health is 503 by design:
    # all three have tests of their own.
    code, out = await schemathesis(
        api.base_url, caller.key, "--exclude-path-regex", "^/admin|/stream$|^/health$|^/generate-motion$", cwd=tmp_path
    )
    assert code == 0, out[-4000:]
    code, out = await schemathesis(api.base_url, ADMIN_TOKEN, "--include-path-regex", "^/admin", cwd=tmp_path)
    assert code == 0, out[-4000:]
