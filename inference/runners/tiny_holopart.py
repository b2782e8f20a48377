"""A tiny, randomly initialised HoloPart download for tests and GPU smoke runs: NOT a model, its parts mean nothing.

`build_tiny_holopart(path)` writes the diffusers layout the release is assumed to have (`HoloPartPipeline`
`save_pretrained`), at toy widths:

    path/model_index.json                         the pipeline's component classes
    path/{vae,transformer,part_encoder}/config.json + diffusion_pytorch_model.safetensors
    path/scheduler/scheduler_config.json          RectifiedFlowScheduler(num_train_timesteps, shift)

so `holopart.load(path)` goes through exactly the code that loads the real release. The VAE's output bias is set so
that the decoded field has a surface inside the grid (a random decoder would otherwise often be all inside or all
outside), which lets the tests reach marching cubes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from inference.runners.holopart import WEIGHTS_NAME, PartEncoder, TripoSGDiT, TripoSGVAE

TINY_TOKENS = 32
VAE_CONFIG: dict[str, Any] = {
    "_class_name": "TripoSGVAEModel", "in_channels": 3, "latent_channels": 8, "num_attention_heads": 2,
    "width_encoder": 32, "width_decoder": 32, "num_layers_encoder": 1, "num_layers_decoder": 1,
    "embedding_type": "frequency", "embed_frequency": 8, "embed_include_pi": False,
}  # fmt: skip
TRANSFORMER_CONFIG: dict[str, Any] = {
    "_class_name": "TripoSGDiTModel", "num_attention_heads": 2, "width": 32, "in_channels": 8, "num_layers": 3,
    "cross_attention_dim": 32, "cross_attention_2_dim": 32, "use_cross_attention": True,
    "use_cross_attention_2": True,
}  # fmt: skip
PART_ENCODER_CONFIG: dict[str, Any] = {
    "_class_name": "PartEncoder", "position_channels": 3, "part_feature_channels": 3, "whole_feature_channels": 4,
    "dim": 32, "num_attention_heads": 2, "num_layers": 1, "num_tokens": TINY_TOKENS, "embedding_type": "frequency",
    "embed_frequency": 8, "embed_include_pi": False, "part_local": True, "init_weights": None, "noise_level": None,
}  # fmt: skip
SCHEDULER_CONFIG = {"_class_name": "RectifiedFlowScheduler", "num_train_timesteps": 1000, "shift": 1.0}
MODEL_INDEX = {
    "_class_name": "HoloPartPipeline",
    "_diffusers_version": "0.32.2",
    "part_encoder": ["holopart.models.part_encoders", "PartEncoder"],
    "scheduler": ["holopart.schedulers.scheduling_rectified_flow", "RectifiedFlowScheduler"],
    "transformer": ["holopart.models.transformers.triposg_transformer", "TripoSGDiTModel"],
    "vae": ["holopart.models.autoencoders.autoencoder_kl_triposg", "TripoSGVAEModel"],
}


def build_tiny_holopart(path: Path, seed: int = 0) -> Path:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / "model_index.json").write_text(json.dumps(MODEL_INDEX, indent=2), encoding="utf-8")
    (path / "scheduler").mkdir(exist_ok=True)
    (path / "scheduler" / "scheduler_config.json").write_text(json.dumps(SCHEDULER_CONFIG), encoding="utf-8")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name, cls, cfg in (
            ("vae", TripoSGVAE, VAE_CONFIG),
            ("transformer", TripoSGDiT, TRANSFORMER_CONFIG),
            ("part_encoder", PartEncoder, PART_ENCODER_CONFIG),
        ):
            module = cls(cfg)
            if name == "vae":
                with torch.no_grad():  # a field that crosses zero: logits = -(w.h + b), so a small bias and weights
                    module.decoder.proj_out.weight.mul_(0.3)
                    module.decoder.proj_out.bias.fill_(0.0)
            (path / name).mkdir(exist_ok=True)
            (path / name / "config.json").write_text(json.dumps(cfg, indent=2), encoding="utf-8")
            state = {k: v.detach().clone().contiguous() for k, v in module.state_dict().items()}
            save_file(state, path / name / WEIGHTS_NAME)
    return path
