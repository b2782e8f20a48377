"""The model registry: which runner and worker pool serve each public `ai_model` and task type."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

DEFAULT_PATH = Path(__file__).resolve().parents[2] / "inference" / "registry.yaml"


@dataclass(frozen=True)
class ModelEntry:
    ai_model: str
    runner: str
    pool: str
    vram_gb: float


@dataclass(frozen=True)
class Registry:
    models: dict[str, dict[str, ModelEntry]]  # task type -> ai_model -> entry

    def resolve(self, task_type: str, ai_model: str) -> ModelEntry | None:
        return self.models.get(task_type, {}).get(ai_model)

    def ai_models(self, task_type: str) -> list[str]:
        return sorted(self.models.get(task_type, {}))


def parse_registry(data: dict) -> Registry:
    models: dict[str, dict[str, ModelEntry]] = {}
    runners = data.get("runners", {})
    for task_type, table in data.get("tasks", {}).items():
        for ai_model, runner_name in table.items():
            runner = runners[runner_name]
            models.setdefault(task_type, {})[ai_model] = ModelEntry(
                ai_model=ai_model,
                runner=runner_name,
                pool=runner.get("pool", "default"),
                vram_gb=float(runner.get("vram_gb", 0)),
            )
    return Registry(models=models)


@cache
def load_registry(path: Path = DEFAULT_PATH) -> Registry:
    return parse_registry(yaml.safe_load(path.read_text()))
