"""A tiny, randomly initialised PartField checkpoint for tests and GPU smoke runs: NOT a model, its parts mean nothing.

`build_tiny_partfield(path)` writes the release's layout at toy widths:

    path/model/model_objaverse.ckpt   a PyTorch-Lightning-style checkpoint: `state_dict` with `pvcnn.*`,
                                      `triplane_transformer.*`, `sdf_decoder.*`, `logit_scale` (every tensor the real
                                      LightningModule has), `hyper_parameters["cfg"]` (a yacs.config.CfgNode when
                                      yacs is installed, else a dict subclass pickled under that name), `epoch`, ...

so `partfield.load(path)` goes through exactly the code that loads the real release. Sizes: 32^2 planes, 16 encoder
channels, 72 output channels (8 part-feature channels), a 1-block 32-wide transformer over 8^2 tokens per plane.
The later PVCNN blocks keep upstream's hard-coded widths (128/256), so the file is about 17 MB.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from inference.runners.partfield import CKPT_NAME, PartFieldConfig, PartFieldModel

TINY_CFG: dict[str, Any] = {
    "result_name": "demo_test",
    "continue_ckpt": "model/model.ckpt",
    "triplane_channels_low": 8,
    "triplane_channels_high": 72,
    "triplane_resolution": 32,
    "n_point_per_face": 20,
    "n_sample_each": 10000,
    "is_pc": False,
    "remesh_demo": False,
    "use_2d_feat": False,
    "regress_2d_feat": False,
    "pvcnn": {
        "point_encoder_type": "pvcnn",
        "use_point_scatter": True,
        "z_triplane_channels": 16,
        "z_triplane_resolution": 32,
        "unet_cfg": {"depth": 2, "enabled": True, "rolled": True, "use_3d_aware": True,
                     "start_hidden_channels": 32, "use_initial_conv": False},
    },
}  # fmt: skip
TINY_TRANSFORMER = {"transformer_dim": 32, "transformer_layers": 1, "triplane_low_res": 8}


@contextmanager
def _cfgnode_class() -> Iterator[type]:
    """yacs.config.CfgNode, or (without yacs) a dict subclass registered under that name while pickling."""
    try:
        from yacs.config import CfgNode  # type: ignore[import-not-found]

        yield CfgNode
        return
    except ImportError:
        pass
    saved = {name: sys.modules.get(name) for name in ("yacs", "yacs.config")}
    pkg, mod = types.ModuleType("yacs"), types.ModuleType("yacs.config")
    cls = type("CfgNode", (dict,), {"__module__": "yacs.config"})
    mod.CfgNode = cls  # type: ignore[attr-defined]
    pkg.config = mod  # type: ignore[attr-defined]
    sys.modules["yacs"], sys.modules["yacs.config"] = pkg, mod
    try:
        yield cls
    finally:
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old


def _as_cfgnode(cls: type, cfg: dict[str, Any]) -> Any:
    node = cls()
    for k, v in cfg.items():
        node[k] = _as_cfgnode(cls, v) if isinstance(v, dict) else v
    return node


def tiny_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    cfg = PartFieldConfig(**{**PartFieldConfig.from_cfg(TINY_CFG).__dict__, **TINY_TRANSFORMER})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = PartFieldModel(cfg)
        with torch.no_grad():
            pos = model.triplane_transformer.pos_embed
            pos.normal_(0.0, pos.shape[-1] ** -0.5)  # upstream's init: N(0, 1/dim)
        return {k: v.clone() for k, v in model.state_dict().items()}


def build_tiny_partfield(path: Path, seed: int = 0) -> Path:
    """Write `path/model/model_objaverse.ckpt` and return `path`."""
    path = Path(path)
    (path / "model").mkdir(parents=True, exist_ok=True)
    with _cfgnode_class() as cfgnode:
        ckpt = {
            "epoch": 0,
            "global_step": 0,
            "pytorch-lightning_version": "2.2.0",
            "state_dict": tiny_state_dict(seed),
            "loops": {},
            "callbacks": {},
            "optimizer_states": [],
            "lr_schedulers": [],
            "hparams_name": "kwargs",
            "hyper_parameters": {"cfg": _as_cfgnode(cfgnode, TINY_CFG)},
        }
        torch.save(ckpt, path / "model" / CKPT_NAME)
    return path
