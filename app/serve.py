"""`meshfoundry api --workers N`: N uvicorn processes, each with its own listening socket on the same port
(SO_REUSEPORT), so that the kernel spreads connections evenly over them.

uvicorn's own `--workers` shares one socket among its processes: whichever wakes first accepts every connection
waiting, so a client that opens its keep-alive connections together (a load balancer, an SDK's pool, the bench)
lands them all on one process and the others idle (measured: 32 connections, one process at 100% and one at 4%).
With a socket per process the kernel hashes each new connection to one of them instead.

A process that dies is restarted (after 0.5 s, doubling to 30 s while it keeps dying); SIGINT or SIGTERM stops
them all gracefully (uvicorn's own shutdown in each: in-flight requests finish). Where the platform has no
SO_REUSEPORT (not Linux), uvicorn's shared socket is used as before.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import sys
import time
from typing import Any

log = logging.getLogger("meshfoundry.serve")
STARTUP_FAILURE = 3  # uvicorn's exit code when the app's startup fails: restarting it would only fail again
BACKOFF_S = (0.5, 30.0)


def reuseport_supported() -> bool:
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def _bound(host: str, port: int, *, reuseport: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a socket in TIME_WAIT is no obstacle
        if reuseport:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def reuseport_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port that other processes can bind too (SO_REUSEPORT). Not listening yet: uvicorn
    listens once the app's startup is done, so the kernel sends no connection to a process still starting."""
    return _bound(host, port, reuseport=True)


def port_free(host: str, port: int) -> None:
    """Raise OSError (address in use) if anything listens on host:port, another `api --workers` included: a bind
    without SO_REUSEPORT, which a SO_REUSEPORT bind would not be (it joins the group of a listener of the same user,
    and two deployments would then split the connections without a word)."""
    _bound(host, port, reuseport=False).close()


def _serve_one(app: str, host: str, port: int, options: dict[str, Any]) -> None:  # pragma: no cover (a child)
    import uvicorn

    from app.core.embedded import die_with_parent

    die_with_parent()  # the supervisor killed (even by SIGKILL): this process goes too, and frees the port
    sock = reuseport_socket(host, port)
    config = uvicorn.Config(app, host=host, port=port, **options)
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    if not server.started:
        sys.exit(STARTUP_FAILURE)


class Workers:
    """The processes behind one port. `run()` blocks until SIGINT/SIGTERM (or `stop()`), then stops them all."""

    def __init__(self, app: str, host: str, port: int, count: int, options: dict[str, Any] | None = None) -> None:
        self.app, self.host, self.port, self.count = app, host, port, count
        self.options = options or {}
        self.context = multiprocessing.get_context("spawn")
        self.processes: list[Any] = []
        self.deaths: list[int] = [0] * count
        self.restart_at: list[float] = [0.0] * count
        self.stopping = False  # set by a signal handler: a plain flag (an Event's lock is not safe there)
        self.exit_code = 0

    def _start(self, index: int) -> None:
        process = self.context.Process(
            target=_serve_one, args=(self.app, self.host, self.port, self.options), name=f"api-{index}", daemon=False
        )
        process.start()
        self.processes[index] = process

    def stop(self, *_: object) -> None:
        self.stopping = True

    def run(self) -> int:
        port_free(self.host, self.port)  # a port another program (or deployment) holds: fail here, at once
        previous = {sig: signal.signal(sig, self.stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.processes = [None] * self.count
            for index in range(self.count):
                self._start(index)
            print(f"MeshFoundry API on http://{self.host}:{self.port}: {self.count} processes, a SO_REUSEPORT socket "
                  "each", file=sys.stderr, flush=True)  # fmt: skip
            while not self.stopping:
                time.sleep(0.2)
                if not self.stopping:
                    self._watch()
        finally:
            self._stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return self.exit_code

    def _watch(self) -> None:
        now = time.monotonic()
        for index, process in enumerate(self.processes):
            if process is None:
                if now >= self.restart_at[index]:
                    self._start(index)
                continue
            if process.is_alive():
                if now - self.restart_at[index] > 60:
                    self.deaths[index] = 0  # up a minute since its last restart: the backoff starts over
                continue
            code = process.exitcode
            if code == STARTUP_FAILURE:
                log.error("API process %s failed to start; stopping", process.pid)
                self.exit_code = STARTUP_FAILURE
                self.stopping = True
                return
            delay = min(BACKOFF_S[1], BACKOFF_S[0] * 2 ** self.deaths[index])
            self.deaths[index] += 1
            log.warning("API process %s exited with %s; restarting in %.1f s", process.pid, code, delay)
            self.processes[index] = None
            self.restart_at[index] = now + delay

    def _stop_all(self, timeout: float = 30.0) -> None:
        alive = [p for p in self.processes if p is not None and p.is_alive()]
        for process in alive:
            process.terminate()  # SIGTERM: uvicorn finishes its in-flight requests
        deadline = time.monotonic() + timeout
        for process in alive:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
