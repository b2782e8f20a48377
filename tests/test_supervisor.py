"""The supervisor of `meshfoundry up` restarts a dead child with growing delays, reports a crash loop and leaves the
child down for the cool-down, while its siblings keep running. Real child processes, a clock the test moves."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from app.cli import worker_plan
from app.supervisor import ChildSpec, Supervisor, describe_exit

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]
CRASHER = [sys.executable, "-c", "raise SystemExit(3)"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _spawn(spec: ChildSpec) -> subprocess.Popen[bytes]:
    return subprocess.Popen(list(spec.args), env=dict(spec.env))


def _wait_dead(sup: Supervisor, name: str) -> None:
    child = next(c for c in sup.children if c.spec.name == name)
    assert child.proc is not None
    child.proc.wait(10)


def test_a_dead_child_is_restarted_with_backoff_and_a_crash_loop_is_reported() -> None:
    said: list[str] = []
    clock = Clock()
    sup = Supervisor([ChildSpec("api", SLEEPER, {}), ChildSpec("worker default-1", CRASHER, {})], _spawn,
                     said.append, crash_loop_deaths=3, crash_loop_window_s=60, cooldown_s=300, clock=clock)  # fmt: skip
    sup.start()
    api_pid = sup.children[0].proc.pid  # type: ignore[union-attr]
    try:
        delays = []
        for _ in range(2):
            _wait_dead(sup, "worker default-1")
            sup.poll()
            assert said[-1].startswith("worker default-1 exited with code 3; restarting it in ")
            delays.append(float(said[-1].rsplit(" in ", 1)[1].removesuffix(" s")))
            sup.poll()  # not yet: the delay has not passed
            assert sup.children[1].proc is None
            clock.now += delays[-1]
            sup.poll()
            assert said[-1].startswith("restarting worker default-1")
        assert delays == [0.5, 1.0]
        _wait_dead(sup, "worker default-1")
        sup.poll()
        assert said[-1].startswith("CRASH LOOP: worker default-1 exited with code 3, 3 deaths within 60 s")
        clock.now += 299
        sup.poll()
        assert sup.children[1].proc is None, "left down for the cool-down"
        clock.now += 1
        sup.poll()
        assert sup.children[1].proc is not None, "one more try after it"
        assert sup.running()[0] == "api" and sup.children[0].proc.pid == api_pid, "the API was never touched"  # type: ignore[union-attr]
    finally:
        sup.stop(timeout=5)
    assert sup.running() == []


def test_deaths_outside_the_window_do_not_add_up() -> None:
    said: list[str] = []
    clock = Clock()
    sup = Supervisor([ChildSpec("w", CRASHER, {})], _spawn, said.append, crash_loop_deaths=2,
                     crash_loop_window_s=10, clock=clock)  # fmt: skip
    sup.start()
    try:
        for _ in range(3):
            _wait_dead(sup, "w")
            sup.poll()
            assert "CRASH LOOP" not in said[-1]
            clock.now += 11
            sup.poll()
    finally:
        sup.stop(timeout=5)


def test_stop_kills_a_child_that_ignores_sigterm() -> None:
    stubborn = [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                "print('ready', flush=True); time.sleep(60)"]  # fmt: skip
    sup = Supervisor([ChildSpec("x", stubborn, {})], lambda s: subprocess.Popen(list(s.args), stdout=subprocess.PIPE),
                     lambda _m: None)  # fmt: skip
    sup.start()
    proc = sup.children[0].proc
    assert proc is not None and proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    started = time.monotonic()
    sup.stop(timeout=0.5)
    assert proc.returncode == -9 and time.monotonic() - started < 5


def test_describe_exit() -> None:
    assert describe_exit(-9) == "was killed by SIGKILL"
    assert describe_exit(1) == "exited with code 1"


def test_worker_plan() -> None:
    assert worker_plan("2") == [("worker default-1", {"MESHFOUNDRY_POOL": "default"}),
                                ("worker default-2", {"MESHFOUNDRY_POOL": "default"})]  # fmt: skip
    plan = worker_plan("default:1,gpu:0", "0,1")
    assert [name for name, _ in plan] == ["worker default-1", "worker gpu0", "worker gpu1"]
    assert plan[2][1] == {"MESHFOUNDRY_POOL": "gpu", "MESHFOUNDRY_GPU": "1", "CUDA_VISIBLE_DEVICES": "1"}
    for bad in ("x:y", "Default:1", "a b"):
        with pytest.raises(ValueError, match="bad worker spec"):
            worker_plan(bad)
    with pytest.raises(ValueError, match="no worker to run"):
        worker_plan("")


def test_a_failing_restart_or_hook_does_not_stop_supervision() -> None:
    said: list[str] = []
    clock = Clock()
    spawned = {"n": 0}

    def flaky_spawn(spec: ChildSpec) -> subprocess.Popen[bytes]:
        spawned["n"] += 1
        if spawned["n"] == 2:
            raise OSError(12, "Cannot allocate memory")
        return _spawn(spec)

    def bad_hook(_spec: ChildSpec, _pid: int) -> None:
        raise FileNotFoundError("metrics file already gone")

    sup = Supervisor([ChildSpec("w", CRASHER, {})], flaky_spawn, said.append, on_death=bad_hook, clock=clock,
                     max_backoff_s=5)  # fmt: skip
    sup.start()
    try:
        _wait_dead(sup, "w")
        sup.poll()
        assert any("FileNotFoundError" in line for line in said)
        clock.now += 1
        sup.poll()
        assert said[-1] == "could not start w ([Errno 12] Cannot allocate memory); trying again in 5 s"
        clock.now += 5
        sup.poll()
        assert sup.children[0].proc is not None and spawned["n"] == 3
    finally:
        sup.stop(timeout=5)
