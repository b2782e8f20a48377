"""The model registry: which runner and worker pool serve each public `ai_model` and task type."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import yaml

DEFAULT_PATH = Path(__file__).resolve().parents[2] / "inference" / "registry.yaml"


@dataclass(frozen=True)
class RunnerInfo:
    """What a runner costs a GPU: VRAM while resident, VRAM at its peak while a job runs, seconds to load."""

    name: str
    pool: str
    vram_gb: float
    peak_vram_gb: float  # >= vram_gb; activations on top of the resident weights
    load_s: float


@dataclass(frozen=True)
class ModelEntry:
    ai_model: str
    runner: str
    pool: str
    vram_gb: float
    peak_vram_gb: float = 0.0  # 0: not declared, the same as vram_gb
    load_s: float = 0.0

    @property
    def need_gb(self) -> float:
        """The VRAM a job of this model needs free at its peak."""
        return max(self.vram_gb, self.peak_vram_gb)


@dataclass(frozen=True)
class Registry:
    models: dict[str, dict[str, ModelEntry]]  # task type -> ai_model -> entry
    runners: dict[str, RunnerInfo] = field(default_factory=dict)  # every declared runner, mapped or not

    def resolve(self, task_type: str, ai_model: str) -> ModelEntry | None:
        return self.models.get(task_type, {}).get(ai_model)

    def ai_models(self, task_type: str) -> list[str]:
        return sorted(self.models.get(task_type, {}))


def parse_runner(name: str, spec: dict) -> RunnerInfo:
    """One `runners:` entry; `peak_vram_gb` defaults to `vram_gb`, `load_s` to 0."""
    vram = float(spec.get("vram_gb", 0))
    peak = float(spec.get("peak_vram_gb", vram))
    if vram < 0 or peak < vram:
        raise ValueError(f"runner {name!r}: need 0 <= vram_gb <= peak_vram_gb, got {vram} and {peak}")
    return RunnerInfo(name, spec.get("pool", "default"), vram, peak, float(spec.get("load_s", 0)))


def parse_registry(data: dict) -> Registry:
    runners = {name: parse_runner(name, spec or {}) for name, spec in data.get("runners", {}).items()}
    models: dict[str, dict[str, ModelEntry]] = {}
    for task_type, table in data.get("tasks", {}).items():
        for ai_model, runner_name in table.items():
            runner = runners[runner_name]
            models.setdefault(task_type, {})[ai_model] = ModelEntry(
                ai_model=ai_model,
                runner=runner_name,
                pool=runner.pool,
                vram_gb=runner.vram_gb,
                peak_vram_gb=runner.peak_vram_gb,
                load_s=runner.load_s,
            )
    return Registry(models=models, runners=runners)


@cache
def load_registry(path: Path = DEFAULT_PATH) -> Registry:
    return parse_registry(yaml.safe_load(path.read_text()))
