"""VRAM accounting for one GPU: resident models, what running jobs hold at their peak, and what a new job needs.

Figures are declared, not measured (the registry's `vram_gb`, `peak_vram_gb`): a model holds `vram_gb` while it is
resident, and a job running on it holds `peak_vram_gb - vram_gb` more until it ends. A job may start when its peak
fits the budget after unloading idle models, least recently used first; models that running jobs use are never
unloaded. `Gpu` is an immutable snapshot, so the policy and the simulator can try a choice without side effects.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass, replace

EPSILON_GB = 1e-6  # figures are sums of floats: 11.999999 GiB fits a 12 GiB budget


@dataclass(frozen=True)
class Need:
    """What a job of `runner` costs: resident VRAM, VRAM at its peak (>= vram_gb) and seconds to load."""

    runner: str
    vram_gb: float = 0.0
    peak_gb: float = 0.0
    load_s: float = 0.0

    @property
    def top_gb(self) -> float:
        """VRAM the job holds at its peak, model included."""
        return max(self.vram_gb, self.peak_gb)

    @property
    def extra_gb(self) -> float:
        """VRAM a running job holds beyond its resident model."""
        return self.top_gb - self.vram_gb


@dataclass(frozen=True)
class Model:
    """A resident model; `jobs` running jobs use it (it cannot be unloaded while that is above 0)."""

    runner: str
    vram_gb: float
    jobs: int = 0


def lru_victims(models: Iterable[tuple[Hashable, float, bool]], free_gb: float, need_gb: float) -> list[Hashable]:
    """Keys to unload, least recently used first, until `need_gb` fits in `free_gb`; pinned models are skipped.

    `models` is (key, vram_gb, pinned), least recently used first. When even every unpinned model is not enough,
    all of them are returned: the caller decides whether to go ahead (the model cache) or not (the policy).
    """
    victims = []
    for key, vram_gb, pinned in models:
        if free_gb + EPSILON_GB >= need_gb:
            break
        if pinned:
            continue
        victims.append(key)
        free_gb += vram_gb
    return victims


@dataclass(frozen=True)
class Gpu:
    """One GPU's budget and residents (least recently used first), and what running jobs hold beyond them."""

    budget_gb: float
    models: tuple[Model, ...] = ()
    extra_gb: float = 0.0

    @property
    def used_gb(self) -> float:
        return sum(m.vram_gb for m in self.models) + self.extra_gb

    @property
    def running(self) -> int:
        return sum(m.jobs for m in self.models)

    def holds(self, runner: str) -> bool:
        return any(m.runner == runner for m in self.models)

    def can_ever_fit(self, need: Need) -> bool:
        """Would `need` fit on this GPU with nothing else on it?"""
        return need.top_gb <= self.budget_gb + EPSILON_GB

    def victims(self, need: Need) -> list[str] | None:
        """The models to unload so that a job for `need` can start now; None when running jobs leave too little."""
        free = self.budget_gb - self.used_gb
        if self.holds(need.runner):
            return [] if free + EPSILON_GB >= need.extra_gb else None
        idle = [(m.runner, m.vram_gb, m.jobs > 0) for m in self.models]
        victims = lru_victims(idle, free, need.top_gb)
        freed = sum(m.vram_gb for m in self.models if m.runner in victims)
        return [str(v) for v in victims] if free + freed + EPSILON_GB >= need.top_gb else None

    def fits(self, need: Need) -> bool:
        return self.victims(need) is not None

    def start(self, need: Need) -> Gpu:
        """The GPU once a job for `need` started: victims unloaded, its model resident and most recently used."""
        victims = self.victims(need)
        if victims is None:
            raise ValueError(f"{need.runner} does not fit: {self.used_gb:.2f} of {self.budget_gb:.2f} GiB in use")
        current = next((m for m in self.models if m.runner == need.runner), None)
        model = replace(current, jobs=current.jobs + 1) if current else Model(need.runner, need.vram_gb, jobs=1)
        kept = tuple(m for m in self.models if m.runner not in victims and m.runner != need.runner)
        return replace(self, models=(*kept, model), extra_gb=self.extra_gb + need.extra_gb)

    def finish(self, need: Need) -> Gpu:
        """The GPU once a job for `need` ended: its model stays resident, one job fewer."""
        models = tuple(replace(m, jobs=m.jobs - 1) if m.runner == need.runner and m.jobs else m for m in self.models)
        return replace(self, models=models, extra_gb=max(0.0, self.extra_gb - need.extra_gb))

    def unload(self, runner: str) -> Gpu:
        """The GPU without `runner` (only when no job uses it)."""
        return replace(self, models=tuple(m for m in self.models if m.runner != runner or m.jobs))
