"""`meshfoundry up` on embedded servers: healthy, usable, `keys create` beside it, and a clean stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def embedded_env(home: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "APP_ENV")}
    # XDG_STATE_HOME: where `up` registers itself for admin commands run elsewhere; per test, as tests run side by side.
    env.update(MESHFOUNDRY_HOME=str(home), PORT=str(port), WORKER_POLL_DELAY_S="0.05",
               XDG_STATE_HOME=str(home.parent / "xdg-state"))  # fmt: skip
    return env


def start_up(env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([str(BIN / "meshfoundry"), "up"], env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    key = proc.stdout.readline().strip()  # the key is the only thing `up` prints on stdout
    assert key.startswith("msy_"), key
    return proc, key


def wait_healthy(base: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    body: dict = {}
    while time.monotonic() < deadline:
        try:
            response = httpx.get(f"{base}/health", timeout=2)
            body = response.json()
            if response.status_code == 200:
                return body
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"not healthy: {body}")


def stop_and_check_clean(proc: subprocess.Popen[str], sig: int, home: Path) -> None:
    family = [proc.pid] + [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    proc.send_signal(sig)
    assert proc.wait(30) == 0
    time.sleep(0.5)
    leftovers = [pid for pid in family if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]
    assert leftovers == [], "every child stops with the launcher"
    running_pg = [
        p for p in psutil.process_iter(["name", "cmdline"])
        if p.info["name"] == "postgres" and str(home) in " ".join(p.info["cmdline"] or [])
    ]  # fmt: skip
    assert running_pg == [], "the embedded Postgres is stopped"
    assert not (home / "pg" / "postmaster.pid").exists()


def test_up_serves_generates_and_stops_cleanly(tmp_path: Path) -> None:
    home, port = tmp_path / "home", free_port()
    env = embedded_env(home, port)
    base = f"http://127.0.0.1:{port}"
    proc, key = start_up(env)
    try:
        health = wait_healthy(base)
        assert health == health | {"status": "ok", "database": True, "redis": True, "workers": True}

        created = subprocess.run(
            [str(BIN / "meshfoundry"), "keys", "create", "--name", "cli", "--credits", "50"],
            env=env, capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        cli_key = created.stdout.strip().splitlines()[-1]
        assert cli_key.startswith("msy_") and cli_key != key
        listed = httpx.get(f"{base}/openapi/v2/text-to-3d", headers={"Authorization": f"Bearer {cli_key}"})
        assert listed.status_code == 200 and listed.json() == []

        auth = {"Authorization": f"Bearer {key}"}
        body = {"mode": "preview", "prompt": "a mushroom", "target_formats": ["glb"]}
        task_id = httpx.post(f"{base}/openapi/v2/text-to-3d", json=body, headers=auth).json()["result"]
        deadline = time.monotonic() + 60
        while (task := httpx.get(f"{base}/openapi/v2/text-to-3d/{task_id}", headers=auth).json())["status"] not in (
            "SUCCEEDED",
            "FAILED",
        ):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert task["status"] == "SUCCEEDED"
        assert httpx.get(task["model_urls"]["glb"]).status_code == 200

        # The README's client example, run as a newcomer would, from another folder: it finds the service and
        # shows progress.
        readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
        example = readme.split("```python\n", 1)[1].split("```", 1)[0]
        workdir = tmp_path / "client"
        workdir.mkdir()
        ran = subprocess.run([sys.executable, "-c", example], cwd=workdir, capture_output=True, text=True, timeout=120,
                             env={**env, "MESHFOUNDRY_HOME": str(home)})  # fmt: skip
        assert ran.returncode == 0, ran.stderr
        lines = ran.stdout.splitlines()
        assert lines[-1].split() == ["SUCCEEDED", "100%"] and len(lines) >= 2, ran.stdout
        assert (workdir / "model.glb").read_bytes()[:4] == b"glTF"

        # An admin command run elsewhere without MESHFOUNDRY_HOME joins the running service, not a new empty one.
        elsewhere = {k: v for k, v in env.items() if k != "MESHFOUNDRY_HOME"}
        joined = subprocess.run([str(BIN / "meshfoundry"), "keys", "list"], env=elsewhere, cwd=workdir,
                                capture_output=True, text=True, timeout=60)  # fmt: skip
        assert joined.returncode == 0, joined.stderr
        assert f"using the data of the running `meshfoundry up` (pid {proc.pid}) in {home}" in joined.stderr
        assert not (workdir / ".meshfoundry").exists(), "no second data directory"
    except BaseException:
        proc.kill()
        raise
    stop_and_check_clean(proc, signal.SIGTERM, home)

    # A second start on the same home keeps the data and the development key.
    proc, key_again = start_up(env)
    try:
        wait_healthy(base)
        assert key_again == key
        kept = httpx.get(f"{base}/openapi/v2/text-to-3d/{task_id}", headers={"Authorization": f"Bearer {key}"})
        assert kept.json()["status"] == "SUCCEEDED"
    except BaseException:
        proc.kill()
        raise
    stop_and_check_clean(proc, signal.SIGINT, home)
