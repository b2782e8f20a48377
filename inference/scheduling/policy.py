"""Which queued job a GPU worker starts next: only jobs it can fit, its resident models first, nobody starved.

A worker calls `select()` whenever it has a free slot, with the jobs due in its pool's queue. The rules:

1. Jobs this GPU could never fit (peak VRAM above its whole budget) are left to larger workers.
2. Aging bound: of the rest, only jobs that entered the queue less than `window_s` after the oldest one may be
   started (the reorder window). A job is therefore never overtaken by a job that arrived `window_s` or more after
   it, and the oldest job is started once the finitely many jobs of its window that the worker preferred are gone.
3. Among window jobs that fit now (after unloading idle models), the oldest whose model is already resident here
   (model affinity: no load); jobs needing no VRAM count as resident.
4. Otherwise the oldest that fits, except jobs whose model an idle peer worker holds: that worker takes them on its
   next poll without a load (if it does not, they stay in the window and are taken here later).

No head-of-line blocking: a job that does not fit now is skipped, not waited for, and a GPU that cannot fit the
head of the queue never waits for it. With `window_s = 0` the order is FIFO among the jobs that fit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from inference.scheduling.budget import Gpu, Need

EPSILON_S = 1e-9


@dataclass(frozen=True)
class Candidate:
    """A queued job: its id, its runner (None when unknown: placed by age only) and when it entered the queue."""

    job_id: str
    runner: str | None
    queued_at: float  # seconds; the queue's score, so a plan's head start counts as waiting


@dataclass(frozen=True)
class Peer:
    """Another live worker of the same pool, as it last published itself."""

    idle: bool
    runners: frozenset[str]


def need_of(candidate: Candidate, needs: Mapping[str, Need]) -> Need:
    """The candidate's need; an unknown runner needs nothing (the runner cache copes, as before scheduling)."""
    if candidate.runner is None:
        return Need("")
    return needs.get(candidate.runner) or Need(candidate.runner)


def window(candidates: Sequence[Candidate], gpu: Gpu, needs: Mapping[str, Need], window_s: float) -> list[Candidate]:
    """The candidates this GPU may start now under the aging bound (rules 1 and 2), oldest first."""
    ordered = sorted(candidates, key=lambda c: c.queued_at)  # stable: equal scores keep the queue's order
    eligible = [c for c in ordered if gpu.can_ever_fit(need_of(c, needs))]
    if not eligible:
        return []
    limit = eligible[0].queued_at + max(0.0, window_s)
    return [c for c in eligible if c.queued_at < limit or c.queued_at <= eligible[0].queued_at + EPSILON_S]


def pick(
    candidates: Sequence[Candidate],
    gpu: Gpu,
    needs: Mapping[str, Need],
    *,
    window_s: float,
    peers: Iterable[Peer] = (),
) -> Candidate | None:
    """The job to start next on `gpu`, or None when nothing in the window fits now (see the module)."""
    fitting = [(c, n) for c in window(candidates, gpu, needs, window_s) if gpu.fits(n := need_of(c, needs))]
    for candidate, need in fitting:
        if need.top_gb == 0 or gpu.holds(need.runner):
            return candidate
    held_by_idle_peer = {runner for peer in peers if peer.idle for runner in peer.runners}
    for candidate, need in fitting:
        if need.runner not in held_by_idle_peer:
            return candidate
    return None


def select(
    candidates: Sequence[Candidate],
    gpu: Gpu,
    needs: Mapping[str, Need],
    *,
    window_s: float,
    slots: int = 1,
    peers: Iterable[Peer] = (),
) -> list[Candidate]:
    """Up to `slots` jobs to start now, in order: `pick()` again after each, on the GPU as that start leaves it."""
    chosen: list[Candidate] = []
    remaining = list(candidates)
    peers = tuple(peers)
    for _ in range(max(0, slots)):
        candidate = pick(remaining, gpu, needs, window_s=window_s, peers=peers)
        if candidate is None:
            break
        chosen.append(candidate)
        remaining.remove(candidate)
        gpu = gpu.start(need_of(candidate, needs))
    return chosen
