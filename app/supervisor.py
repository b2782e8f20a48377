"""Keeps `meshfoundry up`'s children running: a child that dies is restarted with backoff, the others keep serving.

A worker killed by the kernel (a model out of memory is the commonest fault on a GPU box) must not take the API
down with it: only the dead child is restarted. Deaths come with a growing delay (0.5 s, 1 s, 2 s, ... up to 30 s);
`crash_loop_deaths` deaths within `crash_loop_window_s` is a crash loop: it is reported once, plainly, and that
child is left down for `cooldown_s` before one more try (its pool's queue keeps its jobs; `/health` names the pool
without a worker meanwhile).

Pure process management: no database, no settings object, so tests drive it with small scripts.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field


def describe_exit(returncode: int) -> str:
    """'exited with code 1' or 'was killed by SIGKILL'."""
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with code {returncode}"


@dataclass(frozen=True)
class ChildSpec:
    name: str  # "api", "worker default-1"
    args: Sequence[str]
    env: Mapping[str, str]


@dataclass(eq=False)
class _Child:
    spec: ChildSpec
    proc: subprocess.Popen[bytes] | None = None
    start_at: float = 0.0  # monotonic time of the next (re)start while proc is None
    deaths: deque[float] = field(default_factory=deque)  # monotonic times of recent deaths
    restarts: int = 0


Spawn = Callable[[ChildSpec], "subprocess.Popen[bytes]"]


class Supervisor:
    def __init__(
        self,
        specs: Sequence[ChildSpec],
        spawn: Spawn,
        say: Callable[[str], None],
        *,
        crash_loop_deaths: int = 5,
        crash_loop_window_s: float = 60.0,
        cooldown_s: float = 300.0,
        max_backoff_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        on_death: Callable[[ChildSpec, int], None] | None = None,
    ) -> None:
        self.children = [_Child(spec) for spec in specs]
        self._spawn = spawn
        self._say = say
        self.crash_loop_deaths = crash_loop_deaths
        self.crash_loop_window_s = crash_loop_window_s
        self.cooldown_s = cooldown_s
        self.max_backoff_s = max_backoff_s
        self._clock = clock
        self._on_death = on_death  # (spec, pid): e.g. drop the dead process's live metrics

    def start(self) -> None:
        for child in self.children:
            self._start(child)

    def _start(self, child: _Child) -> None:
        child.proc = self._spawn(child.spec)

    def poll(self) -> None:
        """One supervision pass: notice deaths, schedule and perform restarts. Call it a few times a second."""
        now = self._clock()
        for child in self.children:
            if child.proc is None:
                if now >= child.start_at:
                    child.restarts += 1
                    self._say(f"restarting {child.spec.name} (restart {child.restarts})")
                    try:
                        self._start(child)
                    except OSError as exc:  # out of memory or processes, the very case this exists for: try later
                        child.start_at = now + self.max_backoff_s
                        self._say(f"could not start {child.spec.name} ({exc}); trying again in "
                                  f"{self.max_backoff_s:g} s")  # fmt: skip
                continue
            code = child.proc.poll()
            if code is None:
                continue
            if self._on_death is not None:
                try:
                    self._on_death(child.spec, child.proc.pid)
                except Exception as exc:  # bookkeeping must never stop the supervision of the others
                    self._say(f"after {child.spec.name} ended: {type(exc).__name__}: {exc}")
            child.proc = None
            child.deaths.append(now)
            while child.deaths and now - child.deaths[0] > self.crash_loop_window_s:
                child.deaths.popleft()
            recent = len(child.deaths)
            if recent >= self.crash_loop_deaths:
                child.deaths.clear()
                child.start_at = now + self.cooldown_s
                self._say(
                    f"CRASH LOOP: {child.spec.name} {describe_exit(code)}, {recent} deaths within "
                    f"{self.crash_loop_window_s:.0f} s; not restarting it for {self.cooldown_s:.0f} s. The rest keeps "
                    "running (its queue keeps its jobs; /health shows what is missing). Its log above says why."
                )
                continue
            delay = min(self.max_backoff_s, 0.5 * 2 ** (recent - 1))
            child.start_at = now + delay
            self._say(f"{child.spec.name} {describe_exit(code)}; restarting it in {delay:g} s")

    def running(self) -> list[str]:
        return [c.spec.name for c in self.children if c.proc is not None and c.proc.poll() is None]

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM every child, wait up to `timeout` in total, then SIGKILL what is left."""
        procs = [c.proc for c in self.children if c.proc is not None]
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for child in self.children:
            child.proc = None
