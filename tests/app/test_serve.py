"""`meshfoundry api --workers N` (app/serve.py): a SO_REUSEPORT socket per process, so connections opened together
spread over the processes; a dead process comes back; SIGTERM stops them all; a failed startup stops the lot."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.serve import reuseport_supported

pytestmark = pytest.mark.skipif(not reuseport_supported(), reason="SO_REUSEPORT balancing is Linux's")
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listeners(port: int) -> int:
    """Listening sockets on `port`, read from the kernel's table (not from our code)."""
    with open("/proc/net/tcp") as table:
        rows = [line.split() for line in table.readlines()[1:]]
    return sum(1 for row in rows if row[3] == "0A" and int(row[1].rsplit(":", 1)[1], 16) == port)


@contextlib.contextmanager
def supervisor(app: str, port: int, workers: int = 2) -> Iterator[subprocess.Popen[bytes]]:
    """`Workers(app).run()` in a process of its own, killed on the way out if it is still running."""
    options = {"log_level": "warning"}
    workers_ = f"Workers({app!r}, '127.0.0.1', {port}, {workers}, {options!r})"
    code = f"import sys; from app.serve import Workers; sys.exit({workers_}.run())"
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def assert_port_refused(proc: subprocess.Popen[bytes]) -> None:
    assert proc.wait(timeout=30) != 0
    assert b"Address already in use" in (proc.stdout.read() if proc.stdout else b"")


def wait_listeners(proc: subprocess.Popen[bytes], port: int, count: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while listeners(port) != count:
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else proc.returncode
        assert time.monotonic() < deadline, f"{listeners(port)} listening, want {count}"
        time.sleep(0.05)


async def pids_of_connections(port: int, connections: int) -> Counter[int]:
    """Open `connections` keep-alive connections at once; which process answers on each."""

    async def one() -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[1])
            return int(await reader.readexactly(length))
        finally:
            writer.close()

    return Counter(await asyncio.gather(*(one() for _ in range(connections))))


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def wait_gone(pids: set[int], port: int, timeout: float) -> None:
    """Until nothing listens on `port` and every one of `pids` has exited."""
    deadline = time.monotonic() + timeout
    while listeners(port) or any(_state(pid) not in ("gone", "Z") for pid in pids):
        assert time.monotonic() < deadline, (listeners(port), [(pid, _state(pid)) for pid in pids])
        time.sleep(0.05)


def children(pid: int) -> set[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return {int(p) for p in out.split()}


def test_connections_spread_a_dead_process_returns_and_sigterm_stops_all() -> None:
    port = free_port()
    with supervisor("tests.app.pid_app:app", port) as proc:
        wait_listeners(proc, port, 2)
        served = asyncio.run(pids_of_connections(port, 64))
        assert len(served) == 2 and min(served.values()) >= 4, served  # uvicorn's shared socket: ~all on one
        assert set(served) <= children(proc.pid)

        victim = next(iter(served))
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while True:  # restarted after 0.5 s; served again once it listens
            try:
                served = asyncio.run(pids_of_connections(port, 64))
            except OSError:  # a connection the kernel had queued for the killed process: reset
                served = Counter()
            if len(served) == 2 and victim not in served:
                break
            assert time.monotonic() < deadline, served
            time.sleep(0.2)
        running = children(proc.pid)

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert listeners(port) == 0
        wait_gone(running, port, 10)  # (multiprocessing's resource tracker leaves a moment after the rest)


def test_a_failed_startup_stops_every_process_with_uvicorns_code() -> None:
    port = free_port()
    with supervisor("tests.app.pid_app:broken", port) as proc:
        assert proc.wait(timeout=60) == 3
        assert listeners(port) == 0


def test_a_port_held_by_another_program_fails_at_once() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        with supervisor("tests.app.pid_app:app", holder.getsockname()[1]) as proc:
            assert_port_refused(proc)


def test_a_second_deployment_on_the_same_port_is_refused() -> None:
    """A SO_REUSEPORT bind would join the first deployment's group and split its connections: refused instead."""
    port = free_port()
    with supervisor("tests.app.pid_app:app", port) as first:
        wait_listeners(first, port, 2)
        with supervisor("tests.app.pid_app:app", port) as second:
            assert_port_refused(second)
        assert listeners(port) == 2 and first.poll() is None
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=30)


def test_processes_do_not_outlive_a_killed_supervisor() -> None:
    port = free_port()
    with supervisor("tests.app.pid_app:app", port) as proc:
        wait_listeners(proc, port, 2)
        running = children(proc.pid)
        proc.kill()  # SIGKILL: no chance to stop them itself
        proc.wait()
        wait_gone(running, port, 30)
