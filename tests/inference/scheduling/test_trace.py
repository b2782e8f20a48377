"""The trace simulator on a small trace: the policy's invariants hold, and it is the policy the workers run.

Figures (throughput, latency) are bench/gpu_trace.py's business; this checks only what must always be true.
"""

from __future__ import annotations

import pytest

from bench import gpu_sim, gpu_trace
from inference.scheduling import policy

WINDOW = 120.0


@pytest.fixture(scope="module")
def needs() -> dict:
    return gpu_trace.needs_from_registry()


@pytest.mark.parametrize("gpus", list(gpu_trace.GPU_SETS.values()), ids=list(gpu_trace.GPU_SETS))
def test_invariants_on_a_small_trace(needs: dict, gpus: list[float]) -> None:
    trace = gpu_trace.make_trace(len(gpus), seed=3, scale=0.4)
    result = gpu_sim.run_ours(trace, needs, gpus, margin_gb=1.0, window_s=WINDOW)
    assert len(trace) >= 15
    assert result.violations == []  # never over budget; nobody overtaken by a job a window or more younger
    assert result.oom_events == 0
    assert all(peak <= gpus[g] for g, peak in result.peak_gb.items())
    assert all(r.finish is not None and r.failed is None for r in result.records)  # no starvation: all done
    assert all(r.start is not None and r.start >= r.task.arrival for r in result.records)


def test_affinity_does_reorder_so_the_window_check_is_not_vacuous(needs: dict) -> None:
    """Some job starts while an older one still waits: the aging-window invariant above is really exercised."""
    trace = gpu_trace.make_trace(1, seed=3, scale=0.4)
    records = gpu_sim.run_ours(trace, needs, [24.0], margin_gb=1.0, window_s=WINDOW).records
    overtakes = [
        (r.task.task_id, o.task.task_id)
        for r in records
        for o in records
        if o.task.arrival < r.task.arrival and o.start > r.start
    ]
    assert overtakes


def test_the_simulator_drives_the_policy_the_workers_call(needs: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = policy.select

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(kwargs["window_s"])
        return real(*args, **kwargs)

    monkeypatch.setattr(policy, "select", spy)
    trace = gpu_trace.make_trace(1, seed=3, scale=0.2)
    gpu_sim.run_ours(trace, needs, [24.0], margin_gb=1.0, window_s=WINDOW)
    assert calls and set(calls) == {WINDOW}


def test_the_simulation_is_deterministic(needs: dict) -> None:
    def run() -> list[tuple[int, float | None, float | None]]:
        trace = gpu_trace.make_trace(2, seed=5, scale=0.3)
        result = gpu_sim.run_ours(trace, needs, [48.0, 16.0], margin_gb=1.0, window_s=WINDOW)
        fifo = gpu_sim.run_fifo(trace, needs, [48.0, 16.0])
        return [(r.task.task_id, r.start, r.finish) for r in result.records + fifo.records]

    assert run() == run()


def test_admission_refuses_past_the_queue_bound(needs: dict) -> None:
    trace = gpu_trace.make_trace(1, seed=3, scale=0.6)
    open_ = gpu_sim.run_ours(trace, needs, [24.0], margin_gb=1.0, window_s=WINDOW)
    bounded = gpu_sim.run_ours(trace, needs, [24.0], margin_gb=1.0, window_s=WINDOW, admission_bound=3)
    refused = [r for r in bounded.records if r.failed]
    assert refused and all(r.start is None for r in refused)
    waits = lambda res: max(r.start - r.task.arrival for r in res.records if r.start is not None)  # noqa: E731
    assert waits(bounded) < waits(open_)
