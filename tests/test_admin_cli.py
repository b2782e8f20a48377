"""The admin CLI works against the service's database (here: the test database via DATABASE_URL)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
CLI = str(Path(sys.executable).parent / "meshfoundry")


@pytest.fixture
def run(settings):  # type: ignore[no-untyped-def]
    env = {**os.environ, "DATABASE_URL": settings.database_url, "MESHFOUNDRY_HOME": str(settings.home),
           "MESHFOUNDRY_SECRET_KEY": settings.secret().decode()}  # fmt: skip

    def call(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=60)
        assert (result.returncode == 0) == ok, result.stderr
        return result

    return call


def test_keys_credits_and_plans(run) -> None:  # type: ignore[no-untyped-def]
    key = run("keys", "create", "--name", "bob", "--credits", "30").stdout.strip().splitlines()[-1]
    assert key.startswith("msy_")
    accounts = run("accounts", "list").stdout
    account_id = accounts.splitlines()[1].split()[0]
    assert "bob" in accounts and " 30 " in accounts

    assert run("credits", "grant", account_id, "20", "--note", "promo").stdout.strip() == "50"
    shown = run("credits", "show", account_id)
    assert shown.stdout.strip().splitlines()[-1] == "50"
    assert "promo" in shown.stdout

    run("plans", "set", "hobby", "--rps", "3", "--concurrency", "2")
    assert "hobby" in run("plans", "list").stdout
    run("plans", "assign", account_id, "hobby")
    run("plans", "assign", account_id, "missing", ok=False)

    second = run("keys", "create", "--account", account_id, "--name", "ci").stdout.strip().splitlines()[-1]
    listing = run("keys", "list", "--account", account_id).stdout
    assert key not in listing and second not in listing, "secrets are never listed"
    key_id = listing.splitlines()[1].split()[0]
    run("keys", "revoke", key_id)
    run("keys", "revoke", key_id, ok=False)
