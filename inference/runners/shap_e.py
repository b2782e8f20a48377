"""Shap-E runner: text-to-3D preview geometry from OpenAI's Shap-E through `diffusers.ShapEPipeline`.

The weights are a local diffusers directory (e.g. `openai/shap-e` downloaded ahead of time); nothing is fetched
at run time (`local_files_only=True`). The pipeline is loaded lazily on the first `run()` or by `load()`, kept
resident, and released by `unload()`, so a worker's model cache can evict it. Preview only: the prior denoises a
latent from the prompt, the renderer decodes it with marching cubes into a vertex-coloured mesh, which is
rotated from Shap-E's z-up to glTF's y-up and written as `raw.ply`.

Progress: diffusers 0.42's `ShapEPipeline.__call__` accepts neither `callback_on_step_end` nor the older
`callback`/`callback_steps`, so a forward hook on the prior counts denoising steps instead: the prior runs once
per scheduler iteration (classifier-free guidance batches both halves into one call), and Heun's scheduler
makes that `2 * num_inference_steps - 1` iterations, read from `scheduler.timesteps` at the first call.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import trimesh
from diffusers import ShapEPipeline

from inference.runners.base import ProgressCallback, RunnerArtifacts
from inference.runners.torch_weights import ModelLoadError, default_device, release_memory, weight_bytes

__all__ = ["ModelLoadError", "ShapERunner"]

logger = logging.getLogger(__name__)

# Share of the progress bar for each phase: loading (when lazy), denoising, then mesh decoding and export.
LOADED_AT = 0.05
DENOISED_AT = 0.85
DECODED_AT = 0.95
# Working memory of the mesh decode on top of the weights: diffusers' marching cubes builds int64 index tensors
# over the whole 128^3 grid (12 edge ids and 15 triangle corners per cell, ~250 MB each) plus the query grid.
DECODE_WORKSPACE_BYTES = int(1.5 * 2**30)


class ShapERunner:
    """Runner protocol implementation for Shap-E preview geometry; see the module docstring.

    `dtype` defaults to float16 on CUDA (halves VRAM, as the Shap-E model card uses) and float32 elsewhere
    (CPU kernels lack half-precision coverage). One generation runs at a time: decoding writes the projected
    latent into the renderer's MLP weights, so the pipeline cannot be shared between concurrent calls.
    """

    name = "shap-e"

    def __init__(
        self,
        model_dir: Path,
        device: str | None = None,
        dtype: torch.dtype | None = None,
        num_inference_steps: int = 64,
        guidance_scale: float = 15.0,
    ) -> None:
        self.model_dir = Path(model_dir)
        self.device = device or default_device()
        on_cuda = torch.device(self.device).type == "cuda"
        self.dtype = dtype or (torch.float16 if on_cuda else torch.float32)
        self.num_inference_steps = int(num_inference_steps)
        self.guidance_scale = float(guidance_scale)
        self._pipe: ShapEPipeline | None = None
        self._lock = threading.RLock()

    # -- lifecycle -------------------------------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self._pipe is not None

    @property
    def pipeline(self) -> ShapEPipeline | None:
        """The resident pipeline, or None before `load()` / after `unload()`."""
        return self._pipe

    def load(self) -> ShapERunner:
        """Load the pipeline onto the device if it is not resident; returns self (handy as a cache loader)."""
        with self._lock:
            if self._pipe is None:
                self._pipe = self._load_pipeline()
        return self

    def _load_pipeline(self) -> ShapEPipeline:
        if not (self.model_dir / "model_index.json").is_file():
            raise ModelLoadError(
                f"no Shap-E pipeline in {self.model_dir}: model_index.json is missing "
                "(expected a diffusers directory such as a local copy of openai/shap-e)"
            )
        started = time.perf_counter()
        try:
            pipe = ShapEPipeline.from_pretrained(self.model_dir, dtype=self.dtype, local_files_only=True)
            pipe = pipe.to(self.device)
        except Exception as exc:  # diffusers raises OSError/ValueError/EnvironmentError variously
            raise ModelLoadError(f"could not load Shap-E from {self.model_dir}: {exc}") from exc
        pipe.set_progress_bar_config(disable=True)
        logger.info(
            "loaded shap-e from %s on %s (%s) in %.1f s",
            self.model_dir,
            self.device,
            self.dtype,
            time.perf_counter() - started,
        )
        return pipe

    def unload(self) -> None:
        """Drop the pipeline and give its memory back (CUDA's caching allocator keeps it otherwise)."""
        with self._lock:
            if self._pipe is None:
                return
            self._pipe = None
            release_memory(self.device)

    # -- sizing ----------------------------------------------------------------------------------------------

    @property
    def weight_bytes(self) -> int:
        """Bytes of parameters and buffers at the runner's dtype: measured when loaded, else read from the
        safetensors headers on disk (float tensors rescaled to `dtype`, integer buffers as stored)."""
        return weight_bytes(self._pipe, self.model_dir, self.dtype)

    @property
    def estimated_vram_gb(self) -> float:
        """Weights plus the mesh decode's working memory, in GiB (what a model cache should budget)."""
        return (self.weight_bytes + DECODE_WORKSPACE_BYTES) / 2**30

    # -- generation ------------------------------------------------------------------------------------------

    def run(
        self,
        inputs: Mapping[str, Any],
        params: Mapping[str, Any],
        out_dir: Path,
        progress: ProgressCallback,
    ) -> RunnerArtifacts:
        mode = params.get("mode", "preview")
        if mode != "preview":
            raise ValueError(f"shap-e only generates preview geometry, not mode {mode!r}")
        prompt = str(params.get("prompt") or "").strip()
        if not prompt:
            raise ValueError("shap-e preview needs params['prompt']")
        seed = int(params.get("seed") or 0)
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        progress(0.0)
        with self._lock:
            self.load()
            pipe = self._pipe
            assert pipe is not None  # load() succeeded, and unload() needs the lock we hold
            progress(LOADED_AT)
            started = time.perf_counter()
            mesh_out = self._generate(pipe, prompt, seed, progress)
            elapsed = time.perf_counter() - started
        progress(DECODED_AT)
        mesh = to_trimesh(mesh_out)
        if len(mesh.faces) == 0:
            raise RuntimeError(f"shap-e produced an empty surface for prompt {prompt!r} (seed {seed})")
        path = out_dir / "raw.ply"
        mesh.export(path, file_type="ply")
        progress(1.0)
        return RunnerArtifacts(
            mesh=path,
            metadata={
                "model": self.name,
                "faces": int(len(mesh.faces)),
                "vertices": int(len(mesh.vertices)),
                "seed": seed,
                "device": str(self.device),
                "dtype": str(self.dtype).removeprefix("torch."),
                "steps": self.num_inference_steps,
                "guidance_scale": self.guidance_scale,
                "generation_s": round(elapsed, 3),
            },
        )

    def _generate(self, pipe: ShapEPipeline, prompt: str, seed: int, progress: ProgressCallback) -> Any:
        calls = 0

        def on_prior_step(_module, _args, _output) -> None:
            nonlocal calls
            calls += 1
            total = max(len(pipe.scheduler.timesteps), 1)
            progress(LOADED_AT + (DENOISED_AT - LOADED_AT) * min(calls / total, 1.0))

        # A CPU generator gives the same starting noise for a seed on every device (diffusers moves it over).
        generator = torch.Generator(device="cpu").manual_seed(seed)
        hook = pipe.prior.register_forward_hook(on_prior_step)
        try:
            result = pipe(
                prompt,
                num_inference_steps=self.num_inference_steps,
                guidance_scale=self.guidance_scale,
                generator=generator,
                output_type="mesh",
            )
        finally:
            hook.remove()
        return result.images[0]


def to_trimesh(mesh_out: Any) -> trimesh.Trimesh:
    """A diffusers `MeshDecoderOutput` as a y-up trimesh with RGBA vertex colours.

    Shap-E is z-up; rotating -90 degrees about x maps (x, y, z) to (x, z, -y), keeping handedness and winding.
    Colour channels are in [0, 1] and scaled to bytes the way diffusers' own `export_to_ply` does.
    """
    verts = mesh_out.verts.detach().float().cpu().numpy()
    faces = mesh_out.faces.detach().cpu().numpy().astype(np.int64)
    verts = np.stack([verts[:, 0], verts[:, 2], -verts[:, 1]], axis=1)
    channels = mesh_out.vertex_channels or {}
    if all(k in channels for k in "RGB"):
        rgb = np.stack([channels[k].detach().float().cpu().numpy() for k in "RGB"], axis=1)
        rgb = np.round(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)
    else:
        rgb = np.full((len(verts), 3), 180, dtype=np.uint8)  # the preview grey of the other runners
    colours = np.hstack([rgb, np.full((len(verts), 1), 255, dtype=np.uint8)])
    return trimesh.Trimesh(verts, faces, vertex_colors=colours, process=False)
