"""HoloPart through its real loading and sampling path, on the tiny random diffusers-layout download.

The tiny download (`tiny_holopart`) has the pipeline layout -- `model_index.json`, `vae/`, `transformer/`,
`part_encoder/` (config.json + safetensors), `scheduler/` -- at toy widths; sampling runs 3 rectified-flow steps with
CFG and decodes a 32^3 grid. The shapes are random, so the tests check the contract, not completion quality.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh

from inference.runners.holopart import (
    WEIGHTS_NAME,
    HoloPartRunner,
    ModelLoadError,
    farthest_point_sample,
    load,
    prepare_parts,
)
from inference.runners.tiny_holopart import TINY_TOKENS, build_tiny_holopart


def chair_parts() -> list[tuple[str, trimesh.Trimesh]]:
    return [
        ("seat", trimesh.creation.box((1.0, 0.1, 1.0))),
        ("leg", trimesh.creation.cylinder(0.05, 1.0).apply_translation((0.4, -0.5, 0.4))),
    ]


def runner_for(path: Path, device: str = "cpu") -> HoloPartRunner:
    return HoloPartRunner(path, device=device, steps=3, num_tokens=TINY_TOKENS, octree_depth=5, samples=2048)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_holopart(tmp_path_factory.mktemp("tiny-holopart"))


@pytest.fixture(scope="module")
def cpu_runner(tiny_dir: Path):
    runner = runner_for(tiny_dir)
    yield runner
    runner.unload()


def test_run_writes_one_completed_node_per_part(cpu_runner: HoloPartRunner, tmp_path: Path):
    src = tmp_path / "parts.glb"
    scene = trimesh.Scene()
    for name, mesh in chair_parts():
        scene.add_geometry(mesh, node_name=name, geom_name=name)
    src.write_bytes(scene.export(file_type="glb"))
    seen: list[float] = []
    result = cpu_runner.run({"model": src, "source_format": "glb"}, {"seed": 1}, tmp_path / "out", seen.append)
    assert sorted(result.metadata["parts"]) == ["leg", "seat"] and result.metadata["num_parts"] == 2
    out = trimesh.load(tmp_path / "out" / "completed.glb", force="scene")
    assert sorted(out.graph.nodes_geometry) == ["leg", "seat"]
    assert all(len(g.faces) > 0 for g in out.geometry.values())
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen)


def test_same_seed_same_latents_other_seed_differs(cpu_runner: HoloPartRunner):
    cpu_runner.load()
    model = cpu_runner._model
    assert model is not None
    batch = prepare_parts(chair_parts(), samples=2048, seed=0)
    assert batch.part.shape == (2, 2048, 6) and batch.whole.shape == (2, 2048, 7)
    assert set(batch.whole[0, :, 6].unique().tolist()) == {0.0, 1.0}  # the whole cloud marks part 0's samples
    assert batch.part_local[:, :, :3].abs().amax(dim=(1, 2)).tolist() == pytest.approx([0.665, 0.665], abs=1e-5)

    def latents(seed: int) -> torch.Tensor:
        return model.sample_latents(batch.part[:1], batch.whole[:1], batch.part_local[:1], 3, 3.5, TINY_TOKENS, seed)

    a, b, c = latents(5), latents(5), latents(6)
    assert a.shape == (1, TINY_TOKENS, 8) and torch.isfinite(a).all()
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert (a - c).abs().max() > 1e-3


def test_farthest_point_sampling_spreads_points():
    pts = torch.tensor([[0.0, 0, 0], [0.01, 0, 0], [1, 0, 0], [0, 1, 0], [0.99, 0, 0]])
    assert farthest_point_sample(pts, 3).tolist() == [0, 2, 3]


def _copy(tiny_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(tiny_dir, dst)
    return dst


def test_missing_or_corrupt_download_raises_model_load_error(tiny_dir: Path, tmp_path: Path):
    with pytest.raises(ModelLoadError, match="model_index.json is missing"):
        load(tmp_path / "nothing", "cpu")
    broken = _copy(tiny_dir, tmp_path)
    (broken / "transformer" / WEIGHTS_NAME).unlink()
    with pytest.raises(ModelLoadError, match="transformer/ is incomplete"):
        runner_for(broken).load()
    shutil.copy(tiny_dir / "transformer" / WEIGHTS_NAME, broken / "transformer" / WEIGHTS_NAME)
    weights = broken / "vae" / WEIGHTS_NAME
    weights.write_bytes(weights.read_bytes()[:500])
    with pytest.raises(ModelLoadError, match="unreadable or corrupt"):
        load(broken, "cpu")


def test_weights_that_do_not_match_their_config_are_refused(tiny_dir: Path, tmp_path: Path):
    import json

    broken = _copy(tiny_dir, tmp_path)
    cfg_path = broken / "transformer" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["width"] = 64
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match="do not match transformer/config.json"):
        load(broken, "cpu")
    cfg["width"], cfg["num_layers"] = 32, 5
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match="lack .* tensors"):
        load(broken, "cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_completion_on_cuda_in_float16(tiny_dir: Path):
    runner = runner_for(tiny_dir, "cuda")
    try:
        first = runner.complete(chair_parts(), seed=3)
        again = runner.complete(chair_parts(), seed=3)
        assert next(runner._model.parameters()).dtype == torch.float16  # type: ignore[union-attr]
    finally:
        runner.unload()
    assert [n for n, _ in first] == ["seat", "leg"]
    for (_, m1), (_, m2) in zip(first, again, strict=True):
        assert len(m1.faces) > 0 and np.isfinite(m1.vertices).all()
        np.testing.assert_allclose(m1.bounds, m2.bounds, atol=1e-2)
