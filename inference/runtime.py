"""The worker's runners: which are available here, and the GPU ones kept resident by LRU within a VRAM budget.

A CUDA out-of-memory error inside a runner is retried once after every other idle model is unloaded and torch's
cache emptied; a second one raises `OutOfGpuMemory`, which fails the task with a refund (inference.jobs).
"""

from __future__ import annotations

import json
import logging
import sys
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inference.bundled_models import u2netp_path
from inference.model_cache import ModelCache
from inference.runners.base import ProgressCallback, Runner, RunnerArtifacts
from inference.runners.procedural import ProceduralRunner
from inference.scheduling.oom import is_cuda_oom

log = logging.getLogger(__name__)


class OutOfGpuMemory(RuntimeError):
    """A runner ran out of GPU memory again after idle models were unloaded: the task fails (and is refunded)."""


@dataclass(frozen=True)
class RunnerSpec:
    """How to build one runner, and what it costs to keep resident."""

    name: str
    build: Callable[[], Runner]
    vram_gb: float = 0.0


def shap_e_spec(models_dir: Path, vram_gb: float) -> RunnerSpec | None:
    """Shap-E when its weights are in `<models_dir>/shap-e` (diffusers layout); nothing is downloaded."""
    model_dir = models_dir / "shap-e"
    if not (model_dir / "model_index.json").exists():
        return None
    from inference.runners.shap_e import ShapERunner  # torch + diffusers: only where the weights are

    return RunnerSpec("shap-e", lambda: ShapERunner(model_dir).load(), vram_gb)


def diffusion_image_spec(models_dir: Path, vram_gb: float, cutout_model: Path | None) -> RunnerSpec | None:
    """A diffusers text/image-to-image checkpoint when it is in `<models_dir>/diffusion-image`."""
    model_dir = models_dir / "diffusion-image"
    if not (model_dir / "model_index.json").exists():
        return None
    from inference.runners.diffusion_image import DiffusionImageRunner  # torch + diffusers: only where weights are

    # Optional `meshfoundry.json` beside the weights: {"base_size": 1024, "num_inference_steps": 30,
    # "guidance_scale": 7.5} (SDXL-class checkpoints want base_size 1024; SD 1.5 the default 512).
    options_file = model_dir / "meshfoundry.json"
    known = ("base_size", "num_inference_steps", "guidance_scale")
    options = json.loads(options_file.read_text()) if options_file.exists() else {}
    kwargs = {key: options[key] for key in known if key in options}
    return RunnerSpec(
        "diffusion-image", lambda: DiffusionImageRunner(model_dir, cutout_model=cutout_model, **kwargs).load(), vram_gb
    )


def hy_motion_spec(models_dir: Path, vram_gb: float) -> RunnerSpec | None:
    """HY-Motion 1.0 when its release is in `<models_dir>/hy-motion` (HY-Motion-1.0[-Lite]/ beside Qwen3-8B/ and
    clip-vit-large-patch14/, as Tencent publishes them); nothing is downloaded."""
    model_dir = models_dir / "hy-motion"
    if not model_dir.is_dir():
        return None
    from inference.runners.hy_motion import HYMotionRunner  # torch + transformers: only where the weights are

    return RunnerSpec("hy-motion", lambda: HYMotionRunner(model_dir).load(), vram_gb)


def parts_specs(models_dir: Path, vram_need: Mapping[str, float]) -> list[RunnerSpec]:
    """PartField (segmentation) and HoloPart (part completion) when their weights are in `<models_dir>/partfield`
    (`model/model_objaverse.ckpt`) and `<models_dir>/holopart` (diffusers layout)."""
    specs = []
    if (models_dir / "partfield").is_dir():
        from inference.runners.partfield import PartFieldRunner

        folder = models_dir / "partfield"
        specs.append(RunnerSpec("partfield", lambda: PartFieldRunner(folder).load(), vram_need.get("partfield", 4.0)))
    if (models_dir / "holopart" / "model_index.json").is_file():
        from inference.runners.holopart import HoloPartRunner

        folder_h = models_dir / "holopart"
        specs.append(RunnerSpec("holopart", lambda: HoloPartRunner(folder_h).load(), vram_need.get("holopart", 10.0)))
    return specs


def unirig_spec(models_dir: Path, vram_gb: float) -> RunnerSpec | None:
    """UniRig (an alternative rigger with its own skeleton, not the Mixamo one) when its release is in
    `<models_dir>/unirig` (`skeleton/...`, `skin/...`, as VAST-AI publishes it)."""
    model_dir = models_dir / "unirig"
    if not (model_dir / "skeleton").is_dir():
        return None
    from inference.runners.unirig import UniRigRunner  # torch + transformers: only where the weights are

    return RunnerSpec("unirig", lambda: UniRigRunner(model_dir).load(), vram_gb)


def reference_specs(cutout_model: Path | None, step_delay_s: float, models_dir: Path | None = None) -> list[RunnerSpec]:
    """The CPU reference runners of the image family (imported lazily: each pulls in its own stack)."""

    def image_inflate() -> Runner:
        from inference.runners.image_inflate import ImageInflateRunner

        return ImageInflateRunner(cutout_model, step_delay_s=step_delay_s)

    def visual_hull() -> Runner:
        from inference.runners.visual_hull import VisualHullRunner

        return VisualHullRunner(cutout_model, step_delay_s=step_delay_s)

    def procedural_image() -> Runner:
        from inference.runners.image_reference import ProceduralImageRunner

        return ProceduralImageRunner(step_delay_s=step_delay_s)

    def image_edit() -> Runner:
        from inference.runners.image_reference import ImageEditRunner

        return ImageEditRunner(cutout_model, step_delay_s=step_delay_s)

    def mesh_ops() -> Runner:
        from inference.runners.mesh_ops import MeshOpsRunner

        return MeshOpsRunner()

    def auto_rig() -> Runner:
        from inference.runners.character import AutoRigRunner

        return AutoRigRunner(models_dir)

    def motion_library() -> Runner:
        from inference.runners.character import MotionLibraryRunner

        return MotionLibraryRunner()

    def talking_head() -> Runner:
        from inference.runners.talking_head import TalkingHeadRunner

        return TalkingHeadRunner()

    return [
        RunnerSpec("talking-head", talking_head),
        RunnerSpec("mesh-ops", mesh_ops),
        RunnerSpec("auto-rig", auto_rig),
        RunnerSpec("motion-library", motion_library),
        RunnerSpec("image-inflate", image_inflate),
        RunnerSpec("visual-hull", visual_hull),
        RunnerSpec("procedural-image", procedural_image),
        RunnerSpec("image-edit", image_edit),
    ]


class RunnerSet:
    """Runs any available runner by name; model weights load lazily and stay resident until evicted."""

    def __init__(self, specs: list[RunnerSpec], vram_budget_gb: float) -> None:
        self.specs = {spec.name: spec for spec in specs}
        self.cache = ModelCache(vram_budget_gb)
        self.counters: Counter[str] = Counter()  # oom_retries, oom_failures: published with the worker's state

    def free_memory(self, keep: str | None = None) -> list[str]:
        """After a CUDA out-of-memory error: unload every idle model but `keep`, and hand torch's cached blocks
        back to the driver. Blocking (unloads run here); the names unloaded."""
        gone = [str(m["key"]) for m in self.cache.stats()["models"] if m["key"] != keep and not m["leases"]]
        gone = [name for name in gone if self.cache.evict(name)]
        torch = sys.modules.get("torch")  # only a process that loaded a GPU model has torch imported
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()
        return gone

    @classmethod
    def from_settings(
        cls, *, models_dir: Path, vram_budget_gb: float, procedural_step_delay_s: float, vram_need: Mapping[str, float]
    ) -> RunnerSet:
        specs = [RunnerSpec("procedural", lambda: ProceduralRunner(step_delay_s=procedural_step_delay_s))]
        cutout_model = u2netp_path(models_dir)
        specs += reference_specs(cutout_model, procedural_step_delay_s, models_dir)
        shap_e = shap_e_spec(models_dir, vram_need.get("shap-e", 8.0))
        if shap_e is not None:
            specs.append(shap_e)
        specs += parts_specs(models_dir, vram_need)
        unirig = unirig_spec(models_dir, vram_need.get("unirig", 9.0))
        if unirig is not None:
            specs.append(unirig)
        hy_motion = hy_motion_spec(models_dir, vram_need.get("hy-motion", 26.0))
        if hy_motion is not None:
            specs.append(hy_motion)
        diffusion = diffusion_image_spec(models_dir, vram_need.get("diffusion-image", 6.0), cutout_model)
        if diffusion is not None:
            specs.append(diffusion)
        return cls(specs, vram_budget_gb)

    def __contains__(self, name: object) -> bool:
        return name in self.specs

    def run(
        self, name: str, inputs: Mapping[str, Any], params: Mapping[str, Any], out_dir: Path, progress: ProgressCallback
    ) -> RunnerArtifacts:
        """Blocking: call it from an executor thread."""
        spec = self.specs.get(name)
        if spec is None:
            raise RuntimeError(f"runner {name!r} is not available in this worker")
        reached = [0.0]

        def forward(fraction: float) -> None:  # a retry starts over: the task's progress never goes back
            reached[0] = max(reached[0], fraction)
            progress(reached[0])

        try:
            with self.cache.lease(name, spec.build, spec.vram_gb) as runner:
                return runner.run(inputs, params, out_dir, forward)
        except Exception as exc:
            if not is_cuda_oom(exc):
                raise
            self.counters["oom_retries"] += 1
            log.warning("runner %s ran out of GPU memory; unloaded %s and retrying once", name,
                        self.free_memory(keep=name) or "nothing")  # fmt: skip
        try:
            with self.cache.lease(name, spec.build, spec.vram_gb) as runner:
                return runner.run(inputs, params, out_dir, forward)
        except Exception as exc:
            if not is_cuda_oom(exc):
                raise
            self.counters["oom_failures"] += 1
            self.free_memory()
            raise OutOfGpuMemory(f"runner {name!r} ran out of GPU memory twice") from exc
