"""Diffusion image runner: text-to-image and image-to-image from one local Stable Diffusion checkpoint.

The weights are a local diffusers directory in the Stable Diffusion layout (`model_index.json`, `unet/`, `vae/`,
`text_encoder/`, `tokenizer/`, `scheduler/`); nothing is fetched at run time (`local_files_only=True`). The
text-to-image pipeline is loaded lazily on the first `run()` or by `load()` and kept resident; the image-to-image
pipeline is built from the same components (`AutoPipelineForImage2Image.from_pipe`), so the weights are loaded
once and shared. `unload()` releases both, so a worker's model cache can evict them. The safety checker is never
loaded.

Parameters (`params`): `prompt` (required), `seed` (default 0), `aspect_ratio` (`1:1` by default; for
image-to-image without one, the listed ratio closest to the init image), `generate_multi_view` (three images,
front/right/back, same seed), `pose_mode` (`a-pose` / `t-pose`), `remove_background` (RGBA PNGs cut out with
`inference.runners.cutout` when the runner has a `cutout_model`), `strength` (image-to-image, default 0.75) and
`mode` (`image-to-image` selects image-to-image; anything else is text-to-image). Image-to-image reads
`inputs["images"]`: the first path is the init image, centre-cropped to the output aspect ratio and resized.

Output: `out_dir/image_0.png`, `image_1.png`, ... Progress comes from `callback_on_step_end`, spread over all the
images of the call.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import AutoPipelineForImage2Image, AutoPipelineForText2Image, DiffusionPipeline
from PIL import Image, ImageOps, UnidentifiedImageError

from inference.runners.base import ASPECT_RATIOS, InputRejected, ProgressCallback, RunnerArtifacts
from inference.runners.torch_weights import ModelLoadError, default_device, release_memory, weight_bytes

logger = logging.getLogger(__name__)

__all__ = ["ASPECT_RATIOS", "DiffusionImageRunner", "ModelLoadError", "available", "image_size"]

# Share of the progress bar for each phase: loading (when lazy), denoising every image, then saving.
LOADED_AT = 0.05
DENOISED_AT = 0.95
DEFAULT_ASPECT_RATIO = "1:1"
MULTI_VIEW_SUFFIXES = (", front view", ", right side view", ", back view")
POSE_SUFFIXES = {"a-pose": ", standing in an A-pose", "t-pose": ", standing in a T-pose"}
DEFAULT_STRENGTH = 0.75
# Working memory of one generation on top of the weights at 512x512 (UNet activations with classifier-free
# guidance, VAE decode); scaled with the pixel count of the runner's base size.
WORKSPACE_BYTES_AT_512 = 2 * 2**30


def available(model_dir: Path) -> bool:
    """Whether `model_dir` looks like a diffusers pipeline directory (its `model_index.json` is there)."""
    return (Path(model_dir) / "model_index.json").is_file()


def image_size(aspect_ratio: str, base_size: int) -> tuple[int, int]:
    """(width, height), multiples of 8, with about `base_size**2` pixels in the given `W:H` ratio."""
    if aspect_ratio not in ASPECT_RATIOS:
        raise ValueError(f"unsupported aspect_ratio {aspect_ratio!r}; expected one of {', '.join(ASPECT_RATIOS)}")
    w, h = ASPECT_RATIOS[aspect_ratio]
    scale = math.sqrt(w / h)
    return _multiple_of_8(base_size * scale), _multiple_of_8(base_size / scale)


def _multiple_of_8(x: float) -> int:
    return max(8, int(round(x / 8)) * 8)


def closest_aspect_ratio(width: int, height: int) -> str:
    """The listed aspect ratio nearest to `width:height` (compared in log space, so 2:1 and 1:2 are symmetric)."""
    target = math.log(width / height)
    return min(ASPECT_RATIOS, key=lambda k: abs(math.log(ASPECT_RATIOS[k][0] / ASPECT_RATIOS[k][1]) - target))


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "on"}
    return bool(value)


class DiffusionImageRunner:
    """Runner protocol implementation for 2D images; see the module docstring.

    `dtype` defaults to float16 on CUDA and float32 elsewhere (CPU kernels lack half-precision coverage).
    `base_size` is the side of a square image; other aspect ratios keep about the same pixel count (512 suits
    Stable Diffusion 1.x, 1024 SDXL). One generation runs at a time (the scheduler holds per-call state).
    """

    name = "diffusion-image"

    def __init__(
        self,
        model_dir: Path,
        *,
        device: str | None = None,
        dtype: torch.dtype | None = None,
        num_inference_steps: int = 30,
        guidance_scale: float = 7.5,
        base_size: int = 512,
        cutout_model: Path | None = None,
    ) -> None:
        self.model_dir = Path(model_dir)
        self.device = device or default_device()
        on_cuda = torch.device(self.device).type == "cuda"
        self.dtype = dtype or (torch.float16 if on_cuda else torch.float32)
        self.num_inference_steps = int(num_inference_steps)
        self.guidance_scale = float(guidance_scale)
        self.base_size = int(base_size)
        self.cutout_model = Path(cutout_model) if cutout_model is not None else None
        self._text2img: DiffusionPipeline | None = None
        self._img2img: DiffusionPipeline | None = None
        self._cutout: Any = None
        self._lock = threading.RLock()

    # -- lifecycle -------------------------------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self._text2img is not None

    @property
    def pipeline(self) -> DiffusionPipeline | None:
        """The resident text-to-image pipeline, or None before `load()` / after `unload()`."""
        return self._text2img

    def load(self) -> DiffusionImageRunner:
        """Load the pipelines onto the device if they are not resident; returns self (handy as a cache loader)."""
        with self._lock:
            if self._text2img is None:
                text2img = self._load_pipeline()
                try:
                    img2img = AutoPipelineForImage2Image.from_pipe(text2img)
                except Exception as exc:  # a pipeline class with no image-to-image counterpart
                    raise ModelLoadError(
                        f"{type(text2img).__name__} in {self.model_dir} has no image-to-image pipeline: {exc}"
                    ) from exc
                img2img.set_progress_bar_config(disable=True)
                self._text2img, self._img2img = text2img, img2img
        return self

    def _load_pipeline(self) -> DiffusionPipeline:
        index_path = self.model_dir / "model_index.json"
        if not index_path.is_file():
            raise ModelLoadError(
                f"no diffusion pipeline in {self.model_dir}: model_index.json is missing "
                "(expected a diffusers directory such as a local copy of a Stable Diffusion checkpoint)"
            )
        try:
            index = json.loads(index_path.read_text())
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"could not read {index_path}: {exc}") from exc
        # Skip the NSFW safety checker (and its CLIP vision model) wherever the pipeline has one.
        extra: dict[str, Any] = (
            {"safety_checker": None, "requires_safety_checker": False} if "safety_checker" in index else {}
        )
        missing = [
            name
            for name, spec in index.items()
            if not name.startswith("_")
            and name not in extra
            and isinstance(spec, list)
            and spec[:1] != [None]
            and not (self.model_dir / name).is_dir()
        ]
        if missing:
            raise ModelLoadError(
                f"incomplete diffusion pipeline in {self.model_dir}: model_index.json lists "
                f"{', '.join(missing)} but there is no such folder"
            )
        started = time.perf_counter()
        try:
            pipe = AutoPipelineForText2Image.from_pretrained(
                self.model_dir, dtype=self.dtype, local_files_only=True, **extra
            )
            pipe = pipe.to(self.device)
        except Exception as exc:  # diffusers raises OSError/ValueError/EnvironmentError variously
            raise ModelLoadError(f"could not load the diffusion pipeline from {self.model_dir}: {exc}") from exc
        pipe.set_progress_bar_config(disable=True)
        logger.info(
            "loaded %s from %s on %s (%s) in %.1f s",
            type(pipe).__name__,
            self.model_dir,
            self.device,
            self.dtype,
            time.perf_counter() - started,
        )
        return pipe

    def unload(self) -> None:
        """Drop the pipelines (and the cutout model) and give their memory back."""
        with self._lock:
            if self._text2img is None and self._cutout is None:
                return
            self._text2img = self._img2img = None
            self._cutout = None
            release_memory(self.device)

    # -- sizing ----------------------------------------------------------------------------------------------

    @property
    def weight_bytes(self) -> int:
        """Bytes of parameters and buffers at the runner's dtype: measured when loaded, else read from the
        safetensors headers on disk."""
        return weight_bytes(self._text2img, self.model_dir, self.dtype)

    @property
    def estimated_vram_gb(self) -> float:
        """Weights plus one generation's working memory, in GiB (what a model cache should budget)."""
        workspace = WORKSPACE_BYTES_AT_512 * (self.base_size / 512) ** 2
        return (self.weight_bytes + workspace) / 2**30

    # -- generation ------------------------------------------------------------------------------------------

    def run(
        self,
        inputs: Mapping[str, Any],
        params: Mapping[str, Any],
        out_dir: Path,
        progress: ProgressCallback,
    ) -> RunnerArtifacts:
        # Everything about the request is checked before the weights are touched.
        prompt = str(params.get("prompt") or "").strip()
        if not prompt:
            raise ValueError("diffusion-image needs params['prompt']")
        seed = int(params.get("seed") or 0)
        image_to_image = params.get("mode") == "image-to-image"
        pose_mode = str(params.get("pose_mode") or "").strip().lower()
        if pose_mode and pose_mode not in POSE_SUFFIXES:
            raise ValueError(f"unsupported pose_mode {pose_mode!r}; expected one of {', '.join(POSE_SUFFIXES)}")
        init_image = None
        strength = DEFAULT_STRENGTH
        aspect_ratio = params.get("aspect_ratio")
        if image_to_image:
            init_image = _open_init_image(inputs.get("images") or ())
            strength = float(params.get("strength") if params.get("strength") is not None else DEFAULT_STRENGTH)
            if not 0.0 < strength <= 1.0:
                raise ValueError(f"strength must be in (0, 1], not {strength}")
            if not aspect_ratio:
                aspect_ratio = closest_aspect_ratio(*init_image.size)
        width, height = image_size(str(aspect_ratio or DEFAULT_ASPECT_RATIO), self.base_size)
        if init_image is not None:
            init_image = ImageOps.fit(init_image, (width, height), Image.Resampling.LANCZOS)
        prompt += POSE_SUFFIXES.get(pose_mode, "")
        multi_view = _as_bool(params.get("generate_multi_view"))
        prompts = [prompt + suffix for suffix in MULTI_VIEW_SUFFIXES] if multi_view else [prompt]
        cut_out = _as_bool(params.get("remove_background"))
        if cut_out and self.cutout_model is None:
            logger.warning("remove_background requested but this runner has no cutout model; keeping backgrounds")
            cut_out = False

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        progress(0.0)
        with self._lock:
            self.load()
            pipe = self._img2img if image_to_image else self._text2img
            assert pipe is not None  # load() succeeded, and unload() needs the lock we hold
            progress(LOADED_AT)
            started = time.perf_counter()
            images = []
            for index, view_prompt in enumerate(prompts):

                def on_step(p: Any, step: int, _t: Any, kwargs: dict[str, Any], index: int = index) -> dict[str, Any]:
                    done = (index + min((step + 1) / max(p.num_timesteps, 1), 1.0)) / len(prompts)
                    progress(LOADED_AT + (DENOISED_AT - LOADED_AT) * done)
                    return kwargs

                call: dict[str, Any] = {
                    "prompt": view_prompt,
                    "guidance_scale": self.guidance_scale,
                    # Seeded on the run's device: a seed reproduces on the same device and dtype.
                    "generator": torch.Generator(device=self.device).manual_seed(seed),
                    "callback_on_step_end": on_step,
                }
                if image_to_image:
                    # img2img denoises int(steps * strength) steps; keep at least one.
                    call |= {
                        "image": init_image,
                        "strength": strength,
                        "num_inference_steps": max(self.num_inference_steps, math.ceil(1 / strength)),
                    }
                else:
                    call |= {"width": width, "height": height, "num_inference_steps": self.num_inference_steps}
                images.append(pipe(**call).images[0])
            elapsed = time.perf_counter() - started
            cutout = self._cutout_model() if cut_out else None
        paths = []
        for index, image in enumerate(images):
            image = image.convert("RGB")
            if cutout is not None:
                image = _with_alpha(image, cutout.mask(np.asarray(image)))
            path = out_dir / f"image_{index}.png"
            image.save(path, format="PNG")
            paths.append(path)
        progress(1.0)
        return RunnerArtifacts(
            images=tuple(paths),
            metadata={
                "model": self.name,
                "pipeline": type(pipe).__name__,
                "mode": "image-to-image" if image_to_image else "text-to-image",
                "images": len(paths),
                "seed": seed,
                "device": str(self.device),
                "dtype": str(self.dtype).removeprefix("torch."),
                "steps": self.num_inference_steps,
                "guidance_scale": self.guidance_scale,
                "width": width,
                "height": height,
                **({"strength": strength} if image_to_image else {}),
                "background_removed": cutout is not None,
                "seconds": round(elapsed, 3),
            },
        )

    def _cutout_model(self) -> Any:
        """The background cutout model, loaded on first use and kept until `unload()`."""
        if self._cutout is None:
            from inference.runners.cutout import Cutout  # its own weights: only when a cutout is asked for

            self._cutout = Cutout(self.cutout_model)
        return self._cutout


def _open_init_image(paths: Sequence[Any]) -> Image.Image:
    """The first reference image as RGB (EXIF orientation applied, transparency flattened onto white)."""
    if not paths:
        raise ValueError("image-to-image needs inputs['images'] with at least one reference image")
    try:
        with Image.open(Path(paths[0])) as raw:
            image = ImageOps.exif_transpose(raw)
            image.load()
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise InputRejected("the reference image could not be read as an image") from exc
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        flat = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(flat, rgba)
    return image.convert("RGB")


def _with_alpha(image: Image.Image, mask: np.ndarray) -> Image.Image:
    """`image` as RGBA with `mask` (float HxW, 1 = keep) as its alpha channel."""
    alpha = np.round(np.clip(np.asarray(mask, dtype=np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)
    if alpha.shape != (image.height, image.width):
        raise RuntimeError(f"cutout mask is {alpha.shape}, image is {(image.height, image.width)}")
    rgba = image.convert("RGBA")
    rgba.putalpha(Image.fromarray(alpha))
    return rgba
