"""The worker's runner set: procedural always, Shap-E when its weights are on disk, resident by LRU."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import trimesh  # noqa: E402

from inference.runners.tiny_shap_e import build_tiny_shap_e  # noqa: E402
from inference.runtime import RunnerSet  # noqa: E402


def test_without_weights_only_procedural_is_offered(tmp_path: Path) -> None:
    runners = RunnerSet.from_settings(models_dir=tmp_path, vram_budget_gb=8, procedural_step_delay_s=0, vram_need={})
    assert "procedural" in runners and "shap-e" not in runners
    with pytest.raises(RuntimeError, match="not available"):
        runners.run("shap-e", {}, {"mode": "preview", "prompt": "x", "seed": 1}, tmp_path, lambda f: None)


@pytest.mark.slow
def test_shap_e_from_the_models_dir_runs_and_stays_resident(tmp_path: Path) -> None:
    build_tiny_shap_e(tmp_path / "models" / "shap-e")
    runners = RunnerSet.from_settings(
        models_dir=tmp_path / "models", vram_budget_gb=8, procedural_step_delay_s=0, vram_need={"shap-e": 1.0}
    )
    assert "shap-e" in runners
    params = {"mode": "preview", "prompt": "a horse", "seed": 0}
    for attempt in range(2):
        out = tmp_path / f"out{attempt}"
        out.mkdir()
        artifacts = runners.run("shap-e", {}, params, out, lambda f: None)
        assert len(trimesh.load(artifacts.mesh, force="mesh").faces) > 0
    stats = runners.cache.stats()
    assert stats["loads"] == 1 and stats["hits"] >= 1  # loaded once, reused


def test_reference_runners_are_always_offered(tmp_path: Path) -> None:
    runners = RunnerSet.from_settings(
        models_dir=tmp_path / "models", vram_budget_gb=8, procedural_step_delay_s=0, vram_need={}
    )
    assert {"image-inflate", "visual-hull", "procedural-image", "image-edit"} <= set(runners.specs)
    assert "diffusion-image" not in runners


def test_a_diffusion_checkpoint_in_the_models_dir_serves_text_to_image(tmp_path: Path) -> None:
    import json

    from PIL import Image

    from inference.runners.tiny_diffusion import TINY_BASE_SIZE, build_tiny_diffusion

    model_dir = build_tiny_diffusion(tmp_path / "models" / "diffusion-image")
    (model_dir / "meshfoundry.json").write_text(json.dumps({"base_size": TINY_BASE_SIZE, "num_inference_steps": 2}))
    runners = RunnerSet.from_settings(
        models_dir=tmp_path / "models", vram_budget_gb=8, procedural_step_delay_s=0, vram_need={"diffusion-image": 1}
    )
    assert "diffusion-image" in runners
    params = {"prompt": "a red chair", "seed": 1, "aspect_ratio": "16:9", "mode": "text-to-image"}
    artifacts = runners.run("diffusion-image", {}, params, tmp_path / "out", lambda f: None)
    with Image.open(artifacts.images[0]) as image:
        assert image.width > image.height
    assert "diffusion-image" in runners.cache
