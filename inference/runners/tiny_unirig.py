"""A tiny, randomly initialised UniRig release for tests and GPU smoke runs: NOT a model, its rigs mean nothing.

`build_tiny_unirig(path)` writes the layout of HF `VAST-AI/UniRig` plus the repo's `configs/` at toy sizes:

    path/skeleton/articulation-xl_quantization_256/model.ckpt   Lightning-style {"state_dict": {"model.<key>": ...}}
    path/skin/articulation-xl/model.ckpt                        same, for the skinning network
    path/configs/{model,tokenizer,system,transform}/*.yaml       upstream's file names and keys, toy values

so `unirig.load(path)` goes through exactly the code that loads the real release. The eos embedding row is zeroed
(OPT ties it to the output head, so its logit is 0) to make a random model emit a handful of joints before
`max_new_tokens` instead of stopping at once; the sparse-conv weights (zero-initialised by our module) are drawn.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
import yaml

from inference.runners.unirig import (
    CONFIG_FILES,
    DEFAULT_CONFIGS,
    SKELETON_CKPT,
    SKIN_CKPT,
    SkeletonTokenizer,
    SubMConv3d,
    UniRigAR,
    UniRigSkin,
)

_TINY_ENCODER = {
    "__target__": "michelangelo_encoder", "pretrained_path": None, "freeze_encoder": False, "device": "cpu",
    "dtype": "float32", "num_latents": 16, "embed_dim": 8, "point_feats": 3, "num_freqs": 8, "include_pi": False,
    "heads": 2, "width": 32, "num_encoder_layers": 1, "use_ln_post": True, "init_scale": 0.25, "qkv_bias": False,
    "use_checkpoint": False, "flash": True, "supervision_type": "sdf", "query_method": False, "token_num": 32,
}  # fmt: skip


def tiny_configs() -> dict[str, dict]:
    cfg = copy.deepcopy(DEFAULT_CONFIGS)
    cfg["ar_model"]["llm"].update({
        "n_positions": 512, "max_position_embeddings": 512, "hidden_size": 32, "word_embed_proj_dim": 32,
        "num_hidden_layers": 2, "ffn_dim": 64, "num_attention_heads": 2,
    })  # fmt: skip
    cfg["ar_model"]["mesh_encoder"] = dict(_TINY_ENCODER)
    cfg["skin_model"].update({
        "num_train_vertex": 128, "num_heads": 2, "feat_dim": 16, "grid_size": 0.02, "mlp_dim": 16,
        "num_bone_attn": 1, "num_mesh_bone_attn": 1, "bone_embed_dim": 16, "voxel_mask": 3.0,
        "global_encoder": dict(_TINY_ENCODER),
    })  # fmt: skip
    cfg["skin_model"]["mesh_encoder"].update({
        "enc_depths": [1, 1], "enc_channels": [8, 16], "enc_num_head": [1, 2], "enc_patch_size": [256, 256],
    })  # fmt: skip
    cfg["ar_system"]["generate_kwargs"].update({"max_new_tokens": 40, "num_beams": 2})
    cfg["ar_transform"]["sampler_config"].update({"num_samples": 512, "vertex_samples": 128})
    cfg["skin_transform"]["sampler_config"].update({"num_samples": 600, "vertex_samples": 128})
    cfg["skin_transform"]["predict_transform_config"]["vertex_group_config"]["kwargs"]["voxel_skin"]["grid"] = 24
    return cfg


def _save(module: torch.nn.Module, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {f"model.{k}": v.clone() for k, v in module.state_dict().items()}
    torch.save({"state_dict": state, "epoch": 0, "global_step": 0}, path)


def build_tiny_unirig(path: Path, seed: int = 0) -> Path:
    """Write the tiny release under `path` (well under 1 MB) and return `path`."""
    path = Path(path)
    cfg = tiny_configs()
    for key, rel in CONFIG_FILES.items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text(yaml.safe_dump(cfg[key], sort_keys=False), encoding="utf-8")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        tokenizer = SkeletonTokenizer(cfg["tokenizer"])
        ar = UniRigAR(cfg["ar_model"], tokenizer)
        with torch.no_grad():
            ar.transformer.get_input_embeddings().weight[tokenizer.eos].zero_()
        _save(ar, path / SKELETON_CKPT)
        skin = UniRigSkin(cfg["skin_model"])
        with torch.no_grad():
            for m in skin.modules():
                if isinstance(m, SubMConv3d):
                    m.weight.normal_(0.0, 0.1)
        _save(skin, path / SKIN_CKPT)
    return path
