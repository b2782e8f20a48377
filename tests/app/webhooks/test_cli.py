"""`meshfoundry webhooks create|list|delete` against the service's database (here: the test database)."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Caller

pytestmark = pytest.mark.slow
CLI = str(Path(sys.executable).parent / "meshfoundry")


def test_create_list_delete(settings, caller: Caller) -> None:  # type: ignore[no-untyped-def]
    env = {**os.environ, "DATABASE_URL": settings.database_url, "MESHFOUNDRY_HOME": str(settings.home),
           "MESHFOUNDRY_SECRET_KEY": settings.secret().decode(), "WEBHOOK_ALLOW_LOCAL": "false"}  # fmt: skip

    def run(*args: str, ok: bool = True, **extra: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([CLI, "webhooks", *args], env={**env, **extra}, capture_output=True, text=True,
                                timeout=120)  # fmt: skip
        assert (result.returncode == 0) == ok, result.stderr
        return result

    account = str(caller.account_id)
    refused = run("create", "http://127.0.0.1:9/hook", "--account", account, ok=False)
    assert "webhook URLs must be https" in refused.stderr
    created = run("create", "http://127.0.0.1:9/hook", "--account", account, WEBHOOK_ALLOW_LOCAL="true")
    secret = created.stdout.strip().splitlines()[-1]
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32
    webhook_id = created.stderr.split()[1]

    listing = run("list", "--account", account).stdout
    assert webhook_id in listing and "http://127.0.0.1:9/hook" in listing and secret not in listing
    run("create", "http://127.0.0.1:9/hook", "--account", "0199505f-9791-7973-8dca-c77cf716969c", ok=False)

    run("delete", webhook_id, "--account", account)
    assert webhook_id not in run("list", "--account", account).stdout
    assert "Webhook not found" in run("delete", webhook_id, "--account", account, ok=False).stderr
