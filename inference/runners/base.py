"""The runner contract shared by every model runner and the worker that drives them."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

# Meshy's image aspect ratios (text-to-image and image-to-image) as width:height, shared by the 2D runners.
ASPECT_RATIOS: dict[str, tuple[int, int]] = {
    "1:1": (1, 1),
    "16:9": (16, 9),
    "9:16": (9, 16),
    "4:3": (4, 3),
    "3:4": (3, 4),
    "3:2": (3, 2),
    "2:3": (2, 3),
}

# Called with a fraction in [0, 1]; may be called from a worker thread.
ProgressCallback = Callable[[float], None]


class FractionProgress:
    """Monotonic progress in [0, 1] for runners that report fractions: `step(f)` (also `self(f)`) sleeps `delay`
    first to mimic a slow model; `span(lo, hi)` maps a sub-task's own 0..1 into that range."""

    def __init__(self, progress: ProgressCallback, delay: float) -> None:
        self._progress, self._delay, self._last = progress, delay, 0.0
        progress(0.0)

    def step(self, fraction: float) -> None:
        if self._delay > 0:
            time.sleep(self._delay)
        self._report(fraction)

    __call__ = step

    def span(self, lo: float, hi: float) -> ProgressCallback:
        return lambda f: self._report(lo + (hi - lo) * float(f))

    def _report(self, fraction: float) -> None:
        self._last = max(self._last, min(1.0, fraction))
        self._progress(self._last)


@dataclass(frozen=True)
class RunnerArtifacts:
    """What a runner leaves in `out_dir`.

    `mesh` is the raw mesh file (PLY or GLB) the pipeline turns into Meshy's deliverables (3D runners). A
    textured runner may add `texture` (a base-colour PNG matching the mesh UVs). 2D runners (text-to-image,
    image-to-image) leave `mesh` unset and list their PNGs in `images`, in order.
    """

    mesh: Path | None = None
    texture: Path | None = None
    images: tuple[Path, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)


class InputRejected(ValueError):
    """The task's own input cannot be used (all background, too small, unreadable...).

    The message is shown to the caller in `task_error` (type `invalid_input`), so it must say in plain words what
    was wrong with the input and contain no paths or internals. `code` is Meshy's task error code: `invalid_input`,
    or a more precise one (`model_missing_uv`, `model_insufficient_uv`, `format_conversion_failed`).
    """

    def __init__(self, message: str, code: str = "invalid_input") -> None:
        super().__init__(message)
        self.code = code


class Runner(Protocol):
    name: str

    def run(
        self,
        inputs: Mapping[str, Any],
        params: Mapping[str, Any],
        out_dir: Path,
        progress: ProgressCallback,
    ) -> RunnerArtifacts: ...
