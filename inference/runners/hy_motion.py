"""HY-Motion 1.0 runner: text-to-motion with Tencent Hunyuan's flow-matching MMDiT, retargeted onto our skeleton.

What the real model is (read from github.com/Tencent-Hunyuan/HY-Motion-1.0, `hymotion/`; this module is our own
re-implementation of that inference path, written to load the released weights unchanged):

* Checkpoint layout (`ckpts/README.md`, `local_infer.py`): a variant folder `HY-Motion-1.0/` (1.04B) or
  `HY-Motion-1.0-Lite/` (0.46B) holding `config.yml` (YAML: `network_module`, `network_module_args`,
  `train_pipeline`, `train_pipeline_args`) and `latest.ckpt` (`torch.save` dict whose `model_state_dict` has the
  DiT under `motion_transformer.`, the learned CFG null features `null_vtxt_feat` (1,1,768) / `null_ctxt_input`
  (1,1,4096), `special_game_*` features, and the latent statistics `mean`/`std` (201,)). Text encoders sit next to
  it as Hugging Face folders `Qwen3-8B/` and `clip-vit-large-patch14/`; `stats/Mean.npy`, `Std.npy` are the
  statistics' fallback.
* Text (`text_encoder.py`): Qwen3-8B wraps the prompt in a chat template with a fixed "summarize human motion"
  system prompt; the final (post-norm) hidden states of the user's tokens, cropped to `max_length_llm` (128) after
  the template prefix, are the token context `ctxt` (B,128,4096) with a length mask; CLIP ViT-L/14's
  `pooler_output` is the sentence vector `vtxt` (B,1,768).
* Network (`hymotion_mmdit.py`, `token_refiner.py`): `ctxt` -> Linear -> a 2-block `SingleTokenRefiner`
  (timestep- and mean-pooled-context-modulated self-attention); motion latents -> Linear; adaLN conditioning =
  sinusoidal(t * time_factor) MLP + MLP(vtxt). Then num_layers // 3 FLUX-style double-stream blocks (separate
  motion/text weights, joint attention, RMS QK-norm, RoPE over the concatenated sequence when
  `apply_rope_to_single_branch` is false) and the rest single-stream blocks (fused qkv+MLP linear), a
  "narrowband" +-60-frame mask on motion->motion attention, text->motion attention disabled, and an adaLN final
  layer back to 201 dims. Full: feat 1280, 20 heads, 27 layers; Lite: 1024, 16 heads, 18 layers.
* Sampler (`motion_diffusion.py`): flow matching from noise (t=0) to data (t=1), `torchdiffeq.odeint` on
  `linspace(0, 1, validation_steps + 1)` (Euler), classifier-free guidance against the learned null features
  (`text_guidance_scale`), noise of `train_frames` (360 = 12 s at 30 fps) frames cropped to the requested length.
* Motion ("o6dp", 201 = 3 + 6 + 21*6 + 66): root translation, root 6D rotation, 21 body-joint 6D rotations of the
  22-joint SMPL-H body (6D = first two matrix columns interleaved), then 22 joint positions the decoder ignores.
  Decoding de-normalises, Gaussian-smooths the rotations on the quaternion sphere (sigma 1) and Savitzky-Golay
  smooths the translation (11, 5). Rotations are SMPL-style locals in world-aligned rest frames on the "wooden"
  T-pose (+Y up, facing +Z, left at +X: the same axes as ours).

Retargeting (ours): SMPL world rotations are composed down the SMPL tree, each of our 24 bones takes its SMPL
joint's world rotation times a rest correction turning our canonical bone direction onto the SMPL rest direction
(so the bone points where the SMPL bone points), then is made local again; toe ends follow the toes, the head and
hands follow their parents' correction. The root is the pelvis displacement scaled by the hip-height ratio, grounded
so the clip's lowest joint touches the canonical sole height (upstream grounds on the mesh's lowest vertex).

Confirmed from source: module/parameter layout (our parameter names equal upstream's, so `latest.ckpt` loads
unchanged), forward pass, masks, RoPE, sampler, CFG, decoding, joint order and rest joint positions
(`dump_wooden/joints.ply`). From third-party audits, not the release itself (its `config.yml` is not public here):
Full/Lite hyper-parameters, `max_length_llm: 128`, `text_guidance_scale: 5.0`, `validation_steps: 50`,
`enable_ctxt_null_feat: true` -- all read from `config.yml` at load time, never hard-coded. Assumed/deviations:
adaptive ODE methods (dopri5...) fall back to Euler on the same grid; the text encoders run in float32 on the CPU
(bfloat16 on CUDA, as upstream); grounding uses joints, not the wooden mesh; the optional LLM prompt rewriter /
duration predictor (Text2MotionPrompter) and the "special game" features are not used. Licence: Tencent HY-Motion
1.0 Community License -- not valid in the EU, UK and South Korea, products over 1M MAU need Tencent's licence,
outputs may not train other models. Weights are never bundled; the operator downloads them.
"""

from __future__ import annotations

import logging
import math
import pickle
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from scipy.signal import savgol_filter
from scipy.spatial.transform import Rotation
from torch import Tensor, nn

from inference.motion.skeleton import BONE_COUNT, BONES, CANONICAL, INDEX, PARENTS, PRIMARY_CHILD, Clip, world_pose
from inference.runners.base import ProgressCallback, RunnerArtifacts
from inference.runners.torch_weights import ModelLoadError, ResidentModel, default_device

__all__ = ["HYMotionModel", "HYMotionRunner", "ModelLoadError", "load", "smpl_to_clip"]

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.yml"
CKPT_NAME = "latest.ckpt"
VARIANTS = ("HY-Motion-1.0", "HY-Motion-1.0-Lite")
QWEN_DIR = "Qwen3-8B"
CLIP_DIR = "clip-vit-large-patch14"
MOTION_DIM = 201
NUM_JOINTS = 22
FPS = 30.0
NARROWBAND_FRAMES_PER_S = 30.0  # the narrowband window is given in seconds and scaled by 30 upstream
ROPE_MAX_LEN = 5000
# Upstream's system prompt for the Qwen3 encoder (model_constants.py), whitespace included: it is tokenised.
SYSTEM_PROMPT = (
    "\n    Summarize human motion only from the user text for representation: action categories, key body-part "
    "movements, order/transitions, trajectory/direction, posture; include style/emotion/speed only if present. "
    "Explicitly capture laterality (left/right) when mentioned; do not guess. If multiple actions are described, "
    "indicate the count of distinct actions (e.g., actions=3) and their order. Do not invent missing info. Keep one "
    "concise paragraph.\n"
)
CROP_MARKER = "<BOC>"

# Progress shares: loading (when lazy), text encoding, sampling, decoding.
LOADED_AT = 0.05
ENCODED_AT = 0.10
SAMPLED_AT = 0.90

# --- the SMPL-H body (first 22 joints of the wooden model) ------------------------------------------------------------

SMPL_JOINTS = (
    "Pelvis", "L_Hip", "R_Hip", "Spine1", "L_Knee", "R_Knee", "Spine2", "L_Ankle", "R_Ankle", "Spine3", "L_Foot",
    "R_Foot", "Neck", "L_Collar", "R_Collar", "Head", "L_Shoulder", "R_Shoulder", "L_Elbow", "R_Elbow", "L_Wrist",
    "R_Wrist",
)  # fmt: skip
SMPL_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19)
# Rest joint positions of HY-Motion's wooden body (scripts/gradio/static/assets/dump_wooden/joints.ply), metres.
SMPL_REST = np.array([
    [-0.0018, -0.1908, 0.0282], [0.0806, -0.2808, 0.0251], [-0.0806, -0.2808, 0.0251], [0.0, -0.0966, 0.0317],
    [0.0998, -0.6581, 0.0147], [-0.0979, -0.6582, 0.0147], [0.0, 0.0260, 0.0292], [0.1011, -1.0562, -0.0375],
    [-0.0970, -1.0563, -0.0375], [0.0, 0.1062, 0.0050], [0.1136, -1.1279, 0.1052], [-0.1092, -1.1280, 0.1052],
    [0.0, 0.3021, -0.0150], [0.0547, 0.2251, -0.0202], [-0.0547, 0.2251, -0.0202], [0.0, 0.3977, -0.0165],
    [0.1654, 0.2375, -0.0169], [-0.1654, 0.2375, -0.0169], [0.4334, 0.2494, -0.0296], [-0.4334, 0.2494, -0.0296],
    [0.7025, 0.2534, -0.0427], [-0.7025, 0.2534, -0.0427],
])  # fmt: skip
# Our bone -> the SMPL joint whose rotation drives it (toe ends have none: they follow the toes).
BONE_TO_SMPL: dict[str, int] = {
    "Hips": 0, "Spine": 3, "Spine1": 6, "Spine2": 9, "Neck": 12, "Head": 15,
    "LeftShoulder": 13, "LeftArm": 16, "LeftForeArm": 18, "LeftHand": 20,
    "RightShoulder": 14, "RightArm": 17, "RightForeArm": 19, "RightHand": 21,
    "LeftUpLeg": 1, "LeftLeg": 4, "LeftFoot": 7, "LeftToeBase": 10,
    "RightUpLeg": 2, "RightLeg": 5, "RightFoot": 8, "RightToeBase": 11,
}  # fmt: skip


def _min_rotation(src: np.ndarray, dst: np.ndarray) -> Rotation:
    """The smallest rotation turning direction `src` onto `dst` (both non-zero, never opposite here)."""
    a, b = src / np.linalg.norm(src), dst / np.linalg.norm(dst)
    axis = np.cross(a, b)
    s, c = float(np.linalg.norm(axis)), float(np.clip(a @ b, -1.0, 1.0))
    return Rotation.identity() if s < 1e-9 else Rotation.from_rotvec(axis / s * math.atan2(s, c))


def _rest_corrections() -> list[Rotation]:
    """Per bone, the rotation taking our canonical rest bone direction onto the SMPL rest direction of its joint."""
    smpl_of = {INDEX[name]: j for name, j in BONE_TO_SMPL.items()}
    out: list[Rotation] = []
    for b in range(BONE_COUNT):
        child = PRIMARY_CHILD[b]
        if child >= 0 and b in smpl_of and child in smpl_of:
            d_can = CANONICAL.positions[child] - CANONICAL.positions[b]
            d_smpl = SMPL_REST[smpl_of[child]] - SMPL_REST[smpl_of[b]]
            out.append(_min_rotation(d_can, d_smpl))
        elif child >= 0:  # toe base: SMPL's 22 joints end at the toe joint, whose rest frame is ours (flat, +Z)
            out.append(Rotation.identity())
        else:  # leaves (head, hands, toe ends) keep their parent's correction, as skeleton.rest_corrections does
            out.append(out[PARENTS[b]])
    return out


_CORRECTIONS = _rest_corrections()
_SMPL_HIP_HEIGHT = float(SMPL_REST[0, 1] - SMPL_REST[:, 1].min())


def smpl_to_clip(rotmats: np.ndarray, transl: np.ndarray, fps: float = FPS, name: str = "hy-motion") -> Clip:
    """A `Clip` on the canonical skeleton from SMPL-H body locals (F, 22, 3, 3) and the root translation (F, 3)."""
    frames = rotmats.shape[0]
    world: list[Rotation] = []
    for j in range(NUM_JOINTS):
        local = Rotation.from_matrix(rotmats[:, j])
        world.append(local if SMPL_PARENTS[j] < 0 else world[SMPL_PARENTS[j]] * local)
    ours: list[Rotation] = []
    for b, bone in enumerate(BONES):
        j = BONE_TO_SMPL.get(bone)
        ours.append(world[j] * _CORRECTIONS[b] if j is not None else ours[PARENTS[b]])  # toe end follows its toe
    rotations = np.empty((frames, BONE_COUNT, 4))
    for b in range(BONE_COUNT):
        p = PARENTS[b]
        rotations[:, b] = (ours[b] if p < 0 else ours[p].inv() * ours[b]).as_quat()
    rotations /= np.linalg.norm(rotations, axis=-1, keepdims=True)
    scale = CANONICAL.hip_height() / _SMPL_HIP_HEIGHT
    root = CANONICAL.positions[INDEX["Hips"]] + np.asarray(transl, dtype=np.float64) * scale
    _, positions = world_pose(CANONICAL, rotations, root)
    root[:, 1] += CANONICAL.positions[:, 1].min() - positions[..., 1].min()  # lowest joint of the clip on the floor
    return Clip(name=name, fps=float(fps), rotations=rotations, root=root, meta={"source": "hy-motion"})


# --- network (parameter names follow upstream so `latest.ckpt` loads as is) ----------------------------------------


def _activation(kind: str) -> nn.Module:
    table: dict[str, Callable[[], nn.Module]] = {
        "gelu": nn.GELU,
        "gelu_tanh": lambda: nn.GELU(approximate="tanh"),
        "relu": nn.ReLU,
        "silu": nn.SiLU,
    }
    if kind not in table:
        raise ValueError(f"unknown activation {kind!r}")
    return table[kind]()


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


def _qk_norm(kind: str | None, dim: int) -> nn.Module:
    if kind == "rms":
        return RMSNorm(dim)
    if kind == "layer":
        return nn.LayerNorm(dim, elementwise_affine=True, eps=1e-6)
    if kind in (None, "none"):
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}")


def _plain_norm(dim: int) -> nn.LayerNorm:
    return nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)


class Modulation(nn.Module):
    """adaLN: SiLU then one linear producing `factor` vectors of the feature width (upstream's ModulateDiT)."""

    def __init__(self, dim: int, factor: int, act: str = "silu") -> None:
        super().__init__()
        self.act = _activation(act)
        self.linear = nn.Linear(dim, factor * dim)

    def forward(self, c: Tensor, chunks: int) -> tuple[Tensor, ...]:
        return self.linear(self.act(c)).chunk(chunks, dim=-1)


def _modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1 + scale) + shift


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int, act: str) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = _activation(act)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class MLPEncoder(nn.Module):
    """Linear, then (act, Linear) * (layers - 1), as `linears.0`, `linears.2`..."""

    def __init__(self, in_dim: int, dim: int, layers: int = 2, act: str = "silu") -> None:
        super().__init__()
        mods: list[nn.Module] = [nn.Linear(in_dim, dim)]
        for _ in range(layers - 1):
            mods += [_activation(act), nn.Linear(dim, dim)]
        self.linears = nn.Sequential(*mods)

    def forward(self, x: Tensor) -> Tensor:
        return self.linears(x)


class TimestepEncoder(nn.Module):
    """cos/sin embedding of t * time_factor, then Linear-act-Linear; returns (B, 1, dim)."""

    def __init__(self, dim: int, act: str = "silu", time_factor: float = 1.0) -> None:
        super().__init__()
        self.dim, self.time_factor = dim, float(time_factor)
        self.blocks = nn.Sequential(nn.Linear(dim, dim), _activation(act), nn.Linear(dim, dim))

    def forward(self, t: Tensor) -> Tensor:
        half = self.dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        args = (t.float() * self.time_factor)[:, None] * freqs[None]
        emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        if self.dim % 2:
            emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
        return self.blocks(emb.to(self.blocks[0].weight.dtype)).unsqueeze(1)


def _rope(length: int, head_dim: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Real-valued RoPE tables (length, head_dim), each frequency repeated for its (even, odd) pair."""
    if length > ROPE_MAX_LEN:
        raise ValueError(f"sequence of {length} exceeds the RoPE table ({ROPE_MAX_LEN})")
    freqs = 1.0 / (10000.0 ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim))
    angles = torch.outer(torch.arange(length, dtype=torch.float32, device=device), freqs)
    return angles.cos().repeat_interleave(2, dim=1), angles.sin().repeat_interleave(2, dim=1)


def _apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """x (B, L, H, D): rotate each (even, odd) pair by its position's angle."""
    xf = x.float()
    pairs = xf.reshape(*xf.shape[:-1], -1, 2)
    rotated = torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)
    return (xf * cos[None, : x.shape[1], None] + rotated * sin[None, : x.shape[1], None]).type_as(x)


def _split_heads(qkv: Tensor, heads: int) -> tuple[Tensor, Tensor, Tensor]:
    """(B, L, 3*H*D) laid out as (3, H, D) -> q, k, v each (B, L, H, D)."""
    b, n, width = qkv.shape
    q, k, v = qkv.view(b, n, 3, heads, width // (3 * heads)).unbind(dim=2)
    return q, k, v


def _attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
    """(B, L, H, D) in, (B, L, H*D) out; `mask` is additive (B, 1, L, L)."""
    out = F.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=None if mask is None else mask.to(q.dtype)
    )
    return out.transpose(1, 2).flatten(2)


class RefinerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float, act: str, qk_norm: str, qkv_bias: bool) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=True, eps=1e-6)
        self.self_attn_qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.self_attn_q_norm = _qk_norm(qk_norm, dim // heads)
        self.self_attn_k_norm = _qk_norm(qk_norm, dim // heads)
        self.self_attn_proj = nn.Linear(dim, dim, bias=qkv_bias)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=True, eps=1e-6)
        self.mlp = MLP(dim, int(dim * mlp_ratio), act)
        self.adaLN_modulation = Modulation(dim, 2)

    def forward(self, x: Tensor, c: Tensor, mask: Tensor | None) -> Tensor:
        gate_attn, gate_mlp = self.adaLN_modulation(c, 2)
        q, k, v = _split_heads(self.self_attn_qkv(self.norm1(x)), self.heads)
        q, k = self.self_attn_q_norm(q).to(v), self.self_attn_k_norm(k).to(v)
        x = x + self.self_attn_proj(_attend(q, k, v, mask)) * gate_attn
        return x + self.mlp(self.norm2(x)) * gate_mlp


class IndividualTokenRefiner(nn.Module):
    def __init__(self, blocks: list[RefinerBlock]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)


class SingleTokenRefiner(nn.Module):
    """Refines the LLM tokens before the DiT: self-attention blocks gated by timestep + pooled context."""

    def __init__(
        self,
        input_dim: int,
        feat_dim: int,
        num_heads: int,
        num_layers: int,
        mlp_ratio: float = 4.0,
        mlp_act_type: str = "silu",
        qk_norm_type: str = "layer",
        qkv_bias: bool = True,
        **_: Any,
    ) -> None:
        super().__init__()
        self.input_embedder = nn.Linear(input_dim, feat_dim)
        self.context_encoder = MLPEncoder(feat_dim, feat_dim, 2, mlp_act_type)
        self.timestep_encoder = TimestepEncoder(feat_dim, mlp_act_type)
        self.individual_token_refiner = IndividualTokenRefiner(
            [
                RefinerBlock(feat_dim, num_heads, mlp_ratio, mlp_act_type, qk_norm_type, qkv_bias)
                for _ in range(num_layers)
            ]
        )

    def forward(self, x: Tensor, t: Tensor, valid: Tensor) -> Tensor:
        w = valid.to(x.dtype).unsqueeze(-1)
        pooled = (x * w).sum(dim=1) / w.sum(dim=1).clamp_min(1e-6)
        c = self.timestep_encoder(t) + self.context_encoder(pooled).unsqueeze(1)
        x = self.input_embedder(x)
        pair = valid[:, None, :, None] & valid[:, None, None, :]  # (B, 1, L, L): valid query and valid key
        eye = torch.eye(pair.shape[-1], dtype=torch.bool, device=pair.device)[None, None]
        pair = torch.where(pair.any(dim=-1, keepdim=True), pair, eye)  # rows with no key see themselves
        mask = torch.zeros(pair.shape, dtype=x.dtype, device=x.device).masked_fill(~pair, float("-inf"))
        for block in self.individual_token_refiner.blocks:
            x = block(x, c, mask)
        return x


class DoubleStreamBlock(nn.Module):
    def __init__(
        self, dim: int, heads: int, mlp_ratio: float, act: str, qk_norm: str, qkv_bias: bool, rope_motion_only: bool
    ) -> None:
        super().__init__()
        self.heads, self.rope_motion_only = heads, rope_motion_only
        hidden = int(dim * mlp_ratio)
        for side in ("motion", "text"):
            setattr(self, f"{side}_mod", Modulation(dim, 6))
            setattr(self, f"{side}_norm1", _plain_norm(dim))
            setattr(self, f"{side}_qkv", nn.Linear(dim, 3 * dim, bias=qkv_bias))
            setattr(self, f"{side}_q_norm", _qk_norm(qk_norm, dim // heads))
            setattr(self, f"{side}_k_norm", _qk_norm(qk_norm, dim // heads))
            setattr(self, f"{side}_out_proj", nn.Linear(dim, dim, bias=qkv_bias))
            setattr(self, f"{side}_norm2", _plain_norm(dim))
            setattr(self, f"{side}_mlp", MLP(dim, hidden, act))

    def _qkv(self, side: str, x: Tensor, shift: Tensor, scale: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        h = _modulate(getattr(self, f"{side}_norm1")(x), shift, scale)
        q, k, v = _split_heads(getattr(self, f"{side}_qkv")(h), self.heads)
        return getattr(self, f"{side}_q_norm")(q).to(v), getattr(self, f"{side}_k_norm")(k).to(v), v

    def _finish(self, side: str, x: Tensor, attn: Tensor, mods: tuple[Tensor, ...]) -> Tensor:
        _, _, gate_attn, shift_mlp, scale_mlp, gate_mlp = mods
        x = x + getattr(self, f"{side}_out_proj")(attn) * gate_attn
        h = _modulate(getattr(self, f"{side}_norm2")(x), shift_mlp, scale_mlp)
        return x + getattr(self, f"{side}_mlp")(h) * gate_mlp

    def forward(
        self, motion: Tensor, text: Tensor, c: Tensor, mask: Tensor, rope: tuple[Tensor, Tensor]
    ) -> tuple[Tensor, Tensor]:
        m_mods, t_mods = self.motion_mod(c, 6), self.text_mod(c, 6)
        mq, mk, mv = self._qkv("motion", motion, m_mods[0], m_mods[1])
        tq, tk, tv = self._qkv("text", text, t_mods[0], t_mods[1])
        if self.rope_motion_only:
            mq, mk = _apply_rope(mq, *rope), _apply_rope(mk, *rope)
        q, k, v = torch.cat((mq, tq), 1), torch.cat((mk, tk), 1), torch.cat((mv, tv), 1)
        if not self.rope_motion_only:
            q, k = _apply_rope(q, *rope), _apply_rope(k, *rope)
        attn = _attend(q, k, v, mask)
        n = motion.shape[1]
        return self._finish("motion", motion, attn[:, :n], m_mods), self._finish("text", text, attn[:, n:], t_mods)


class SingleStreamBlock(nn.Module):
    def __init__(
        self, dim: int, heads: int, mlp_ratio: float, act: str, qk_norm: str, qkv_bias: bool, rope_motion_only: bool
    ) -> None:
        super().__init__()
        self.dim, self.heads, self.rope_motion_only = dim, heads, rope_motion_only
        self.hidden = int(dim * mlp_ratio)
        self.modulation = Modulation(dim, 3)
        self.norm = _plain_norm(dim)
        self.linear1 = nn.Linear(dim, 3 * dim + self.hidden, bias=qkv_bias)
        self.linear2 = nn.Linear(dim + self.hidden, dim, bias=qkv_bias)
        self.q_norm = _qk_norm(qk_norm, dim // heads)
        self.k_norm = _qk_norm(qk_norm, dim // heads)
        self.mlp_act = _activation(act)

    def forward(self, x: Tensor, motion_len: int, c: Tensor, mask: Tensor, rope: tuple[Tensor, Tensor]) -> Tensor:
        shift, scale, gate = self.modulation(c, 3)
        qkv, mlp = self.linear1(_modulate(self.norm(x), shift, scale)).split([3 * self.dim, self.hidden], dim=-1)
        q, k, v = _split_heads(qkv, self.heads)
        q, k = self.q_norm(q).to(v), self.k_norm(k).to(v)
        if self.rope_motion_only:
            q = torch.cat((_apply_rope(q[:, :motion_len], *rope), q[:, motion_len:]), 1)
            k = torch.cat((_apply_rope(k[:, :motion_len], *rope), k[:, motion_len:]), 1)
        else:
            q, k = _apply_rope(q, *rope), _apply_rope(k, *rope)
        out = self.linear2(torch.cat((_attend(q, k, v, mask), self.mlp_act(mlp)), dim=2))
        return x + out * gate


class FinalLayer(nn.Module):
    def __init__(self, feat_dim: int, out_dim: int, act_type: str = "gelu", **_: Any) -> None:
        super().__init__()
        self.norm_final = _plain_norm(feat_dim)
        self.adaLN_modulation = Modulation(feat_dim, 2, act_type)
        self.linear = nn.Linear(feat_dim, out_dim)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift, scale = self.adaLN_modulation(c, 2)
        return self.linear(_modulate(self.norm_final(x), shift, scale))


class HunyuanMotionMMDiT(nn.Module):
    """The motion DiT; constructor arguments are `network_module_args` from `config.yml`."""

    def __init__(
        self,
        input_dim: int,
        feat_dim: int,
        output_dim: int | None = None,
        ctxt_input_dim: int = 4096,
        vtxt_input_dim: int = 256,
        text_refiner_module: str | None = "hymotion/network/token_refiner.SingleTokenRefiner",
        text_refiner_cfg: Mapping[str, Any] | None = None,
        num_layers: int = 12,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        mlp_act_type: str = "gelu_tanh",
        qk_norm_type: str = "rms",
        qkv_bias: bool = True,
        final_layer_module: str = "hymotion/network/encoders.FinalLayer",
        final_layer_cfg: Mapping[str, Any] | None = None,
        mask_mode: str | None = None,
        apply_rope_to_single_branch: bool = True,
        insert_start_token: bool = False,
        with_long_skip_connection: bool = False,
        time_factor: float = 1.0,
        narrowband_length: float = 2.0,
        **_: Any,
    ) -> None:
        super().__init__()
        if num_layers % 3:
            raise ValueError(f"num_layers must be divisible by 3, got {num_layers}")
        if mask_mode not in (None, "causal", "narrowband"):
            raise ValueError(f"unsupported mask_mode {mask_mode!r}")
        if text_refiner_module and not str(text_refiner_module).endswith("SingleTokenRefiner"):
            raise ValueError(f"unsupported text refiner {text_refiner_module!r}")
        if not str(final_layer_module).endswith("FinalLayer"):
            raise ValueError(f"unsupported final layer {final_layer_module!r}")
        self.input_dim, self.feat_dim, self.heads = input_dim, feat_dim, num_heads
        self.output_dim = output_dim or input_dim
        self.mask_mode, self.insert_start_token = mask_mode, insert_start_token
        self.narrowband = int(round(narrowband_length * NARROWBAND_FRAMES_PER_S))
        if insert_start_token:
            self.start_token = nn.Parameter(torch.zeros(1, feat_dim))
        self.with_long_skip_connection = with_long_skip_connection
        if with_long_skip_connection:
            self.long_skip_net = FinalLayer(feat_dim, feat_dim, act_type="silu")
        self.input_encoder = nn.Linear(input_dim, feat_dim)
        self.ctxt_encoder = nn.Linear(ctxt_input_dim, feat_dim)
        self.vtxt_encoder = MLPEncoder(vtxt_input_dim, feat_dim, 2, "silu")
        self.timestep_encoder = TimestepEncoder(feat_dim, "silu", time_factor)
        if text_refiner_module:
            cfg = {"num_layers": 2, **dict(text_refiner_cfg or {})}
            cfg.update(input_dim=feat_dim, feat_dim=feat_dim, num_heads=num_heads)
            self.text_refiner = SingleTokenRefiner(**cfg)
        rope_motion_only = bool(apply_rope_to_single_branch)
        args = (feat_dim, num_heads, mlp_ratio, mlp_act_type, qk_norm_type, qkv_bias, rope_motion_only)
        self.double_blocks = nn.ModuleList([DoubleStreamBlock(*args) for _ in range(num_layers // 3)])
        self.single_blocks = nn.ModuleList([SingleStreamBlock(*args) for _ in range(num_layers - num_layers // 3)])
        self.final_layer = FinalLayer(feat_dim, self.output_dim, **{"act_type": "silu", **dict(final_layer_cfg or {})})

    def _attention_mask(self, motion_valid: Tensor, text_valid: Tensor) -> Tensor:
        """Additive (B, 1, M+T, M+T): padded keys hidden, the motion->motion band or causal mask, text->motion
        hidden. One mask serves both stream kinds (upstream builds the same one twice)."""
        b, m = motion_valid.shape
        total = m + text_valid.shape[1]
        device = motion_valid.device
        keys = torch.cat((motion_valid, text_valid), dim=1)
        mask = torch.zeros((b, 1, total, total), device=device)
        mask = mask.masked_fill(~keys[:, None, None, :], float("-inf"))
        if self.mask_mode is not None:
            idx = torch.arange(m, device=device)
            if self.mask_mode == "narrowband":
                blocked = (idx[None, :] - idx[:, None]).abs() > self.narrowband
            else:
                blocked = idx[None, :] > idx[:, None]
            mask[:, :, :m, :m] = mask[:, :, :m, :m].masked_fill(blocked, float("-inf"))
        mask[:, :, m:, :m] = float("-inf")
        return mask

    def forward(
        self, x: Tensor, ctxt: Tensor, vtxt: Tensor, t: Tensor, motion_valid: Tensor, text_valid: Tensor
    ) -> Tensor:
        motion = self.input_encoder(x)
        origin = motion
        if self.insert_start_token:
            motion = torch.cat((self.start_token[None].expand(motion.shape[0], -1, -1), motion), dim=1)
            motion_valid = torch.cat((torch.ones_like(motion_valid[:, :1]), motion_valid), dim=1)
        t_feat = self.timestep_encoder(t)
        c = t_feat + self.vtxt_encoder(vtxt.float())
        text = self.ctxt_encoder(ctxt.float())
        if hasattr(self, "text_refiner"):
            text = self.text_refiner(text, t, text_valid)
        mask = self._attention_mask(motion_valid, text_valid)
        m = motion.shape[1]
        head_dim = self.feat_dim // self.heads
        # RoPE positions: motion only (0..M-1) or the concatenated sequence (0..M+T-1); tables cover the longer.
        rope = _rope(m + text.shape[1], head_dim, x.device)
        for block in self.double_blocks:
            motion, text = block(motion, text, c, mask, rope)
        h = torch.cat((motion, text), dim=1)
        for block in self.single_blocks:
            h = block(h, m, c, mask, rope)
        h = h[:, :m]
        if self.insert_start_token:
            h = h[:, 1:]
        if self.with_long_skip_connection:
            h = h + self.long_skip_net(origin, t_feat)
        return self.final_layer(h, c)


# --- text encoders ----------------------------------------------------------------------------------------------------


class HYTextEncoder:
    """Qwen3 token context + CLIP pooled sentence vector, as upstream's HYTextModel computes them."""

    def __init__(self, qwen_dir: Path, clip_dir: Path, cfg: Mapping[str, Any], device: str, dtype: torch.dtype) -> None:
        from transformers import AutoModel, AutoTokenizer, CLIPTextModel, CLIPTokenizer

        if cfg.get("llm_type", "qwen3") != "qwen3" or cfg.get("sentence_emb_type", "clipl") != "clipl":
            raise ModelLoadError(f"unsupported text encoders in config.yml: {dict(cfg)}")
        self.device = device
        self.max_llm = int(cfg.get("max_length_llm", 512))
        self.max_clip = int(cfg.get("max_length_sentence_emb", 77))
        self.qwen_tok = AutoTokenizer.from_pretrained(qwen_dir, padding_side="right", local_files_only=True)
        # The base model's last_hidden_state is the post-norm hidden_states[-1] upstream reads from the causal LM.
        self.qwen = AutoModel.from_pretrained(qwen_dir, dtype=dtype, local_files_only=True).to(device).eval()
        self.clip_tok = CLIPTokenizer.from_pretrained(clip_dir, local_files_only=True)
        self.clip = CLIPTextModel.from_pretrained(clip_dir, local_files_only=True).to(device).eval()
        self.crop_start = self._crop_start()

    def _template(self, text: str) -> str:
        messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": text}]
        return self.qwen_tok.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=False, enable_thinking=False
        )

    def _crop_start(self) -> int:
        """Index of the first user token: where a marker's tokens start in the templated marker."""
        full = self.qwen_tok(self._template(CROP_MARKER), add_special_tokens=True)["input_ids"]
        marker = self.qwen_tok(CROP_MARKER, add_special_tokens=False)["input_ids"]
        for i in range(len(full) - len(marker) + 1):
            if full[i : i + len(marker)] == marker:
                return i
        return max(0, len(full) - 1)

    @torch.no_grad()
    def encode(self, text: str) -> tuple[Tensor, Tensor, Tensor]:
        """vtxt (1, 1, clip_hidden), ctxt (1, max_length_llm, llm_hidden), ctxt_length (1,)."""
        enc = self.qwen_tok(
            [self._template(text)],
            truncation=True,
            max_length=self.max_llm + self.crop_start,
            padding="max_length",
            return_tensors="pt",
        ).to(self.device)
        hidden = self.qwen(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
        ctxt = hidden[:, self.crop_start : self.crop_start + self.max_llm].float()
        length = (enc["attention_mask"].sum(dim=-1) - self.crop_start).clamp(0, self.max_llm)
        clip_in = self.clip_tok(
            [text], truncation=True, max_length=self.max_clip, padding=True, return_tensors="pt"
        ).to(self.device)
        vtxt = self.clip(input_ids=clip_in["input_ids"], attention_mask=clip_in["attention_mask"]).pooler_output
        return vtxt.float().unsqueeze(1), ctxt, length


# --- sampling and decoding --------------------------------------------------------------------------------------------


def _ode_step(method: str, f: Callable[[Tensor, Tensor], Tensor], t: Tensor, dt: Tensor, y: Tensor) -> Tensor:
    """One fixed-grid step as torchdiffeq takes it (its `rk4` is the 3/8 rule)."""
    if method == "midpoint":
        return y + dt * f(t + dt / 2, y + dt / 2 * f(t, y))
    if method == "rk4":
        k1 = f(t, y)
        k2 = f(t + dt / 3, y + dt * k1 / 3)
        k3 = f(t + 2 * dt / 3, y + dt * (k2 - k1 / 3))
        k4 = f(t + dt, y + dt * (k1 - k2 + k3))
        return y + dt * (k1 + 3 * (k2 + k3) + k4) / 8
    return y + dt * f(t, y)


def rot6d_to_matrix(d6: np.ndarray) -> np.ndarray:
    """(..., 6) interleaved first two columns -> (..., 3, 3) by Gram-Schmidt (Zhou et al.)."""
    a1, a2 = d6[..., 0::2], d6[..., 1::2]
    b1 = a1 / np.maximum(np.linalg.norm(a1, axis=-1, keepdims=True), 1e-12)
    a2 = a2 - (b1 * a2).sum(-1, keepdims=True) * b1
    b2 = a2 / np.maximum(np.linalg.norm(a2, axis=-1, keepdims=True), 1e-12)
    return np.stack((b1, b2, np.cross(b1, b2)), axis=-1)


def smooth_quaternions(q: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """Gaussian smoothing on the quaternion sphere, (F, J, 4): edge-padded window of radius 4*sigma, signs aligned to
    the centre frame, weighted Markley average (principal eigenvector of sum w q q^T)."""
    frames = q.shape[0]
    if frames < 2 or sigma <= 0:
        return q.copy()
    flips = np.cumsum(np.sum(q[1:] * q[:-1], axis=-1) < 0, axis=0) % 2  # temporal continuity
    q = q.copy()
    q[1:] *= np.where(flips[..., None] == 1, -1.0, 1.0)
    radius = int(4.0 * sigma + 0.5)
    weights = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    weights /= weights.sum()
    padded = np.concatenate([np.repeat(q[:1], radius, 0), q, np.repeat(q[-1:], radius, 0)], axis=0)
    windows = np.stack([padded[i : i + frames] for i in range(2 * radius + 1)], axis=0)  # (K, F, J, 4)
    windows = windows * np.where((windows * q[None]).sum(-1, keepdims=True) < 0, -1.0, 1.0)
    acc = np.einsum("k,kfji,kfjl->fjil", weights, windows, windows)
    _, vecs = np.linalg.eigh(acc)
    return vecs[..., -1]


@dataclass(frozen=True)
class SamplerSettings:
    steps: int
    method: str
    guidance_scale: float
    train_frames: int
    fps: float
    enable_ctxt_null_feat: bool
    random_generator_on_gpu: bool


class HYMotionModel(nn.Module):
    """The loaded pipeline: DiT + learned null features + latent statistics (+ text encoders once attached)."""

    def __init__(self, network_args: Mapping[str, Any], settings: SamplerSettings) -> None:
        super().__init__()
        self.motion_transformer = HunyuanMotionMMDiT(**network_args)
        vdim = int(network_args.get("vtxt_input_dim", 768))
        cdim = int(network_args.get("ctxt_input_dim", 4096))
        self.null_vtxt_feat = nn.Parameter(torch.zeros(1, 1, vdim))
        self.null_ctxt_input = nn.Parameter(torch.zeros(1, 1, cdim))
        self.register_buffer("mean", torch.zeros(MOTION_DIM))
        self.register_buffer("std", torch.ones(MOTION_DIM))
        self.settings = settings
        self.text_encoder: HYTextEncoder | None = None

    @property
    def device(self) -> torch.device:
        return self.mean.device

    @torch.no_grad()
    def sample(
        self, prompt: str, frames: int, seed: int, step_progress: Callable[[float], None] | None = None
    ) -> np.ndarray:
        """De-normalised latents (frames, 201) for `prompt`."""
        s = self.settings
        assert self.text_encoder is not None
        device = self.device
        vtxt, ctxt, ctxt_len = self.text_encoder.encode(prompt)
        vtxt, ctxt = vtxt.to(device), ctxt.to(device)
        text_valid = torch.arange(ctxt.shape[1], device=device)[None] < ctxt_len.to(device)[:, None]
        motion_valid = torch.arange(s.train_frames, device=device)[None] < frames
        cfg = s.guidance_scale > 1.0
        if cfg:
            null_ctxt = self.null_ctxt_input.expand(*ctxt.shape) if s.enable_ctxt_null_feat else ctxt
            vtxt = torch.cat((self.null_vtxt_feat.expand(*vtxt.shape), vtxt))
            ctxt = torch.cat((null_ctxt, ctxt))
            text_valid, motion_valid = text_valid.repeat(2, 1), motion_valid.repeat(2, 1)

        def velocity(t: Tensor, x: Tensor) -> Tensor:
            xin = torch.cat((x, x)) if cfg else x
            out = self.motion_transformer(xin, ctxt, vtxt, t.expand(xin.shape[0]), motion_valid, text_valid)
            if cfg:
                uncond, cond = out.chunk(2)
                out = uncond + s.guidance_scale * (cond - uncond)
            return out

        on_gpu = s.random_generator_on_gpu and device.type == "cuda"
        generator = torch.Generator(device=device if on_gpu else "cpu").manual_seed(int(seed))
        shape = (1, s.train_frames, self.motion_transformer.input_dim)
        y = torch.randn(shape, generator=generator, device=device if on_gpu else "cpu").to(device)
        grid = torch.linspace(0, 1, s.steps + 1, device=device)
        for i in range(s.steps):
            y = _ode_step(s.method, velocity, grid[i], grid[i + 1] - grid[i], y)
            if step_progress is not None:
                step_progress((i + 1) / s.steps)
        latent = y[0, :frames].float()
        std = torch.where(self.std < 1e-3, torch.zeros_like(self.std), self.std)
        return (latent * std + self.mean).cpu().numpy().astype(np.float64)

    def generate(
        self, prompt: str, duration_s: float, seed: int = 0, progress: Callable[[float], None] | None = None
    ) -> Clip:
        """A clip of about `duration_s` seconds (frames = round(duration * fps), clamped to the model's window)."""
        s = self.settings
        frames = int(round(float(duration_s) * s.fps))
        frames = max(min(frames, s.train_frames), min(s.train_frames, 20))
        latent = self.sample(prompt, frames, seed, progress)
        transl = latent[:, 0:3]
        rot6d = latent[:, 3 : 3 + NUM_JOINTS * 6].reshape(frames, NUM_JOINTS, 6)
        quats = Rotation.from_matrix(rot6d_to_matrix(rot6d).reshape(-1, 3, 3)).as_quat()
        quats = smooth_quaternions(quats.reshape(frames, NUM_JOINTS, 4), sigma=1.0)
        rotmats = Rotation.from_quat(quats.reshape(-1, 4)).as_matrix().reshape(frames, NUM_JOINTS, 3, 3)
        if frames >= 11:
            transl = savgol_filter(transl, 11, 5, axis=0)
        clip = smpl_to_clip(rotmats, transl, fps=s.fps, name=prompt[:64])
        return Clip(clip.name, clip.fps, clip.rotations, clip.root, meta={**clip.meta, "prompt": prompt, "seed": seed})


# --- loading ----------------------------------------------------------------------------------------------------------


def _find_variant(model_dir: Path, variant: str | None) -> Path:
    names = [variant] if variant else list(VARIANTS)
    candidates = [model_dir] + [model_dir / sub / n for n in names for sub in (".", "tencent")]
    for c in candidates:
        if (c / CONFIG_NAME).is_file():
            return c
    raise ModelLoadError(
        f"no HY-Motion checkpoint in {model_dir}: expected {CONFIG_NAME} and {CKPT_NAME} there or in "
        f"{' / '.join(names)}/ (download tencent/HY-Motion-1.0 from Hugging Face)"
    )


def _find_encoder(name: str, roots: list[Path]) -> Path:
    for root in roots:
        if (root / name / "config.json").is_file():
            return root / name
    raise ModelLoadError(f"text encoder {name}/ (with config.json) not found next to the checkpoint in {roots[0]}")


def _read_checkpoint(path: Path, allow_pickle: bool) -> dict[str, Tensor]:
    if not path.is_file():
        raise ModelLoadError(f"HY-Motion checkpoint {path} is missing")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" not in str(exc):  # weights_only refused a class; anything else is damage
            raise ModelLoadError(f"HY-Motion checkpoint {path} is unreadable or corrupt: {exc}") from exc
        raise ModelLoadError(
            f"{path} holds objects beyond tensors; load it with allow_pickle=True only if you trust its source"
        ) from exc
    except Exception as exc:  # truncated zip, not a torch file...
        raise ModelLoadError(f"HY-Motion checkpoint {path} is unreadable or corrupt: {exc}") from exc
    state = raw.get("model_state_dict", raw) if isinstance(raw, dict) else None
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ModelLoadError(f"{path} has no model_state_dict of tensors")
    return dict(state)


def _read_stats(ckpt_dir: Path, model_dir: Path, cfg_dir: str | None) -> tuple[Tensor, Tensor] | None:
    for d in [ckpt_dir / "stats", model_dir / "stats", *([ckpt_dir / cfg_dir] if cfg_dir else [])]:
        if (d / "Mean.npy").is_file() and (d / "Std.npy").is_file():
            return torch.from_numpy(np.load(d / "Mean.npy")).float(), torch.from_numpy(np.load(d / "Std.npy")).float()
    return None


def load(
    model_dir: str | Path,
    device: str | None = None,
    variant: str | None = None,
    steps: int | None = None,
    guidance_scale: float | None = None,
    allow_pickle: bool = False,
) -> HYMotionModel:
    """Load HY-Motion from a local download; raises ModelLoadError with the reason when anything is missing/corrupt.

    `model_dir` holds `config.yml` + `latest.ckpt`, or a variant folder (`HY-Motion-1.0[-Lite]`, also under
    `tencent/`); `Qwen3-8B/` and `clip-vit-large-patch14/` are looked up in `model_dir`, the variant folder and its
    parents (upstream's `ckpts/` layout). `steps`/`guidance_scale` override config.yml's.
    """
    model_dir = Path(model_dir)
    device = device or default_device()
    ckpt_dir = _find_variant(model_dir, variant)
    try:
        config = yaml.safe_load((ckpt_dir / CONFIG_NAME).read_text(encoding="utf-8"))
        net_args = dict(config["network_module_args"])
        pipe_args = dict(config.get("train_pipeline_args") or {})
        network_module = str(config.get("network_module", "HunyuanMotionMMDiT"))
    except Exception as exc:
        raise ModelLoadError(f"{ckpt_dir / CONFIG_NAME} is not a readable HY-Motion config: {exc}") from exc
    if not network_module.endswith("HunyuanMotionMMDiT"):
        raise ModelLoadError(f"unsupported network_module {network_module!r} (this adapter runs HunyuanMotionMMDiT)")
    if int(net_args.get("input_dim", MOTION_DIM)) != MOTION_DIM:
        raise ModelLoadError(f"input_dim {net_args.get('input_dim')} is not HY-Motion's 201-dim o6dp motion")
    test_cfg = dict(pipe_args.get("test_cfg") or {})
    method = str((pipe_args.get("noise_scheduler_cfg") or {}).get("method", "euler"))
    if method not in ("euler", "midpoint", "rk4"):
        logger.warning("ODE method %r is adaptive; sampling with Euler on the same grid instead", method)
        method = "euler"
    settings = SamplerSettings(
        steps=int(steps or (pipe_args.get("infer_noise_scheduler_cfg") or {}).get("validation_steps", 50)),
        method=method,
        guidance_scale=float(guidance_scale if guidance_scale is not None else test_cfg.get("text_guidance_scale", 1)),
        train_frames=int(pipe_args.get("train_frames", 360)),
        fps=float(pipe_args.get("output_mesh_fps", FPS)),
        enable_ctxt_null_feat=bool(pipe_args.get("enable_ctxt_null_feat", False)),
        random_generator_on_gpu=bool(pipe_args.get("random_generator_on_gpu", True)),
    )
    started = time.perf_counter()
    state = _read_checkpoint(ckpt_dir / CKPT_NAME, allow_pickle)
    try:
        model = HYMotionModel(net_args, settings)
    except (TypeError, ValueError) as exc:
        raise ModelLoadError(f"network_module_args in {ckpt_dir / CONFIG_NAME} do not build the DiT: {exc}") from exc
    wanted = model.state_dict()
    if "mean" not in state or "std" not in state:
        stats = _read_stats(ckpt_dir, model_dir, test_cfg.get("mean_std_dir"))
        if stats is None:
            raise ModelLoadError(f"latent mean/std are neither in {CKPT_NAME} nor in a stats/ folder")
        state["mean"], state["std"] = stats
    subset = {k: v for k, v in state.items() if k in wanted}
    missing = sorted(set(wanted) - set(subset))
    if missing:
        raise ModelLoadError(f"{ckpt_dir / CKPT_NAME} lacks {len(missing)} tensors, e.g. {missing[:3]}")
    bad = [k for k, v in subset.items() if tuple(v.shape) != tuple(wanted[k].shape)]
    if bad:
        k = bad[0]
        raise ModelLoadError(
            f"{CKPT_NAME} does not match config.yml: {k} is {tuple(subset[k].shape)}, "
            f"expected {tuple(wanted[k].shape)} ({len(bad)} mismatched)"
        )
    model.load_state_dict(subset, strict=True)
    model = model.to(device).eval().requires_grad_(False)
    on_cuda = torch.device(device).type == "cuda"
    roots = [model_dir, ckpt_dir, ckpt_dir.parent, ckpt_dir.parent.parent]
    text_cfg = dict(pipe_args.get("text_encoder_cfg") or {})
    try:
        model.text_encoder = HYTextEncoder(
            _find_encoder(QWEN_DIR, roots),
            _find_encoder(CLIP_DIR, roots),
            text_cfg,
            device,
            torch.bfloat16 if on_cuda else torch.float32,
        )
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"could not load HY-Motion's text encoders: {exc}") from exc
    logger.info("loaded HY-Motion from %s on %s in %.1f s", ckpt_dir, device, time.perf_counter() - started)
    return model


# --- runner -----------------------------------------------------------------------------------------------------------


class HYMotionRunner(ResidentModel):
    """Runner protocol for `text-to-motion`: params `prompt`, `duration` (s), `mode`, optional `seed`; writes the
    task's files as every text-to-motion runner does (`character.motion_outputs`: FBX or BVH, and `motion.npz`)."""

    name = "hy-motion"

    def __init__(
        self,
        model_dir: Path,
        device: str | None = None,
        variant: str | None = None,
        steps: int | None = None,
        guidance_scale: float | None = None,
        allow_pickle: bool = False,
    ) -> None:
        super().__init__(model_dir, device)
        self.variant, self.steps, self.guidance_scale = variant, steps, guidance_scale
        self.allow_pickle = allow_pickle  # only for a latest.ckpt that weights_only loading refuses and you trust
        self._model: HYMotionModel | None = None

    def _load_model(self) -> HYMotionModel:
        return load(self.model_dir, self.device, self.variant, self.steps, self.guidance_scale, self.allow_pickle)

    def _modules(self) -> list[nn.Module]:
        """The DiT and both text encoders (weight_bytes measures them when loaded; else the checkpoint files)."""
        assert self._model is not None
        mods: list[nn.Module] = [self._model]
        if self._model.text_encoder is not None:
            mods += [self._model.text_encoder.qwen, self._model.text_encoder.clip]
        return mods

    def _weight_files(self) -> list[Path]:
        return [*self.model_dir.rglob(CKPT_NAME), *self.model_dir.rglob("*.safetensors")]

    @property
    def estimated_vram_gb(self) -> float:
        return self.weight_bytes * 1.15 / 2**30  # activations at 360 frames are small next to the 8B encoder

    def generate(
        self, prompt: str, duration_s: float, seed: int = 0, progress: Callable[[float], None] | None = None
    ) -> Clip:
        with self._lock:
            self.load()
            assert self._model is not None
            return self._model.generate(prompt, duration_s, seed, progress)

    def run(
        self,
        inputs: Mapping[str, Any],
        params: Mapping[str, Any],
        out_dir: Path,
        progress: ProgressCallback,
    ) -> RunnerArtifacts:
        prompt = str(params.get("prompt") or "").strip()
        if not prompt:
            raise ValueError("hy-motion needs params['prompt']")
        duration = float(params.get("duration") or params.get("duration_s") or 4.0)
        seed = int(params.get("seed") or 0)
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        progress(0.0)
        with self._lock:
            self.load()
            progress(ENCODED_AT)
            started = time.perf_counter()
            clip = self.generate(prompt, duration, seed, lambda f: progress(ENCODED_AT + (SAMPLED_AT - ENCODED_AT) * f))
            elapsed = time.perf_counter() - started
        from inference.runners.character import motion_outputs  # FBX/BVH writing, shared with the CPU reference

        written = motion_outputs(out_dir, clip, {**params, "duration": duration})
        progress(1.0)
        settings = self._model.settings if self._model is not None else None
        return RunnerArtifacts(
            metadata={
                **written,
                "model": self.name,
                "frames": clip.frame_count,
                "fps": clip.fps,
                "duration_s": clip.duration,
                "seed": seed,
                "device": str(self.device),
                "steps": settings.steps if settings else None,
                "guidance_scale": settings.guidance_scale if settings else None,
                "generation_s": round(elapsed, 3),
            }
        )
