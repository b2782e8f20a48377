"""A tiny, randomly initialised Stable Diffusion pipeline for tests and GPU smoke runs: NOT a model, its images
are noise-coloured blotches.

`build_tiny_diffusion(path)` writes a complete `diffusers.StableDiffusionPipeline` directory (about 140k
parameters, well under 1 MB of safetensors) that `from_pretrained(path, local_files_only=True)` loads exactly like
a real Stable Diffusion checkpoint, so `DiffusionImageRunner` is exercised through its real loading and
generation path without any download. Component shapes follow diffusers' own fast test
(`tests/pipelines/stable_diffusion/test_stable_diffusion.py`): a two-level UNet with one cross-attention block,
a two-level VAE (so latents are half the image size, not an eighth) and a 32-wide CLIP text encoder. The tokenizer
is the offline byte-level CLIP tokenizer of `tiny_shap_e` (the fast test fetches one from the hub).
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from inference.runners.tiny_shap_e import offline_clip_tokenizer

TEXT_HIDDEN = 32
# Image side the tiny model is meant to run at (any multiple of 8 works; latents are half of it).
TINY_BASE_SIZE = 64


def build_tiny_pipeline(seed: int = 0) -> StableDiffusionPipeline:
    """The tiny pipeline in memory (CPU, float32), no safety checker.

    Weights come from a forked, seeded RNG, so builds are identical and the caller's global RNG is untouched.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _build()


def _build() -> StableDiffusionPipeline:
    unet = UNet2DConditionModel(
        block_out_channels=(4, 8),
        layers_per_block=1,
        sample_size=TINY_BASE_SIZE // 2,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TEXT_HIDDEN,
        norm_num_groups=2,
    )
    vae = AutoencoderKL(
        block_out_channels=(4, 8),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=2,
        sample_size=TINY_BASE_SIZE,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=2,
            hidden_size=TEXT_HIDDEN,
            intermediate_size=37,
            layer_norm_eps=1e-05,
            num_attention_heads=4,
            num_hidden_layers=2,
            pad_token_id=1,
            vocab_size=1000,
        )
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,  # as Stable Diffusion 1.x ships it (diffusers warns about 0)
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=offline_clip_tokenizer(),
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_tiny_diffusion(path: Path) -> Path:
    """Write the tiny pipeline to `path` (created if needed) as safetensors with `save_pretrained`; returns `path`."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    build_tiny_pipeline().save_pretrained(path, safe_serialization=True)
    return path


def parameter_count(pipe: StableDiffusionPipeline) -> int:
    """Parameters of every torch module in the pipeline."""
    return sum(p.numel() for m in pipe.components.values() if isinstance(m, torch.nn.Module) for p in m.parameters())
