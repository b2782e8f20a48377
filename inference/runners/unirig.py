"""UniRig runner: automatic skeleton + skinning from VAST-AI-Research/UniRig, an ALTERNATIVE rigger for `rig`.

Honest scope: UniRig invents its own skeleton for any shape (a tree of J joints named `bone_0..bone_{J-1}`, J chosen by
the model). It is NOT our 24-bone Mixamo-named skeleton (inference/motion/skeleton.py): the clip library and Meshy's
animation presets cannot be applied to its output. It suits creatures, props and odd topologies the Mixamo fit cannot
rig; the GLB it writes is a skinned mesh of its own skeleton in rest pose.

What the real model is (read from github.com/VAST-AI-Research/UniRig at ed4acac, `src/`; this module is our own
re-implementation of the inference path, with module and parameter names equal to upstream's so the released
Lightning checkpoints load unchanged):

* Release layout (HF `VAST-AI/UniRig`, `src/inference/download.py`): `skeleton/articulation-xl_quantization_256/
  model.ckpt` and `skin/articulation-xl/model.ckpt`, Lightning checkpoints whose `state_dict` holds the network under
  `model.` (the system's attribute). Hyper-parameters are not in the checkpoint but in the repo's YAML `configs/`;
  an optional `configs/` folder beside the weights (the repo's own, same relative paths) is read at load time,
  otherwise the built-in copies below (equal to upstream's files) are used.
* Skeleton (`src/model/unirig_ar.py`, config `unirig_ar_350m_1024_81920_float32`): a Michelangelo point encoder
  (`ShapeAsLatentPerceiverEncoder`, no learned queries: 4*1024 random points, farthest-point-sampled to 1024 queries
  that cross-attend all 65536 samples, Fourier(8 freqs)+normals -> width 512, 16 self-attention blocks, ln_post),
  `output_proj` 512 -> 1024, prepended as a prefix to an OPT-350m causal LM (hidden 1024, 24 layers, 16 heads,
  pre-LN forced, 3076 positions, vocab = the tokenizer's 267). Decoding: HF `generate` from [bos, cls] with a logits
  processor that masks every token the skeleton grammar forbids (`VocabSwitchingLogitsProcessor`), beam sampling
  (15 beams, top-k 5, top-p 0.95, repetition penalty 3, temperature 1.5, cls `articulationxl`).
* Skeleton tokens (`src/tokenizer/tokenizer_part.py`, 256 bins over [-1, 1]): ids 0..255 are coordinates
  (round((x+1)/2*256) clipped; decoded at bin centre), then branch, bos, eos, pad, spring, parts (body, hand),
  cls-none and cls (vroid, mixamo, articulationxl). A joint is 3 coordinate tokens and its parent is the previous
  joint; a `branch` token is followed by 6 (parent position, joint position) and the parent is the nearest earlier
  joint to that position (`make_skeleton`).
* Skinning (`src/model/unirig_skin.py`, config `unirig_skin`): per-point features from Point Transformer V3
  ("PTv3Object": sparse-conv stem k5 + BatchNorm, 5 stages [3,3,3,6,16] x [32..384] of blocks with a submanifold
  conv position encoding, serialized patch attention over z/hilbert(+trans) orders, patch 1024, QK-norm), a
  Michelangelo global encoder, a bone encoder (Fourier joints -> MLP -> 8 cross-attention blocks over bones+global
  latents), 16 mesh->(bones+global) cross-attention blocks, 16-head point-bone attention concatenated with an
  embedded geodesic "voxel skin" prior, an MLP to one logit per (point, bone), softmax over bones, multiplied by
  voxel_skin^3 (summed into parents) and renormalised; then `reskin` moves the sampled-point weights onto the mesh
  vertices (median of 7 nearest samples, one hot->cold diffusion step over mesh edges, weights < 0.03 dropped).
* Pre-processing: the mesh is brought into Blender's frame (UniRig extracts with bpy, whose glTF importer maps
  (x, y, z) -> (x, -z, y)), normalised into [-1, 1] (bbox centre, largest extent), sampled by the "mix" sampler
  (8192 vertices + area-weighted surface points: 65536 for the skeleton, 32768 for skinning).

Pure-torch stand-ins for upstream's CUDA extensions (same parameters, same maths unless said): torch_cluster.fps ->
iterative farthest-point sampling (start at point 0, as `random_start=False`); flash-attn `MHA(cross_attn=True)`
(Wq, Wkv, out_proj) and flash varlen attention -> `scaled_dot_product_attention` on the same padded patches;
spconv `SubMConv3d` -> a hashed gather over the 3^3/5^3 neighbour voxels with weights in spconv-2 layout
(out, kx, ky, kz, in), correlation convention (ASSUMED), duplicate points in a voxel read the first one; torch_scatter
-> torch reductions. Voxel-skin's pyrender voxelisation -> upstream's open3d-backend fill rule over trimesh's surface
voxels. Deviations: if generation stops at `max_new_tokens` without eos, the sequence is cut after the last complete
joint (upstream raises); sampling uses a seeded numpy Generator instead of the global RNG.

Licence: UniRig code is MIT (VAST-AI-Research 2025), but its Michelangelo encoder files carry GPL-3.0 headers
(NeuralCarver/Michelangelo) and PTv3 is MIT (Pointcept). This module is a re-implementation, not a copy; weights on
HF `VAST-AI/UniRig` are published with the repo (model card states MIT). Weights are never bundled or downloaded.
"""

from __future__ import annotations

import copy
import logging
import math
import pickle
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import trimesh
import yaml
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import shortest_path
from scipy.spatial import cKDTree
from torch import Tensor, nn

from inference.runners.base import InputRejected, ProgressCallback, RunnerArtifacts
from inference.runners.torch_weights import ModelLoadError, ResidentModel, default_device

__all__ = ["ModelLoadError", "Rig", "SkeletonTokenizer", "UniRigModel", "UniRigRunner", "load"]

logger = logging.getLogger(__name__)

SKELETON_CKPT = "skeleton/articulation-xl_quantization_256/model.ckpt"
SKIN_CKPT = "skin/articulation-xl/model.ckpt"
CONFIG_FILES = {
    "ar_model": "configs/model/unirig_ar_350m_1024_81920_float32.yaml",
    "skin_model": "configs/model/unirig_skin.yaml",
    "tokenizer": "configs/tokenizer/tokenizer_parts_articulationxl_256.yaml",
    "ar_system": "configs/system/ar_inference_articulationxl.yaml",
    "ar_transform": "configs/transform/inference_ar_transform.yaml",
    "skin_transform": "configs/transform/inference_skin_transform.yaml",
}
OUTPUT_NAME = "Character_output.glb"

# --- upstream's YAML, verbatim values (used when no configs/ folder sits beside the weights) --------------------------

_MICHELANGELO = {
    "__target__": "michelangelo_encoder", "pretrained_path": None, "freeze_encoder": False, "device": "cpu",
    "dtype": "float32", "num_latents": 512, "embed_dim": 64, "point_feats": 3, "num_freqs": 8, "include_pi": False,
    "heads": 8, "width": 512, "num_encoder_layers": 16, "use_ln_post": True, "init_scale": 0.25, "qkv_bias": False,
    "use_checkpoint": False, "flash": True, "supervision_type": "sdf", "query_method": False, "token_num": 1024,
}  # fmt: skip
DEFAULT_CONFIGS: dict[str, dict] = {
    "ar_model": {
        "__target__": "unirig_ar",
        "llm": {
            "pretrained_model_name_or_path": "facebook/opt-350m", "n_positions": 3076,
            "max_position_embeddings": 3076, "hidden_size": 1024, "word_embed_proj_dim": 1024,
            "do_layer_norm_before": True, "_attn_implementation": "flash_attention_2",
        },
        "mesh_encoder": dict(_MICHELANGELO),
    },
    "skin_model": {
        "__target__": "unirig_skin", "num_train_vertex": 512, "num_heads": 16, "feat_dim": 768, "grid_size": 0.005,
        "mlp_dim": 512, "num_bone_attn": 8, "num_mesh_bone_attn": 16, "bone_embed_dim": 1024, "voxel_mask": 3.0,
        "mesh_encoder": {
            "__target__": "ptv3obj", "pretrained_path": None, "freeze_encoder": False, "in_channels": 9,
            "cls_mode": False, "shuffle_orders": True, "drop_path": 0.0, "upcast_attention": False,
            "upcast_softmax": False, "enc_depths": [3, 3, 3, 6, 16], "enc_channels": [32, 64, 128, 256, 384],
            "enc_num_head": [2, 4, 8, 16, 24], "enable_qknorm": True, "layer_norm": False, "res_linear": True,
        },
        "global_encoder": dict(_MICHELANGELO),
    },
    "tokenizer": {
        "method": "tokenizer_part", "num_discrete": 256, "continuous_range": [-1, 1],
        "cls_token_id": {"vroid": 0, "mixamo": 1, "articulationxl": 2}, "parts_token_id": {"body": 0, "hand": 1},
    },
    "ar_system": {
        "__target__": "ar",
        "generate_kwargs": {
            "max_new_tokens": 2048, "num_return_sequences": 1, "num_beams": 15, "do_sample": True, "top_k": 5,
            "top_p": 0.95, "repetition_penalty": 3.0, "temperature": 1.5, "no_cls": False,
            "assign_cls": "articulationxl", "use_dir_cls": False,
        },
    },
    "ar_transform": {"sampler_config": {"method": "mix", "num_samples": 65536, "vertex_samples": 8192}},
    "skin_transform": {
        "sampler_config": {"method": "mix", "num_samples": 32768, "vertex_samples": 8192},
        "predict_transform_config": {"vertex_group_config": {"names": ["voxel_skin"], "kwargs": {"voxel_skin": {
            "grid": 196, "alpha": 0.5, "link_dis": 0.00001, "grid_query": 7, "vertex_query": 1, "grid_weight": 3.0,
        }}}},
    },
}  # fmt: skip
# facebook/opt-350m's config.json (the base that `AutoConfig.from_pretrained(**llm)` overrides).
OPT_350M = {
    "vocab_size": 50272, "hidden_size": 1024, "num_hidden_layers": 24, "ffn_dim": 4096, "num_attention_heads": 16,
    "max_position_embeddings": 2048, "do_layer_norm_before": False, "word_embed_proj_dim": 512, "dropout": 0.1,
    "attention_dropout": 0.0, "activation_function": "relu", "enable_bias": True,
    "layer_norm_elementwise_affine": True, "pad_token_id": 1, "bos_token_id": 2, "eos_token_id": 2,
}  # fmt: skip
_NOT_OPT_KEYS = {"pretrained_model_name_or_path", "n_positions", "_attn_implementation", "torch_dtype"}


# --- skeleton tokenizer (tokenizer_part.py) ---------------------------------------------------------------------------


class SkeletonTokenizer:
    """Upstream's TokenizerPart: the vocabulary layout, the grammar the logits processor enforces, detokenisation."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.num_discrete = int(config["num_discrete"])
        lo, hi = config["continuous_range"]
        self.continuous_range = (float(lo), float(hi))
        offset = self.num_discrete
        self.branch, self.bos, self.eos, self.pad = offset, offset + 1, offset + 2, offset + 3
        offset += 4
        self.spring = offset
        offset += 1
        parts = dict(config.get("parts_token_id") or {})
        self.parts = {k: v + offset for k, v in parts.items()}
        offset += len(parts)
        self.cls_none = offset
        offset += 1
        classes = dict(config.get("cls_token_id") or {})
        self.classes = {k: v + offset for k, v in classes.items()}
        offset += len(classes)
        self.vocab_size = offset
        self._cls_ids = set(self.classes.values())
        self._part_ids = set(self.parts.values())

    def cls_token(self, name: str | None) -> int:
        return self.classes.get(name, self.cls_none) if name is not None else self.cls_none

    def _state(self, ids: Sequence[int]) -> str:
        state = "bos"
        for t in ids:
            t = int(t)
            if state == "bos":
                if t != self.bos:
                    raise ValueError("ids do not start with bos")
                state = "cls_part_joint"
            elif state == "cls_part_joint":
                is_cls = t == self.cls_none or t in self._cls_ids
                state = "joint2" if t < self.num_discrete else ("part_joint" if is_cls else "joint")
            elif state == "part_joint":
                state = "joint2" if t < self.num_discrete else "part_joint"
            elif state == "joint2":
                state = "joint3"
            elif state == "joint3":
                state = "after_joint"
            elif state == "after_joint":
                state = "joint2" if t < self.num_discrete else "joint"  # branch or part: a joint must follow
            elif state == "joint":
                state = "joint2"
        return state

    def allowed(self, ids: Sequence[int]) -> list[int]:
        """`next_posible_token`: the token ids the grammar allows after `ids`."""
        if len(ids) == 0:
            return [self.bos]
        state = self._state(ids)
        coords = list(range(self.num_discrete))
        parts = [self.spring, *self.parts.values()]
        return {
            "bos": [self.bos],
            "cls_part_joint": [self.cls_none, *self.classes.values(), *parts, *coords],
            "part_joint": [*parts, *coords, self.eos],
            "joint2": coords,
            "joint3": coords,
            "after_joint": [*coords, *parts, self.branch, self.eos],
            "joint": coords,
        }[state]

    def close(self, ids: np.ndarray) -> np.ndarray:
        """Ours: the sequence up to eos, cut after its last complete joint, then eos. Upstream raises when
        `max_new_tokens` ends a sequence without eos, and its grammar also lets eos follow a branch's parent position
        (3 of 6 tokens), which its detokenizer then rejects."""
        seq = [int(t) for t in ids if int(t) != self.pad]
        if self.eos in seq:
            seq = seq[: seq.index(self.eos)]
        i, last, branch = 1, 0, False
        while i < len(seq):
            t = seq[i]
            if t < self.num_discrete:
                step = 6 if branch else 3
                if i + step > len(seq) or any(x >= self.num_discrete for x in seq[i : i + step]):
                    break
                i += step
                last, branch = i, False
            else:
                branch = t == self.branch
                i += 1
        if last == 0:
            raise RuntimeError("UniRig generated no complete joint")
        return np.array([*seq[:last], self.eos], dtype=np.int64)

    def undiscretize(self, t: np.ndarray) -> np.ndarray:
        lo, hi = self.continuous_range
        return (t.astype(np.float32) + 0.5) / self.num_discrete * (hi - lo) + lo

    def discretize(self, t: np.ndarray) -> np.ndarray:
        lo, hi = self.continuous_range
        return np.clip(((t - lo) / (hi - lo) * self.num_discrete).round(), 0, self.num_discrete - 1).astype(np.int64)

    def detokenize(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(joints (J, 3), parents (J,) with -1 for the root, names) from a bos ... eos sequence."""
        if len(ids) == 0 or ids[0] != self.bos:
            raise ValueError("first token is not bos")
        end = len(ids)
        while end > 0 and ids[end - 1] == self.pad:
            end -= 1
        if end == 0 or ids[end - 1] != self.eos:
            raise ValueError("last token is not eos")
        body = ids[1 : end - 1]
        joints: list[np.ndarray] = []
        p_joints: list[np.ndarray] = []
        i, branch, last = 0, False, None
        while i < len(body):
            t = int(body[i])
            if t < self.num_discrete:
                if branch:
                    p_joint, joint = self.undiscretize(body[i : i + 3]), self.undiscretize(body[i + 3 : i + 6])
                    i += 6
                else:
                    joint = self.undiscretize(body[i : i + 3])
                    p_joint = joint if not p_joints else last
                    i += 3
                joints.append(joint)
                p_joints.append(p_joint)
                last, branch = joint, False
            elif t == self.branch:
                branch, last = True, None
                i += 1
            elif t == self.spring or t in self._part_ids or t in self._cls_ids or t == self.cls_none:
                i += 1
            else:
                raise ValueError(f"unexpected token found: {t}")
        if not joints:
            raise RuntimeError("UniRig generated no joint")
        pos = np.stack(joints).astype(np.float64)
        parents = np.full(len(pos), -1, dtype=np.int64)
        for k in range(1, len(pos)):  # make_skeleton: nearest earlier joint to the parent position (last on ties)
            d = ((pos[:k] - p_joints[k]) ** 2).sum(axis=1)
            parents[k] = int(k - 1 - np.argmin(d[::-1]))
        return pos, parents, [f"bone_{k}" for k in range(len(pos))]


# --- Michelangelo point encoder (michelangelo/models/...) -------------------------------------------------------------


class FourierEmbedder(nn.Module):
    def __init__(self, num_freqs: int = 6, input_dim: int = 3, include_input: bool = True, include_pi: bool = True):
        super().__init__()
        freqs = 2.0 ** torch.arange(num_freqs, dtype=torch.float32)
        if include_pi:
            freqs = freqs * torch.pi
        self.register_buffer("frequencies", freqs, persistent=False)
        self.include_input, self.num_freqs = include_input, num_freqs
        self.out_dim = input_dim * (num_freqs * 2 + (1 if include_input or num_freqs == 0 else 0))

    def forward(self, x: Tensor) -> Tensor:
        if self.num_freqs == 0:
            return x
        embed = (x[..., None] * self.frequencies.to(x)).view(*x.shape[:-1], -1)
        parts = (x, embed.sin(), embed.cos()) if self.include_input else (embed.sin(), embed.cos())
        return torch.cat(parts, dim=-1)


class _MLP(nn.Module):
    def __init__(self, width: int, scale: int = 4) -> None:
        super().__init__()
        self.c_fc = nn.Linear(width, width * scale)
        self.c_proj = nn.Linear(width * scale, width)
        self.gelu = nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))


class MultiheadAttention(nn.Module):
    def __init__(self, width: int, heads: int, qkv_bias: bool) -> None:
        super().__init__()
        self.heads = heads
        self.c_qkv = nn.Linear(width, width * 3, bias=qkv_bias)
        self.c_proj = nn.Linear(width, width)

    def forward(self, x: Tensor) -> Tensor:
        bs, n, _ = x.shape
        qkv = self.c_qkv(x).view(bs, n, self.heads, -1)  # per head: [q | k | v]
        q, k, v = (t.transpose(1, 2) for t in qkv.chunk(3, dim=-1))
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(bs, n, -1)
        return self.c_proj(out)


class MultiheadCrossAttention(nn.Module):
    def __init__(self, width: int, heads: int, qkv_bias: bool, data_width: int | None = None) -> None:
        super().__init__()
        self.heads = heads
        self.c_q = nn.Linear(width, width, bias=qkv_bias)
        self.c_kv = nn.Linear(data_width or width, width * 2, bias=qkv_bias)
        self.c_proj = nn.Linear(width, width)

    def forward(self, x: Tensor, data: Tensor) -> Tensor:
        bs, n, _ = x.shape
        q = self.c_q(x).view(bs, n, self.heads, -1).transpose(1, 2)
        kv = self.c_kv(data).view(bs, data.shape[1], self.heads, -1)  # per head: [k | v]
        k, v = (t.transpose(1, 2) for t in kv.chunk(2, dim=-1))
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(bs, n, -1)
        return self.c_proj(out)


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int, qkv_bias: bool) -> None:
        super().__init__()
        self.attn = MultiheadAttention(width, heads, qkv_bias)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = _MLP(width)
        self.ln_2 = nn.LayerNorm(width)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class ResidualCrossAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int, qkv_bias: bool) -> None:
        super().__init__()
        self.attn = MultiheadCrossAttention(width, heads, qkv_bias)
        self.ln_1 = nn.LayerNorm(width)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = _MLP(width)
        self.ln_3 = nn.LayerNorm(width)

    def forward(self, x: Tensor, data: Tensor) -> Tensor:
        x = x + self.attn(self.ln_1(x), self.ln_2(data))
        return x + self.mlp(self.ln_3(x))


class _Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, qkv_bias: bool) -> None:
        super().__init__()
        self.resblocks = nn.ModuleList([ResidualAttentionBlock(width, heads, qkv_bias) for _ in range(layers)])

    def forward(self, x: Tensor) -> Tensor:
        for block in self.resblocks:
            x = block(x)
        return x


def farthest_point_sample(pos: Tensor, count: int) -> Tensor:
    """torch_cluster.fps for one cloud with random_start=False: greedy, from point 0, first index on ties."""
    n = pos.shape[0]
    idx = torch.zeros(count, dtype=torch.long, device=pos.device)
    dist = torch.full((n,), float("inf"), device=pos.device, dtype=pos.dtype)
    cur = 0
    for i in range(count):
        idx[i] = cur
        dist = torch.minimum(dist, ((pos - pos[cur]) ** 2).sum(-1))
        cur = int(torch.argmax(dist))
    return idx


class CrossAttentionEncoder(nn.Module):
    """The query-free branch (`query_method: False`): FPS-chosen samples attend to every input point."""

    def __init__(self, fourier: FourierEmbedder, point_feats: int, width: int, heads: int, layers: int,
                 qkv_bias: bool, use_ln_post: bool, token_num: int) -> None:  # fmt: skip
        super().__init__()
        self.fourier_embedder = fourier
        self.token_num = token_num
        self.input_proj = nn.Linear(fourier.out_dim + point_feats, width)
        self.cross_attn = ResidualCrossAttentionBlock(width, heads, qkv_bias)
        self.self_attn = _Transformer(width, layers, heads, qkv_bias)
        self.ln_post = nn.LayerNorm(width) if use_ln_post else None

    def forward(self, pc: Tensor, feats: Tensor) -> Tensor:
        bs, n, _ = pc.shape
        rng = np.random.default_rng(seed=0)  # upstream's eval-mode choice of the 4*token_num candidates
        ind = torch.from_numpy(rng.choice(n, self.token_num * 4, replace=self.token_num * 4 > n)).to(pc.device)
        pre_pc, pre_feats = pc[:, ind], feats[:, ind]
        sampled = []
        for b in range(bs):
            keep = farthest_point_sample(pre_pc[b].float(), math.ceil(pre_pc.shape[1] / 4))
            sampled.append((pre_pc[b, keep], pre_feats[b, keep]))
        sampled_pc = torch.stack([s[0] for s in sampled])
        sampled_feats = torch.stack([s[1] for s in sampled])
        data = self.input_proj(torch.cat([self.fourier_embedder(pc), feats], dim=-1))
        queries = self.input_proj(torch.cat([self.fourier_embedder(sampled_pc), sampled_feats], dim=-1))
        latents = self.self_attn(self.cross_attn(queries, data))
        return self.ln_post(latents) if self.ln_post is not None else latents


class ShapeAsLatentPerceiverEncoder(nn.Module):
    """`michelangelo_encoder`: width, encoder; latents = all FPS tokens (upstream's `encode_latents`)."""

    def __init__(self, *, num_freqs: int = 8, include_pi: bool = True, point_feats: int = 0, width: int, heads: int,
                 num_encoder_layers: int, qkv_bias: bool = True, use_ln_post: bool = False, token_num: int = 256,
                 query_method: bool = False, **_: Any) -> None:  # fmt: skip
        super().__init__()
        if query_method:
            raise ModelLoadError("UniRig configs with query_method: true are not supported")
        self.width = width
        self.fourier_embedder = FourierEmbedder(num_freqs=num_freqs, include_pi=include_pi)
        self.encoder = CrossAttentionEncoder(self.fourier_embedder, point_feats, width, heads, num_encoder_layers,
                                             qkv_bias, use_ln_post, int(token_num))  # fmt: skip

    def encode_latents(self, pc: Tensor, feats: Tensor) -> Tensor:
        return self.encoder(pc, feats)


# --- skeleton network (unirig_ar.py) ----------------------------------------------------------------------------------


def _opt_config(llm: Mapping[str, Any], vocab_size: int):
    from transformers import OPTConfig

    values = dict(OPT_350M)
    values.update({k: v for k, v in llm.items() if k not in _NOT_OPT_KEYS})
    values["vocab_size"] = vocab_size
    config = OPTConfig(**values)
    config.pre_norm = True  # upstream sets it; OPT reads do_layer_norm_before (True in the YAML)
    config._attn_implementation = "sdpa"
    return config


class UniRigAR(nn.Module):
    def __init__(self, model_cfg: Mapping[str, Any], tokenizer: SkeletonTokenizer) -> None:
        super().__init__()
        from transformers import OPTForCausalLM

        self.tokenizer = tokenizer
        self.transformer = OPTForCausalLM(_opt_config(model_cfg["llm"], tokenizer.vocab_size))
        enc = dict(model_cfg["mesh_encoder"])
        if enc.pop("__target__", "michelangelo_encoder") != "michelangelo_encoder":
            raise ModelLoadError("UniRig skeleton model: only the michelangelo_encoder mesh encoder is supported")
        self.mesh_encoder = ShapeAsLatentPerceiverEncoder(**enc)
        self.hidden_size = int(model_cfg["llm"].get("hidden_size", OPT_350M["hidden_size"]))
        self.output_proj = nn.Linear(self.mesh_encoder.width, self.hidden_size)

    @torch.no_grad()
    def generate(self, vertices: Tensor, normals: Tensor, cls: str | None, **kwargs: Any) -> np.ndarray:
        from transformers import LogitsProcessor, LogitsProcessorList

        tok = self.tokenizer
        dtype = next(self.transformer.parameters()).dtype
        cond = self.output_proj(self.mesh_encoder.encode_latents(vertices[None], normals[None])).to(dtype)
        start = [tok.bos] + ([tok.cls_token(cls)] if cls is not None else [])
        start_t = torch.tensor(start, device=cond.device)
        embed = self.transformer.get_input_embeddings()(start_t[None]).to(dtype)
        cond = torch.cat([cond, embed], dim=1)

        class _Grammar(LogitsProcessor):  # VocabSwitchingLogitsProcessor
            def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
                for b, seq in enumerate(input_ids):
                    mask = torch.full_like(scores[b], float("-inf"))
                    mask[tok.allowed([*start, *seq.tolist()])] = 0
                    scores[b] = scores[b] + mask
                return scores

        out = self.transformer.generate(
            inputs_embeds=cond,
            attention_mask=torch.ones(cond.shape[:2], dtype=torch.long, device=cond.device),
            bos_token_id=tok.bos,
            eos_token_id=tok.eos,
            pad_token_id=tok.pad,
            logits_processor=LogitsProcessorList([_Grammar()]),
            **kwargs,
        )
        return np.array([*start, *out[0].tolist()], dtype=np.int64)


# --- Point Transformer V3 "object" encoder (pointcept/models/PTv3Object.py), pure torch -------------------------------


def _z_order(grid: Tensor, depth: int) -> Tensor:
    x, y, z = (grid[:, i].long() for i in range(3))
    key = torch.zeros_like(x)
    for i in range(depth):
        m = 1 << i
        key |= ((x & m) << (2 * i + 2)) | ((y & m) << (2 * i + 1)) | ((z & m) << (2 * i))
    return key


def _hilbert(grid: Tensor, depth: int) -> Tensor:
    """Skilling's Hilbert index, as pointcept's vectorised `hilbert.encode` computes it (3 dims, `depth` bits)."""
    n = grid.shape[0]
    shifts = torch.arange(depth - 1, -1, -1, device=grid.device)
    gray = ((grid.long()[:, :, None] >> shifts) & 1).bool()  # (N, 3, depth), most significant bit first
    for bit in range(depth):
        for dim in range(3):
            mask = gray[:, dim, bit]
            gray[:, 0, bit + 1 :] ^= mask[:, None]
            flip = (~mask[:, None]) & (gray[:, 0, bit + 1 :] ^ gray[:, dim, bit + 1 :])
            gray[:, dim, bit + 1 :] ^= flip
            gray[:, 0, bit + 1 :] ^= flip
    flat = gray.transpose(1, 2).reshape(n, depth * 3)
    binary = flat.clone()  # gray -> binary: prefix xor along the bits
    for k in range(1, depth * 3):
        binary[:, k] ^= binary[:, k - 1]
    weights = torch.tensor([1 << (depth * 3 - 1 - k) for k in range(depth * 3)], dtype=torch.long, device=grid.device)
    return (binary.long() * weights).sum(dim=1)


def _serialize(grid: Tensor, batch: Tensor, depth: int, order: str) -> Tensor:
    if order.endswith("-trans"):
        grid = grid[:, [1, 0, 2]]
    code = _z_order(grid, depth) if order.startswith("z") else _hilbert(grid, depth)
    return batch.long() << (depth * 3) | code


@dataclass
class _Points:
    feat: Tensor
    grid: Tensor  # (N, 3) int
    batch: Tensor
    offset: Tensor
    orders: Tensor  # (O, N)
    inverses: Tensor  # (O, N)
    neighbours: dict[int, Tensor]  # kernel size -> (K^3, N) neighbour index or -1


def _neighbour_table(grid: Tensor, batch: Tensor, k: int) -> Tensor:
    """For each point and each of the k^3 offsets (kx, ky, kz order), the point at that voxel or -1."""
    g = grid.long() + 2
    side = int(g.max()) + 4
    keys = ((batch.long() * side + g[:, 0]) * side + g[:, 1]) * side + g[:, 2]
    uniq, first = torch.unique(keys, return_inverse=True)
    rep = torch.full((len(uniq),), len(keys), dtype=torch.long, device=keys.device)
    rep.scatter_reduce_(0, first, torch.arange(len(keys), device=keys.device), reduce="amin")
    r = k // 2
    table = []
    for dx in range(-r, r + 1):
        for dy in range(-r, r + 1):
            for dz in range(-r, r + 1):
                nk = keys + (dx * side + dy) * side + dz
                pos = torch.searchsorted(uniq, nk).clamp(max=len(uniq) - 1)
                hit = uniq[pos] == nk
                table.append(torch.where(hit, rep[pos], torch.full_like(pos, -1)))
    return torch.stack(table)


class SubMConv3d(nn.Module):
    """spconv.SubMConv3d on the input's own active sites; weight (out, k, k, k, in) as spconv 2 stores it."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.weight = nn.Parameter(torch.zeros(out_channels, kernel_size, kernel_size, kernel_size, in_channels))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def forward(self, feat: Tensor, table: Tensor) -> Tensor:
        w = self.weight.reshape(self.weight.shape[0], -1, self.weight.shape[-1])  # (out, k^3, in)
        padded = torch.cat([feat, feat.new_zeros(1, feat.shape[1])])  # index -1 -> the zero row
        out = feat.new_zeros(feat.shape[0], w.shape[0])
        for o in range(w.shape[1]):
            out = out + padded[table[o]] @ w[:, o].T
        return out + self.bias if self.bias is not None else out


class _Seq(nn.Sequential):
    """PointSequential's naming ("0", "1", ... or given names) for plain modules applied to features."""


class _Stem(nn.Module):
    def __init__(self, in_channels: int, channels: int, norm: nn.Module) -> None:
        super().__init__()
        self.conv = SubMConv3d(in_channels, channels, kernel_size=5, bias=False)
        self.norm = norm
        self.act = nn.GELU()


class Embedding(nn.Module):
    def __init__(self, in_channels: int, channels: int, norm: nn.Module, res_linear: bool) -> None:
        super().__init__()
        self.stem = _Stem(in_channels, channels, norm)
        self.res_linear = nn.Linear(in_channels, channels) if res_linear else None

    def forward(self, p: _Points) -> Tensor:
        x = self.stem.act(self.stem.norm(self.stem.conv(p.feat, p.neighbours[5])))
        return x + self.res_linear(p.feat) if self.res_linear is not None else x


class _CPE(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.add_module("0", SubMConv3d(channels, channels, kernel_size=3, bias=True))
        self.add_module("1", nn.Linear(channels, channels))
        self.add_module("2", nn.LayerNorm(channels))

    def forward(self, feat: Tensor, table: Tensor) -> Tensor:
        return getattr(self, "2")(getattr(self, "1")(getattr(self, "0")(feat, table)))


class _PtMLP(nn.Module):
    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SerializedAttention(nn.Module):
    """Flash-path semantics: patches of `patch_size` along the serialized order, the tail patch padded with points of
    the previous patch (pointcept's pad/unpad), attention within each patch, optional affine-free QK LayerNorm."""

    def __init__(self, channels: int, num_heads: int, patch_size: int, order_index: int, qknorm: bool) -> None:
        super().__init__()
        self.channels, self.num_heads, self.patch_size = channels, num_heads, patch_size
        self.order_index, self.qknorm = order_index, qknorm
        self.qkv = nn.Linear(channels, channels * 3)
        self.proj = nn.Linear(channels, channels)

    def _pad(self, offset: Tensor) -> tuple[Tensor, Tensor]:
        k = self.patch_size
        bincount = torch.diff(offset, prepend=offset.new_zeros(1))
        padded = torch.where(bincount > k, (bincount + k - 1) // k * k, bincount)
        _off = F.pad(offset, (1, 0))
        _off_pad = F.pad(torch.cumsum(padded, 0), (1, 0))
        pad = torch.arange(int(_off_pad[-1]), device=offset.device)
        unpad = torch.arange(int(_off[-1]), device=offset.device)
        for i in range(len(offset)):
            unpad[_off[i] : _off[i + 1]] += _off_pad[i] - _off[i]
            if bincount[i] != padded[i]:
                rem = int(bincount[i] % k)
                end = int(_off_pad[i + 1])
                pad[end - k + rem : end] = pad[end - 2 * k + rem : end - k]
            pad[_off_pad[i] : _off_pad[i + 1]] -= _off_pad[i] - _off[i]
        return pad, unpad

    def forward(self, feat: Tensor, p: _Points) -> Tensor:
        h, c = self.num_heads, self.channels
        pad, unpad = self._pad(p.offset)
        order = p.orders[self.order_index][pad]
        inverse = unpad[p.inverses[self.order_index]]
        qkv = self.qkv(feat)[order].view(-1, 3, h, c // h)
        q, k, v = qkv.unbind(1)
        if self.qknorm:
            q, k = F.layer_norm(q, (c // h,)), F.layer_norm(k, (c // h,))
        n = q.shape[0]
        size = min(self.patch_size, n) if n % self.patch_size else self.patch_size
        if n % size:  # a lone cloud no larger than a patch: one patch of its own length
            size = n
        q, k, v = (t.reshape(n // size, size, h, c // h).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, c)
        return self.proj(out[inverse])


class Block(nn.Module):
    def __init__(self, channels: int, num_heads: int, patch_size: int, mlp_ratio: float, order_index: int,
                 qknorm: bool) -> None:  # fmt: skip
        super().__init__()
        self.cpe = _CPE(channels)
        self.norm1 = _Seq(nn.LayerNorm(channels))
        self.attn = SerializedAttention(channels, num_heads, patch_size, order_index, qknorm)
        self.norm2 = _Seq(nn.LayerNorm(channels))
        self.mlp = _Seq(_PtMLP(channels, int(channels * mlp_ratio)))

    def forward(self, feat: Tensor, p: _Points) -> Tensor:
        feat = feat + self.cpe(feat, p.neighbours[3])
        feat = feat + self.attn(self.norm1(feat), p)
        return feat + self.mlp(self.norm2(feat))


class PointTransformerV3Object(nn.Module):
    def __init__(self, *, in_channels: int = 9, order: Sequence[str] = ("z", "z-trans", "hilbert", "hilbert-trans"),
                 enc_depths: Sequence[int] = (3, 3, 3, 6, 16), enc_channels: Sequence[int] = (32, 64, 128, 256, 384),
                 enc_num_head: Sequence[int] = (2, 4, 8, 16, 24),
                 enc_patch_size: Sequence[int] = (1024, 1024, 1024, 1024, 1024), mlp_ratio: float = 4,
                 shuffle_orders: bool = True, enable_qknorm: bool = False, layer_norm: bool = False,
                 res_linear: bool = True, stride: Sequence[int] = (), **_: Any) -> None:  # fmt: skip
        super().__init__()
        if stride:
            raise ModelLoadError("PTv3Object with pooling strides is not supported")
        self.order = [order] if isinstance(order, str) else list(order)
        self.shuffle_orders = shuffle_orders
        norm = nn.LayerNorm(enc_channels[0]) if layer_norm else nn.BatchNorm1d(enc_channels[0], eps=1e-3, momentum=0.01)
        self.embedding = Embedding(in_channels, enc_channels[0], norm, res_linear)
        self.enc = nn.Module()
        for s in range(len(enc_depths)):
            stage = nn.Module()
            if s > 0:
                stage.add_module("0", nn.Linear(enc_channels[s - 1], enc_channels[s]))
            for i in range(enc_depths[s]):
                stage.add_module(f"block{i}", Block(enc_channels[s], enc_num_head[s], enc_patch_size[s], mlp_ratio,
                                                    i % len(self.order), enable_qknorm))  # fmt: skip
            self.enc.add_module(f"enc{s}", stage)
        self.out_channels = enc_channels[-1]

    def forward(self, coord: Tensor, feat: Tensor, offset: Tensor, grid_size: float) -> Tensor:
        batch = torch.repeat_interleave(torch.arange(len(offset), device=coord.device),
                                        torch.diff(offset, prepend=offset.new_zeros(1)))  # fmt: skip
        starts = F.pad(offset, (1, 0))[:-1]
        mins = torch.stack([coord[a:b].min(0).values for a, b in zip(starts.tolist(), offset.tolist(), strict=True)])
        grid = torch.div(coord - mins[batch], grid_size, rounding_mode="trunc").int()
        depth = int(grid.max()).bit_length()
        codes = torch.stack([_serialize(grid, batch, depth, o) for o in self.order])
        orders = torch.argsort(codes)
        inverses = torch.zeros_like(orders).scatter_(1, orders, torch.arange(codes.shape[1], device=codes.device)
                                                     .repeat(codes.shape[0], 1))  # fmt: skip
        if self.shuffle_orders:
            perm = torch.randperm(codes.shape[0])
            orders, inverses = orders[perm.to(orders.device)], inverses[perm.to(orders.device)]
        p = _Points(feat, grid, batch, offset, orders, inverses,
                    {k: _neighbour_table(grid, batch, k) for k in (3, 5)})  # fmt: skip
        x = self.embedding(p)
        for stage in self.enc.children():
            for name, module in stage.named_children():
                x = module(x) if name == "0" else module(x, p)
        return x


# --- skinning network (unirig_skin.py) --------------------------------------------------------------------------------


class CrossMHA(nn.Module):
    """flash_attn.modules.mha.MHA(cross_attn=True): Wq, Wkv ((two h d) packed), out_proj, scale 1/sqrt(d)."""

    def __init__(self, embed_dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.Wq = nn.Linear(embed_dim, embed_dim)
        self.Wkv = nn.Linear(embed_dim, 2 * embed_dim)
        self.out_proj = nn.Linear(embed_dim, embed_dim)

    def forward(self, x: Tensor, x_kv: Tensor) -> Tensor:
        b, n, c = x.shape
        h = self.num_heads
        q = self.Wq(x).view(b, n, h, c // h).transpose(1, 2)
        kv = self.Wkv(x_kv).view(b, x_kv.shape[1], 2, h, c // h)
        k, v = kv[:, :, 0].transpose(1, 2), kv[:, :, 1].transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c)
        return self.out_proj(out)


class ResidualCrossAttn(nn.Module):
    def __init__(self, feat_dim: int, num_heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(feat_dim)
        self.norm2 = nn.LayerNorm(feat_dim)
        self.attention = CrossMHA(feat_dim, num_heads)
        self.ffn = nn.Sequential(nn.Linear(feat_dim, feat_dim * 4), nn.GELU(), nn.Linear(feat_dim * 4, feat_dim))

    def forward(self, q: Tensor, kv: Tensor) -> Tensor:
        x = self.norm1(q + self.attention(q, kv))
        return self.norm2(x + self.ffn(x))


class BoneEncoder(nn.Module):
    def __init__(self, feat_bone_dim: int, feat_dim: int, embed_dim: int, num_heads: int, num_attn: int) -> None:
        super().__init__()
        self.position_embed = FourierEmbedder(num_freqs=6, input_dim=feat_bone_dim, include_pi=True)
        self.bone_encoder = nn.Sequential(
            self.position_embed, nn.Linear(self.position_embed.out_dim, embed_dim), nn.LayerNorm(embed_dim), nn.GELU(),
            nn.Linear(embed_dim, embed_dim * 4), nn.LayerNorm(embed_dim * 4), nn.GELU(),
            nn.Linear(embed_dim * 4, feat_dim), nn.LayerNorm(feat_dim), nn.GELU(),
        )  # fmt: skip
        self.attn = nn.ModuleList([ResidualCrossAttn(feat_dim, num_heads) for _ in range(num_attn)])

    def forward(self, joints: Tensor, min_coord: Tensor, global_latents: Tensor) -> Tensor:
        x = self.bone_encoder(joints - min_coord[:, None, :])
        latents = torch.cat([x, global_latents], dim=1)
        for attn in self.attn:
            x = attn(x, latents)
        return x


def _ln_gelu(i: int, o: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(i, o), nn.LayerNorm(o), nn.GELU())


class SkinweightPred(nn.Module):
    def __init__(self, in_dim: int, mlp_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(4):
            layers += [nn.Linear(in_dim if i == 0 else mlp_dim, mlp_dim), nn.LayerNorm(mlp_dim), nn.GELU()]
        self.net = nn.Sequential(*layers, nn.Linear(mlp_dim, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class UniRigSkin(nn.Module):
    def __init__(self, cfg: Mapping[str, Any]) -> None:
        super().__init__()
        self.num_train_vertex = int(cfg["num_train_vertex"])
        self.feat_dim, self.num_heads = int(cfg["feat_dim"]), int(cfg["num_heads"])
        self.grid_size, self.voxel_mask = float(cfg["grid_size"]), float(cfg.get("voxel_mask", 2))
        mesh_cfg, glob_cfg = dict(cfg["mesh_encoder"]), dict(cfg["global_encoder"])
        targets = (mesh_cfg.pop("__target__", "ptv3obj"), glob_cfg.pop("__target__", ""))
        if targets != ("ptv3obj", "michelangelo_encoder"):
            raise ModelLoadError("UniRig skin model: expected a ptv3obj mesh encoder and a michelangelo global encoder")
        self.mesh_encoder = PointTransformerV3Object(**mesh_cfg)
        self.global_encoder = ShapeAsLatentPerceiverEncoder(**glob_cfg)
        self.feat_map = _ln_gelu(self.mesh_encoder.out_channels, self.feat_dim)
        self.out_proj = _ln_gelu(self.global_encoder.width, self.feat_dim)
        self.bone_encoder = BoneEncoder(3, self.feat_dim, int(cfg["bone_embed_dim"]), self.num_heads,
                                        int(cfg["num_bone_attn"]))  # fmt: skip
        self.downscale = _ln_gelu(2 * self.num_heads, self.num_heads)
        self.skinweight_pred = SkinweightPred(self.num_heads, int(cfg["mlp_dim"]))
        self.mesh_bone_attn = nn.ModuleList(
            [ResidualCrossAttn(self.feat_dim, self.num_heads) for _ in range(int(cfg["num_mesh_bone_attn"]))]
        )
        self.qmesh = nn.Linear(self.feat_dim, self.feat_dim * self.num_heads)
        self.kmesh = nn.Linear(self.feat_dim, self.feat_dim * self.num_heads)
        self.voxel_skin_embed = nn.Linear(1, self.num_heads)
        self.voxel_skin_norm = nn.LayerNorm(self.num_heads)
        self.attn_skin_norm = nn.LayerNorm(self.num_heads)

    @torch.no_grad()
    def predict(self, vertices: Tensor, normals: Tensor, joints: Tensor, parents: Sequence[int],
                voxel_skin: Tensor) -> Tensor:  # fmt: skip
        """Skin weights (N, J) on the N sampled points (one cloud; upstream's `_get_predict` in eval mode)."""
        dtype = next(self.parameters()).dtype
        v, nrm, jt, vs = (t[None].to(dtype) for t in (vertices, normals, joints, voxel_skin))
        n, j = v.shape[1], jt.shape[1]
        h, c = self.num_heads, self.feat_dim
        min_coord = v[0].min(0).values[None]
        global_latents = self.out_proj(self.global_encoder.encode_latents(v, nrm))
        bone_feat = self.bone_encoder(jt, min_coord, global_latents)
        feat = torch.cat([v, nrm, torch.zeros_like(v)], dim=-1)[0].float()
        offset = torch.tensor([n], device=v.device)
        mesh_feat = self.mesh_encoder(v[0].float(), feat, offset, self.grid_size)
        mesh_feat = self.feat_map(mesh_feat.to(dtype)).view(1, n, c)
        latents = torch.cat([bone_feat, global_latents], dim=1)
        for block in self.mesh_bone_attn:
            mesh_feat = block(mesh_feat, latents)
        bone_k = self.kmesh(bone_feat).view(1, j, h, c).transpose(1, 2)  # (1, H, J, C)
        mask = vs[0].clone()
        for i in range(j):  # upstream's single forward pass of child -> parent sums
            if parents[i] >= 0:
                mask[:, parents[i]] += mask[:, i]
        preds = []
        for start in range(0, n, self.num_train_vertex):
            idx = slice(start, min(start + self.num_train_vertex, n))
            cur = mesh_feat[:, idx]
            m = cur.shape[1]
            q = self.qmesh(cur).view(1, m, h, c).transpose(1, 2)
            attn = torch.softmax(q @ bone_k.transpose(-2, -1) / math.sqrt(c), dim=-1)  # (1, H, m, J)
            attn = self.attn_skin_norm(attn.permute(0, 2, 3, 1))
            emb = self.voxel_skin_norm(self.voxel_skin_embed(vs[:, idx].reshape(1, m, j, 1)))
            x = self.downscale(torch.cat([attn, emb], dim=-1))
            preds.append(torch.softmax(self.skinweight_pred(x[0].reshape(-1, h)).reshape(m, j), dim=1))
        skin = torch.cat(preds) * torch.pow(mask, self.voxel_mask)
        return skin / skin.sum(dim=-1, keepdim=True)


# --- geometry: sampling, voxel skin, reskin ---------------------------------------------------------------------------


def to_blender(v: np.ndarray) -> np.ndarray:
    """glTF (Y up) -> Blender (Z up), as Blender's glTF importer maps positions."""
    return np.stack([v[:, 0], -v[:, 2], v[:, 1]], axis=1)


def from_blender(v: np.ndarray) -> np.ndarray:
    return np.stack([v[:, 0], v[:, 2], -v[:, 1]], axis=1)


def sample_mix(vertices: np.ndarray, faces: np.ndarray, vertex_normals: np.ndarray, face_normals: np.ndarray,
               num_samples: int, vertex_samples: int, rng: np.random.Generator,
               groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:  # fmt: skip
    """SamplerMix: a random subset of vertices plus area-weighted surface points (groups interpolated)."""
    perm = rng.permutation(len(vertices))[: min(vertex_samples, len(vertices))]
    rest = num_samples - len(perm)
    e0 = vertices[faces[:, 1]] - vertices[faces[:, 0]]
    e1 = vertices[faces[:, 2]] - vertices[faces[:, 0]]
    w = (np.cross(e0, e1) ** 2).sum(axis=1)  # upstream weights faces by squared area
    cum = np.cumsum(w)
    face = np.searchsorted(cum, rng.random(rest) * cum[-1])
    lengths = rng.random((rest, 2, 1))
    over = lengths.sum(axis=1).reshape(-1) > 1.0
    lengths[over] -= 1.0
    lengths = np.abs(lengths)

    def bary(values: np.ndarray) -> np.ndarray:
        origin = values[faces[face, 0]]
        vec = values[faces[face, 1:]] - origin[:, None]
        return origin + (vec * lengths).sum(axis=1)

    pts = np.concatenate([vertices[perm], bary(vertices)])
    nrm = np.concatenate([vertex_normals[perm], face_normals[face]])
    grp = np.concatenate([groups[perm], bary(groups)]) if groups is not None else None
    return pts, nrm, grp


def voxelize(vertices: np.ndarray, faces: np.ndarray, grid: int) -> np.ndarray:
    """Centres of the voxels inside the mesh: surface voxels plus upstream's open3d-backend fill rule (a voxel lying
    between surface voxels along at least two axes)."""
    pitch = 2.0 / grid
    vox = trimesh.Trimesh(vertices, faces, process=False).voxelized(pitch=pitch)
    surf = np.asarray(vox.matrix, dtype=bool)
    idx = np.indices(surf.shape)
    inside = np.zeros(surf.shape, dtype=np.int64)
    for axis in range(3):
        coord = idx[axis]
        lo = np.where(surf, coord, np.iinfo(np.int64).max).min(axis=axis, keepdims=True)
        hi = np.where(surf, coord, -1).max(axis=axis, keepdims=True)
        inside += (coord >= lo) & (coord <= hi)
    filled = surf | (inside >= 2)
    return np.asarray(vox.indices_to_points(np.argwhere(filled)), dtype=np.float64)


def voxel_skin(grid: int, grid_coords: np.ndarray, joints: np.ndarray, vertices: np.ndarray, faces: np.ndarray,
               alpha: float = 0.5, link_dis: float = 1e-5, grid_query: int = 27, vertex_query: int = 27,
               grid_weight: float = 3.0) -> np.ndarray:  # fmt: skip
    """Geodesic voxel binding (upstream's `voxel_skin`, mode 'square'): (N, J) prior weights."""
    j, m, n = len(joints), len(grid_coords), len(vertices)
    grid_tree, vertex_tree, joint_tree = cKDTree(grid_coords), cKDTree(vertices), cKDTree(joints)
    src, dst, wts = [], [], []
    if m > 1:
        gq = min(grid_query, m)
        dist, idx = grid_tree.query(grid_coords, gq)
        dist, idx = dist[:, 1:], idx[:, 1:]
        mask = (dist > 0) & (dist < 2 / grid * 1.001)
        src.append(np.repeat(np.arange(m), gq - 1)[mask.ravel()] + n)
        dst.append(idx[mask] + n)
        wts.append(dist[mask] * grid_weight)
    dist, idx = vertex_tree.query(vertices, min(4, n))
    dist, idx = dist[:, 1:], idx[:, 1:]
    mask = (dist > 0) & (dist < link_dis * 1.001)
    src.append(np.repeat(np.arange(n), dist.shape[1])[mask.ravel()])
    dst.append(idx[mask])
    wts.append(dist[mask])
    if m > 0:
        dist, idx = vertex_tree.query(grid_coords, vertex_query)
        dist, idx = dist.reshape(m, -1), idx.reshape(m, -1)
        mask = (dist > 0) & (dist < 2 / grid * 1.001)
        src.append(np.repeat(np.arange(m), dist.shape[1])[mask.ravel()] + n)
        dst.append(idx[mask])
        wts.append(dist[mask])
    _, joint_idx = cKDTree(np.concatenate([vertices, grid_coords])).query(joints)
    a = np.concatenate([faces[:, 0], faces[:, 1], faces[:, 2]])
    b = np.concatenate([faces[:, 1], faces[:, 2], faces[:, 0]])
    src.append(a)
    dst.append(b)
    wts.append(np.sqrt(((vertices[a] - vertices[b]) ** 2).sum(axis=-1)))
    graph = csr_matrix((np.concatenate(wts), (np.concatenate(src), np.concatenate(dst))), shape=(n + m, n + m))
    d = shortest_path(graph, method="D", directed=False, indices=joint_idx)[:, :n]
    unreachable = np.isinf(d).all(axis=0)
    if unreachable.any():
        k = min(j, 3)
        dist, idx = joint_tree.query(vertices[unreachable], k)
        cols = np.repeat(np.where(unreachable)[0], k).reshape(-1, k)
        d[idx.reshape(-1, k), cols] = dist.reshape(-1, k)
    max_dis = np.max(d[np.isfinite(d)])
    d = np.maximum(np.nan_to_num(d, nan=max_dis, posinf=max_dis, neginf=max_dis), 1e-6)
    skin = (1.0 / ((1 - alpha) * d + alpha * d**2)) ** 2
    skin = skin / skin.sum(axis=0)
    return np.nan_to_num(skin.T, nan=0.0, posinf=0.0, neginf=0.0)


def reskin(sampled: np.ndarray, vertices: np.ndarray, parents: Sequence[int], faces: np.ndarray, skin_s: np.ndarray,
           nearest: int = 7, alpha: float = 2.0, threshold: float = 0.03) -> np.ndarray:  # fmt: skip
    """Upstream's `reskin(sample_method='median', alpha=2, threshold=0.03)`: sampled-point weights -> mesh vertices."""
    n, j = len(vertices), skin_s.shape[1]
    _, near = cKDTree(sampled).query(vertices, k=min(nearest, len(sampled)))
    skin = np.median(skin_s[near.reshape(n, -1)], axis=1)
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edges = np.concatenate([edges, edges[:, [1, 0]]])
    total = skin.copy()
    for i in reversed(range(j)):
        if parents[i] >= 0:
            total[:, parents[i]] += total[:, i]
    hotter = total[edges[:, 1]] < total[edges[:, 0]]
    dis = np.sqrt(((vertices[edges[:, 1]] - vertices[edges[:, 0]]) ** 2).sum(axis=1, keepdims=True))
    co = np.exp(-dis * alpha)
    neighbour = np.zeros_like(total)
    neighbour_co = np.zeros((n, j))
    neighbour[edges[:, 1]] += total[edges[:, 0]] * co * hotter  # numpy fancy +=, exactly as upstream writes it
    neighbour_co[edges[:, 1]] += co * hotter
    total = (total + neighbour) / (1.0 + neighbour_co)
    for i in range(j):
        if parents[i] >= 0:
            total[:, parents[i]] -= total[:, i]
    skin = total / total.sum(axis=-1, keepdims=True)
    keep = (skin >= threshold).any(axis=-1, keepdims=True)
    skin[(skin < threshold) & keep] = 0.0
    return skin / skin.sum(axis=-1, keepdims=True)


# --- loading ----------------------------------------------------------------------------------------------------------


def _read_configs(model_dir: Path) -> dict[str, dict]:
    out = copy.deepcopy(DEFAULT_CONFIGS)
    for key, rel in CONFIG_FILES.items():
        path = model_dir / rel
        if path.is_file():
            try:
                loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
            except yaml.YAMLError as exc:
                raise ModelLoadError(f"UniRig config {path} is not valid YAML: {exc}") from exc
            if not isinstance(loaded, dict):
                raise ModelLoadError(f"UniRig config {path} is not a mapping")
            out[key] = loaded
    return out


def _read_state(path: Path, allow_pickle: bool) -> dict[str, Tensor]:
    """The network's tensors from a Lightning checkpoint (`state_dict`, prefix `model.` stripped)."""
    if not path.is_file():
        raise ModelLoadError(f"UniRig checkpoint {path} is missing")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" not in str(exc):
            raise ModelLoadError(f"UniRig checkpoint {path} is unreadable or corrupt: {exc}") from exc
        raise ModelLoadError(
            f"{path} holds objects beyond tensors; load it with allow_pickle=True only if you trust its source"
        ) from exc
    except Exception as exc:
        raise ModelLoadError(f"UniRig checkpoint {path} is unreadable or corrupt: {exc}") from exc
    state = raw.get("state_dict", raw) if isinstance(raw, dict) else None
    if not isinstance(state, Mapping):
        raise ModelLoadError(f"{path} has no state_dict")
    tensors = {k.removeprefix("model."): v for k, v in state.items() if isinstance(v, Tensor)}
    if not tensors:
        raise ModelLoadError(f"{path} holds no tensors")
    return tensors


def _load_into(module: nn.Module, state: Mapping[str, Tensor], path: Path, optional: Sequence[str] = ()) -> None:
    own = module.state_dict()
    missing = [k for k in own if k not in state and k not in optional]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        raise ModelLoadError(
            f"UniRig checkpoint {path} does not match its config: missing {missing[:5]} ({len(missing)}), "
            f"unexpected {unexpected[:5]} ({len(unexpected)}), wrong shape {wrong[:5]} ({len(wrong)})"
        )
    module.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)


@dataclass(frozen=True)
class Rig:
    """UniRig's result in the input's own coordinates: joints (J, 3), parents (J,) (-1 root), names, weights (V, J)."""

    joints: np.ndarray
    parents: np.ndarray
    names: list[str]
    weights: np.ndarray


class UniRigModel:
    """Both networks plus upstream's pre/post-processing; `generate(mesh, seed)` -> Rig."""

    def __init__(self, skeleton: UniRigAR, skin: UniRigSkin, configs: Mapping[str, dict], device: str) -> None:
        self.skeleton, self.skin, self.configs, self.device = skeleton, skin, configs, device
        self.tokenizer = skeleton.tokenizer

    def _sampler(self, key: str) -> tuple[int, int]:
        cfg = self.configs[key].get("sampler_config") or {}
        return int(cfg.get("num_samples", 0)), int(cfg.get("vertex_samples", 0))

    def _voxel_cfg(self) -> dict:
        vg = (self.configs["skin_transform"].get("predict_transform_config") or {}).get("vertex_group_config") or {}
        return dict((vg.get("kwargs") or {}).get("voxel_skin") or {})

    def generate_kwargs(self, overrides: Mapping[str, Any] | None = None) -> tuple[dict, str | None]:
        kw = dict(self.configs["ar_system"].get("generate_kwargs") or {})
        kw.update(overrides or {})
        no_cls, cls = kw.pop("no_cls", False), kw.pop("assign_cls", None)
        kw.pop("use_dir_cls", None)
        return kw, (None if no_cls else cls)

    @torch.no_grad()
    def generate(self, mesh: trimesh.Trimesh, seed: int = 0, generate_overrides: Mapping[str, Any] | None = None,
                 progress: Callable[[float], None] | None = None) -> Rig:  # fmt: skip
        progress = progress or (lambda f: None)
        verts = to_blender(np.asarray(mesh.vertices, dtype=np.float64))
        faces = np.asarray(mesh.faces, dtype=np.int64)
        if len(verts) < 3 or len(faces) == 0:
            raise InputRejected("The model has no triangles to rig.")
        lo, hi = verts.min(axis=0), verts.max(axis=0)
        scale = float(np.max(hi - lo)) / 2.0
        if scale <= 0:
            raise InputRejected("The model has no extent to rig.")
        center = (lo + hi) / 2.0
        v = (verts - center) / scale
        tm = trimesh.Trimesh(v, faces, process=False)
        vn = np.nan_to_num(np.asarray(tm.vertex_normals, dtype=np.float64))
        fn = np.nan_to_num(np.asarray(tm.face_normals, dtype=np.float64))
        rng = np.random.default_rng(seed)
        dev = self.device
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            # 1. skeleton
            pts, nrm, _ = sample_mix(v, faces, vn, fn, *self._sampler("ar_transform"), rng)
            kwargs, cls = self.generate_kwargs(generate_overrides)
            ids = self.skeleton.generate(torch.from_numpy(pts).float().to(dev), torch.from_numpy(nrm).float().to(dev),
                                         cls, **kwargs)  # fmt: skip
            ids = self.tokenizer.close(ids)
            joints, parents, names = self.tokenizer.detokenize(ids)
            progress(0.5)
            # 2. skinning on the normalised mesh (skin transform normalises the same way)
            vcfg = self._voxel_cfg()
            grid = int(vcfg.get("grid", 196))
            vs_vertices = voxel_skin(
                grid, voxelize(v, faces, grid), joints, v, faces, alpha=float(vcfg.get("alpha", 0.5)),
                link_dis=float(vcfg.get("link_dis", 1e-5)), grid_query=int(vcfg.get("grid_query", 27)),
                vertex_query=int(vcfg.get("vertex_query", 27)), grid_weight=float(vcfg.get("grid_weight", 3.0)),
            )  # fmt: skip
            progress(0.6)
            spts, snrm, svs = sample_mix(v, faces, vn, fn, *self._sampler("skin_transform"), rng, groups=vs_vertices)
            as_t = lambda a: torch.from_numpy(np.asarray(a)).float().to(dev)  # noqa: E731
            skin_s = self.skin.predict(as_t(spts), as_t(snrm), as_t(joints), parents.tolist(), as_t(svs))
            skin_s = np.nan_to_num(skin_s.float().cpu().numpy().astype(np.float64))
            weights = reskin(spts, v, parents.tolist(), faces, skin_s)
            weights = np.nan_to_num(weights)
            empty = weights.sum(axis=1) <= 0
            if empty.any():  # a vertex whose every weight vanished: its nearest joint
                _, nearest = cKDTree(joints).query(v[empty])
                weights[empty] = np.eye(len(joints))[nearest]
            progress(0.95)
        world = from_blender(joints * scale + center)
        return Rig(joints=world, parents=parents, names=names, weights=weights)


def load(model_dir: Path, device: str | None = None, allow_pickle: bool = False) -> UniRigModel:
    model_dir = Path(model_dir)
    device = device or default_device()
    if not model_dir.is_dir():
        raise ModelLoadError(f"UniRig model directory {model_dir} does not exist")
    configs = _read_configs(model_dir)
    tokenizer = SkeletonTokenizer(configs["tokenizer"])
    ar_path, skin_path = model_dir / SKELETON_CKPT, model_dir / SKIN_CKPT
    ar_state, skin_state = _read_state(ar_path, allow_pickle), _read_state(skin_path, allow_pickle)
    try:
        skeleton = UniRigAR(configs["ar_model"], tokenizer)
        skin = UniRigSkin(configs["skin_model"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelLoadError(f"UniRig configs under {model_dir} are incomplete: {exc}") from exc
    _load_into(skeleton, ar_state, ar_path, optional=("transformer.lm_head.weight",))
    skeleton.transformer.tie_weights()
    _load_into(skin, skin_state, skin_path)
    dtype = torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32  # upstream: bf16-mixed
    skeleton.to(device=device).eval()
    skin.to(device=device).eval()
    if dtype != torch.float32:
        skeleton.transformer.to(dtype)
    return UniRigModel(skeleton, skin, configs, device)


# --- GLB writer -------------------------------------------------------------------------------------------------------


def write_rig_glb(path: Path, mesh: trimesh.Trimesh, rig: Rig) -> Path:
    """A skinned GLB of UniRig's own skeleton (rest pose, identity joint rotations, top-4 weights per vertex)."""
    import pygltflib as gl

    from inference.motion.export import _Blob  # the project's buffer/accessor packer

    j = len(rig.joints)
    blob = _Blob()
    nodes = []
    children: dict[int, list[int]] = {k: [] for k in range(j)}
    for k, p in enumerate(rig.parents.tolist()):
        if p >= 0:
            children[p].append(k)
    for k in range(j):
        p = int(rig.parents[k])
        local = rig.joints[k] - (rig.joints[p] if p >= 0 else 0.0)
        nodes.append(gl.Node(name=rig.names[k], translation=[float(x) for x in local], children=children[k] or None))
    roots = [k for k in range(j) if rig.parents[k] < 0]
    nodes.append(gl.Node(name="Armature", children=roots))
    armature = len(nodes) - 1
    order = np.argsort(-rig.weights, axis=1, kind="stable")[:, :4]
    w = np.take_along_axis(rig.weights, order, axis=1)
    if w.shape[1] < 4:
        pad = 4 - w.shape[1]
        w, order = np.pad(w, ((0, 0), (0, pad))), np.pad(order, ((0, 0), (0, pad)))
    w = np.clip(w, 0, None)
    w = (w / w.sum(axis=1, keepdims=True)).astype(np.float32)
    order[w == 0] = 0
    w[:, 0] = 1.0 - w[:, 1:].sum(axis=1)
    positions = np.asarray(mesh.vertices, dtype=np.float32)
    attrs = gl.Attributes(
        POSITION=blob.accessor(positions, gl.VEC3, gl.FLOAT, gl.ARRAY_BUFFER, minmax=True),
        NORMAL=blob.accessor(np.asarray(mesh.vertex_normals, dtype=np.float32), gl.VEC3, gl.FLOAT, gl.ARRAY_BUFFER),
        JOINTS_0=blob.accessor(order.astype(np.uint16), gl.VEC4, gl.UNSIGNED_SHORT, gl.ARRAY_BUFFER),
        WEIGHTS_0=blob.accessor(w, gl.VEC4, gl.FLOAT, gl.ARRAY_BUFFER),
    )
    wide = len(positions) > 65535
    faces = np.asarray(mesh.faces).ravel().astype(np.uint32 if wide else np.uint16)
    indices = blob.accessor(faces, gl.SCALAR, gl.UNSIGNED_INT if wide else gl.UNSIGNED_SHORT, gl.ELEMENT_ARRAY_BUFFER)
    ibm = np.tile(np.eye(4, dtype=np.float32), (j, 1, 1))
    ibm[:, :3, 3] = -rig.joints
    ibm_acc = blob.accessor(ibm.transpose(0, 2, 1).reshape(j, 16), gl.MAT4, gl.FLOAT)
    nodes.append(gl.Node(name="Character", mesh=0, skin=0))
    gltf = gl.GLTF2(asset=gl.Asset(version="2.0", generator="MeshFoundry UniRig"), scene=0, nodes=nodes)
    gltf.meshes = [gl.Mesh(name="Character", primitives=[gl.Primitive(attributes=attrs, indices=indices)])]
    gltf.skins = [gl.Skin(name="Armature", joints=list(range(j)), inverseBindMatrices=ibm_acc, skeleton=armature)]
    gltf.scenes = [gl.Scene(name="Scene", nodes=[armature, len(nodes) - 1])]
    gltf.accessors, gltf.bufferViews = blob.accessors, blob.views
    while len(blob.data) % 4:
        blob.data.append(0)
    gltf.buffers = [gl.Buffer(byteLength=len(blob.data))]
    gltf.set_binary_blob(bytes(blob.data))
    gltf.save_binary(str(path))
    return Path(path)


# --- runner -----------------------------------------------------------------------------------------------------------


class UniRigRunner(ResidentModel):
    """Runner protocol for `rig` (alternative rigger): inputs {"model": path, "source_format": "glb"}, params `seed`
    and optional `generate_kwargs` overrides; writes `Character_output.glb` (UniRig's own skeleton, NOT Mixamo)."""

    name = "unirig"

    def __init__(self, model_dir: Path, device: str | None = None, allow_pickle: bool = False) -> None:
        super().__init__(model_dir, device)
        self.allow_pickle = allow_pickle
        self._model: UniRigModel | None = None

    def _load_model(self) -> UniRigModel:
        return load(self.model_dir, self.device, self.allow_pickle)

    def _modules(self) -> list[nn.Module]:
        assert self._model is not None
        return [self._model.skeleton, self._model.skin]

    def _weight_files(self) -> list[Path]:
        return [self.model_dir / SKELETON_CKPT, self.model_dir / SKIN_CKPT]

    def generate(self, mesh: trimesh.Trimesh, seed: int = 0, generate_kwargs: Mapping[str, Any] | None = None,
                 progress: Callable[[float], None] | None = None) -> Rig:  # fmt: skip
        with self._lock:
            self.load()
            assert self._model is not None
            return self._model.generate(mesh, seed, generate_kwargs, progress)

    def run(self, inputs: Mapping[str, Any], params: Mapping[str, Any], out_dir: Path,
            progress: ProgressCallback) -> RunnerArtifacts:  # fmt: skip
        source = inputs.get("model")
        if not source:
            raise ValueError("unirig needs inputs['model'] (a mesh file)")
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        progress(0.0)
        try:
            mesh = trimesh.load(Path(source), force="mesh", process=False,
                                file_type=inputs.get("source_format") or None)  # fmt: skip
        except Exception as exc:
            raise InputRejected("The model file could not be read as a mesh.", "format_conversion_failed") from exc
        if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
            raise InputRejected("The model has no triangles to rig.")
        seed = int(params.get("seed") or 0)
        started = time.perf_counter()
        rig = self.generate(mesh, seed, params.get("generate_kwargs"), lambda f: progress(0.05 + 0.9 * f))
        elapsed = time.perf_counter() - started
        glb = write_rig_glb(out_dir / OUTPUT_NAME, mesh, rig)
        progress(1.0)
        return RunnerArtifacts(
            metadata={
                "result": {"rigged_character_glb_url": glb.name},
                "files": [glb.name],
                "model": self.name,
                "skeleton": "unirig",  # its own joint tree, not the Mixamo-named 24 bones
                "joint_count": len(rig.joints),
                "seed": seed,
                "device": str(self.device),
                "generation_s": round(elapsed, 3),
            }
        )
