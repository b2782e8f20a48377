"""What the torch model adapters share: device choice, the load error, sizing weights, giving memory back."""

from __future__ import annotations

import gc
import json
import struct
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

# Bytes per element of each safetensors dtype, to estimate weight size before loading.
_SAFETENSORS_ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1}
_FLOAT_DTYPES = {"F64", "F32", "F16", "BF16"}


class ModelLoadError(RuntimeError):
    """The model directory is missing, incomplete or unreadable."""


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def release_memory(device: str) -> None:
    """After dropping a pipeline: collect it and give CUDA's cached blocks back (the allocator keeps them)."""
    gc.collect()
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()


def module_bytes(modules: Iterable[torch.nn.Module]) -> int:
    """Bytes of the modules' parameters and buffers as they sit in memory."""
    return sum(t.numel() * t.element_size() for m in modules for t in (*m.parameters(), *m.buffers()))


class ResidentModel:
    """The lifecycle every re-implemented model adapter shares with the model cache: load once under a lock, stay
    resident, unload and give the memory back, and say how big the weights are (measured when loaded, else the
    size of the weight files). Subclasses say how to load (`_load_model`), which modules hold the weights
    (`_modules`) and which files (`_weight_files`)."""

    def __init__(self, model_dir: Path, device: str | None) -> None:
        self.model_dir = Path(model_dir)
        self.device = device or default_device()
        self._model: Any = None
        self._lock = threading.RLock()

    def _load_model(self) -> Any:
        raise NotImplementedError

    def _modules(self) -> list[torch.nn.Module]:
        return [self._model]

    def _weight_files(self) -> list[Path]:
        return []

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def load(self) -> Any:
        with self._lock:
            if self._model is None:
                self._model = self._load_model()
        return self

    def unload(self) -> None:
        with self._lock:
            if self._model is not None:
                self._model = None
                release_memory(self.device)

    @property
    def weight_bytes(self) -> int:
        if self._model is not None:
            return module_bytes(self._modules())
        return sum(p.stat().st_size for p in self._weight_files() if p.is_file())


def weight_bytes(pipe: Any, model_dir: Path, dtype: torch.dtype) -> int:
    """Bytes of parameters and buffers at `dtype`: measured on a loaded diffusers pipeline, else read from the
    safetensors headers on disk (float tensors rescaled to `dtype`, integer buffers as stored)."""
    if pipe is not None:
        return module_bytes(m for m in pipe.components.values() if isinstance(m, torch.nn.Module))
    return _weight_bytes_on_disk(model_dir, torch.tensor([], dtype=dtype).element_size())


def _weight_bytes_on_disk(model_dir: Path, float_itemsize: int) -> int:
    """Sum tensor sizes from the safetensors headers under `model_dir` without loading any tensor.

    A safetensors file starts with a little-endian u64 header length and a JSON header of dtype and shape per
    tensor. Pickled `.bin` weights cannot be sized that way and are counted by file size (assumed float32).
    """
    total = 0
    for path in sorted(model_dir.rglob("*.safetensors")):
        with path.open("rb") as fh:
            (length,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(length))
        for name, info in header.items():
            if name == "__metadata__":
                continue
            count = int(np.prod(info["shape"], dtype=np.int64))
            dtype = info["dtype"]
            total += count * (float_itemsize if dtype in _FLOAT_DTYPES else _SAFETENSORS_ITEMSIZE.get(dtype, 4))
    if total == 0:
        total = sum(p.stat().st_size * float_itemsize // 4 for p in model_dir.rglob("*.bin"))
    return total
