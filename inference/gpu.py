"""Which GPU a worker owns (MESHFOUNDRY_GPU) and its VRAM budget: a setting, or the device's free memory at start.

`meshfoundry up --gpus 0,1` starts one worker per listed GPU with `MESHFOUNDRY_GPU=<n>` and
`CUDA_VISIBLE_DEVICES=<n>`; `meshfoundry worker --gpu N` does the same for one. Inside the worker the GPU is then
device 0. torch is imported only when a budget has to be measured, so CPU workers never load it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import MutableMapping
from dataclasses import dataclass

log = logging.getLogger(__name__)

DEFAULT_BUDGET_GB = 20.0  # a worker that is not bound to a GPU and has no VRAM_BUDGET_GB
GIB = 1024**3


@dataclass(frozen=True)
class GpuInfo:
    """The worker's GPU (index as the host numbers it; None for a CPU worker) and the budget it schedules within."""

    index: int | None
    budget_gb: float
    device: str | None = None
    total_gb: float | None = None


def gpu_from_env(environ: MutableMapping[str, str] = os.environ) -> int | None:
    """MESHFOUNDRY_GPU as an index; it also pins CUDA_VISIBLE_DEVICES when that is unset, so torch sees one device."""
    raw = environ.get("MESHFOUNDRY_GPU", "").strip()
    if not raw:
        return None
    if not raw.isdigit():
        raise ValueError(f"MESHFOUNDRY_GPU must be a GPU index such as 0, not {raw!r}")
    environ.setdefault("CUDA_VISIBLE_DEVICES", raw)
    return int(raw)


def measure_device() -> tuple[str, float, float] | None:
    """(name, free GB, total GB) of CUDA device 0 as this process sees it, or None without CUDA."""
    try:
        import torch  # the worker's torch: only GPU workers get here
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    torch.cuda.init()  # the context exists before measuring, so its own memory is not counted as free
    free, total = torch.cuda.mem_get_info(0)
    return torch.cuda.get_device_name(0), free / GIB, total / GIB


def resolve(budget_setting: float | None, margin_gb: float, index: int | None) -> GpuInfo:
    """The budget: VRAM_BUDGET_GB when set; else, for a GPU worker, free memory minus the margin; else 20."""
    if budget_setting is not None:
        return GpuInfo(index, float(budget_setting))
    if index is None:
        return GpuInfo(None, DEFAULT_BUDGET_GB)
    measured = measure_device()
    if measured is None:
        log.warning("MESHFOUNDRY_GPU=%s but no CUDA device is visible; scheduling within %.0f GB", index,
                    DEFAULT_BUDGET_GB)  # fmt: skip
        return GpuInfo(index, DEFAULT_BUDGET_GB)
    name, free, total = measured
    budget = max(0.0, free - margin_gb)
    log.info("GPU %s (%s): %.1f of %.1f GB free; budget %.1f GB", index, name, free, total, budget)
    return GpuInfo(index, round(budget, 2), name, round(total, 2))
