"""`python -m bench.gpu_trace` (or `python -m bench --only g`): GPU scheduling on a trace, against 3DAIGC-API's FIFO.

A deterministic discrete-event simulation (bench/gpu_sim.py) on the CPU, in well under a second per run: the same
trace of mixed tasks goes through MeshFoundry's GPU workers (the real `inference.scheduling` policy and budget code)
and through 3DAIGC-API's FIFO scheduler, on three GPU sets (one 24 GB card, two 24 GB cards, a 48 GB + a 16 GB
card). Reported per policy: throughput (tasks per hour, from the first arrival to the last completion), p50 / p95
task latency (arrival to completion), the worst wait (arrival to a worker taking it), model loads, OOM events (a GPU
whose processes would hold more than its memory) and tasks failed for waiting over an hour (FIFO's own rule).

The model mix is the seed's: VRAM and load seconds come from inference/registry.yaml; the seconds per job below are
this bench's assumptions (a 4090-class card; Hunyuan3D-2.1's paint is the long texture stage), stated, not measured.
The trace: per GPU, steady arrivals for 30 minutes at about the rate one GPU can serve, plus three bursts (a batch of
TRELLIS jobs, a pile of texture jobs, a mixed rush), all from one seeded generator.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
from dataclasses import dataclass
from typing import Any

from app.core.config import Settings
from app.core.registry import load_registry
from bench.gpu_sim import Result, Task, run_fifo, run_ours
from inference.scheduling.budget import Need

# Seconds of compute per job on one 24 GB-class GPU (assumptions; the CPU step runs on a CPU worker).
RUN_S = {
    "trellis": 30.0,
    "hunyuan3d-2.1": 30.0,
    "hunyuan3d-2.1-paint": 120.0,
    "unirig": 20.0,
    "partfield": 10.0,
    "shap-e": 15.0,
    "mesh-ops": 10.0,
}
MIX = {  # share of tasks
    "trellis": 0.25,
    "hunyuan3d-2.1": 0.20,
    "hunyuan3d-2.1-paint": 0.15,
    "unirig": 0.10,
    "partfield": 0.10,
    "shap-e": 0.10,
    "mesh-ops": 0.10,
}
GPU_SETS = {"1x24GB": [24.0], "2x24GB": [24.0, 24.0], "48+16GB": [48.0, 16.0]}
STEADY_S = 1800.0
STEADY_PER_MIN = 1.6  # per GPU: a little above what one GPU serves (the mix averages ~39 s of compute per task)
BURSTS = (  # (start s, length s, tasks per GPU, runner or None for the mix)
    (300.0, 60.0, 12, "trellis"),
    (720.0, 30.0, 8, "hunyuan3d-2.1-paint"),
    (1200.0, 30.0, 15, None),
)


def needs_from_registry() -> dict[str, Need]:
    """The simulated runners' VRAM and load time, as the registry declares them (mesh-ops: none)."""
    runners = load_registry().runners
    return {name: Need(name, runners[name].vram_gb, runners[name].peak_vram_gb, runners[name].load_s) for name in RUN_S}


def make_trace(gpus: int, seed: int = 16, scale: float = 1.0) -> list[Task]:
    """The mixed trace for a set of `gpus` GPUs: arrivals scale with the GPU count; `scale` < 1 shortens it."""
    rng = random.Random(seed)
    names, weights = list(MIX), list(MIX.values())
    arrivals: list[tuple[float, str]] = []
    t, rate = 0.0, STEADY_PER_MIN * gpus / 60.0
    while (t := t + rng.expovariate(rate)) < STEADY_S * scale:
        arrivals.append((t, rng.choices(names, weights)[0]))
    for start, length, count, runner in BURSTS:
        if start >= STEADY_S * scale:
            continue
        for _ in range(round(count * gpus * scale)):
            arrivals.append((start + rng.uniform(0, length), runner or rng.choices(names, weights)[0]))
    arrivals.sort()
    return [Task(i, runner, at, RUN_S[runner] * rng.uniform(0.8, 1.2)) for i, (at, runner) in enumerate(arrivals)]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def summarize(result: Result) -> dict[str, Any]:
    done = [r for r in result.records if r.finish is not None]
    first = min(r.task.arrival for r in result.records)
    span = max(r.finish for r in done if r.finish is not None) - first if done else float("nan")
    latency = [r.finish - r.task.arrival for r in done if r.finish is not None]
    waits = [r.start - r.task.arrival for r in result.records if r.start is not None]
    return {
        "tasks": len(result.records),
        "completed": len(done),
        "failed": sum(r.failed is not None for r in result.records),
        "throughput_per_h": len(done) / span * 3600 if done else 0.0,
        "p50_s": pct(latency, 0.5),
        "p95_s": pct(latency, 0.95),
        "mean_s": statistics.fmean(latency) if latency else float("nan"),
        "worst_wait_s": max(waits) if waits else float("nan"),
        "loads": result.loads,
        "evictions": result.evictions,
        "oom_events": result.oom_events,
        "peak_gb": {str(k): round(v, 2) for k, v in sorted(result.peak_gb.items())},
        "violations": result.violations[:10],
    }


@dataclass(frozen=True)
class Knobs:
    """Our workers' settings, from MeshFoundry's defaults."""

    margin_gb: float
    window_s: float
    max_jobs: int
    admission_bound: int

    @classmethod
    def defaults(cls) -> Knobs:
        fields = Settings.model_fields
        return cls(fields["vram_margin_gb"].default, fields["gpu_affinity_window_s"].default,
                   fields["worker_max_jobs"].default, fields["admission_queue_bound"].default)  # fmt: skip


def measure(seed: int = 16, scale: float = 1.0, knobs: Knobs | None = None) -> dict[str, Any]:
    """Both policies on every GPU set; the figures `table()` prints."""
    knobs = knobs or Knobs.defaults()
    needs = needs_from_registry()
    out: dict[str, Any] = {"seed": seed, "scale": scale, "knobs": knobs.__dict__, "sets": {}}
    for name, gpus in GPU_SETS.items():
        trace = make_trace(len(gpus), seed, scale)
        ours = run_ours(trace, needs, gpus, margin_gb=knobs.margin_gb, window_s=knobs.window_s,
                        max_jobs=knobs.max_jobs)  # fmt: skip
        nearest = run_ours(trace, needs, gpus, margin_gb=knobs.margin_gb, window_s=0.0, max_jobs=knobs.max_jobs)
        admitted = run_ours(trace, needs, gpus, margin_gb=knobs.margin_gb, window_s=knobs.window_s,
                            max_jobs=knobs.max_jobs, admission_bound=knobs.admission_bound)  # fmt: skip
        out["sets"][name] = {
            "ours": summarize(ours),
            "ours_no_affinity": summarize(nearest),
            "ours_admission": summarize(admitted),
            "fifo": summarize(run_fifo(trace, needs, gpus)),
        }
    return out


def table(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """Rows (figure, ours, 3DAIGC-API FIFO, ratio) for `python -m bench`'s table."""
    rows = []
    for name, figures in results["sets"].items():
        ours, fifo, plain = figures["ours"], figures["fifo"], figures["ours_no_affinity"]
        n = ours["tasks"]
        rows.append((f"(g) {name}, {n} tasks: throughput tasks/h", f"{ours['throughput_per_h']:.0f}",
                     f"{fifo['throughput_per_h']:.0f} (FIFO); {plain['throughput_per_h']:.0f} (ours, window 0)",
                     f"{ours['throughput_per_h'] / fifo['throughput_per_h']:.2f}x"))  # fmt: skip
        rows.append((f"    {name}: p50 / p95 latency s", f"{ours['p50_s']:.0f} / {ours['p95_s']:.0f}",
                     f"{fifo['p50_s']:.0f} / {fifo['p95_s']:.0f}",
                     f"{ours['p50_s'] / fifo['p50_s']:.2f}x / {ours['p95_s'] / fifo['p95_s']:.2f}x"))  # fmt: skip
        rows.append((f"    {name}: worst wait s / loads / OOM / failed",
                     f"{ours['worst_wait_s']:.0f} / {ours['loads']} / {ours['oom_events']} / {ours['failed']}",
                     f"{fifo['worst_wait_s']:.0f} / {fifo['loads']} / {fifo['oom_events']} / {fifo['failed']}",
                     ""))  # fmt: skip
        adm = figures["ours_admission"]
        rows.append((f"    {name}: admission: refused / worst wait / p95 s",
                     f"{adm['failed']} / {adm['worst_wait_s']:.0f} / {adm['p95_s']:.0f}", "(FIFO has no admission)",
                     ""))  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_trace", description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--window-s", type=float, help="our reorder window (default: GPU_AFFINITY_WINDOW_S's)")
    parser.add_argument("--json", action="store_true", help="print the full figures as JSON")
    args = parser.parse_args(argv)
    knobs = Knobs.defaults()
    if args.window_s is not None:
        knobs = Knobs(knobs.margin_gb, args.window_s, knobs.max_jobs, knobs.admission_bound)
    results = measure(args.seed, knobs=knobs)
    if args.json:
        print(json.dumps(results, indent=2))
    for row in table(results):
        print(f"{row[0]:<52} {row[1]:<16} {row[2]:<44} {row[3]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
