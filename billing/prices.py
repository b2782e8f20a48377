"""Credit prices per task type: Meshy's list (meshy-api.md §16) as defaults, overridable from settings."""

from __future__ import annotations

from collections.abc import Mapping

# "<task type>" is the price for every model; "<task type>:<ai_model>" overrides it for one model.
DEFAULT_PRICES: dict[str, int] = {
    "text-to-3d-preview": 20,  # Meshy 6 / latest / lowpoly
    "text-to-3d-preview:meshy-5": 5,
    "text-to-3d-refine": 10,
    "image-to-3d": 20,
    "image-to-3d:textured": 30,
    "remesh": 5,
    "retexture": 10,
    "rig": 5,
    "animate": 3,
}


def price_of(task_type: str, ai_model: str, overrides: Mapping[str, int] | None = None) -> int:
    """Credits for one task; unknown types are free (and say so in docs/billing.md)."""
    table = {**DEFAULT_PRICES, **(overrides or {})}
    return table.get(f"{task_type}:{ai_model}", table.get(task_type, 0))
