"""ShapERunner through its real load and generation path, on the tiny random Shap-E pipeline (no download).

The tiny pipeline is built once per session into a temporary directory and loaded with `from_pretrained`, as a
real checkpoint would be. Two denoising steps on the CPU keep the module to a few seconds per generation.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # set before huggingface_hub reads it: these tests never use the hub

import shutil  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import trimesh  # noqa: E402
from diffusers.pipelines.shap_e.renderer import MeshDecoder  # noqa: E402

from inference.runners.shap_e import DECODE_WORKSPACE_BYTES, ModelLoadError, ShapERunner  # noqa: E402
from inference.runners.tiny_shap_e import build_tiny_shap_e, marching_cubes_lut, parameter_count  # noqa: E402

PARAMS = {"mode": "preview", "prompt": "a horse", "seed": 0}


class Progress:
    """Records progress fractions; runners may report from any thread."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def __call__(self, fraction: float) -> None:
        self.values.append(fraction)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    started = time.perf_counter()
    path = build_tiny_shap_e(tmp_path_factory.mktemp("tiny-shap-e"))
    print(f"tiny Shap-E built in {time.perf_counter() - started:.2f} s")
    return path


@pytest.fixture(scope="module")
def cpu_runner(tiny_model_dir: Path):
    runner = ShapERunner(tiny_model_dir, device="cpu", num_inference_steps=2)
    yield runner
    runner.unload()


def _mesh_arrays(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mesh = trimesh.load(path, force="mesh", process=False)
    return np.asarray(mesh.vertices), np.asarray(mesh.faces), np.asarray(mesh.visual.vertex_colors)


def test_marching_cubes_lut_gives_a_closed_outward_sphere():
    # The test-only LUT, checked with diffusers' own MeshDecoder on an analytic field (positive inside).
    decoder = MeshDecoder()
    cases, masks = marching_cubes_lut()
    decoder.cases.copy_(cases)
    decoder.masks.copy_(masks)
    axis = torch.linspace(-1, 1, 40)
    x, y, z = torch.meshgrid(axis, axis, axis, indexing="ij")
    field = 0.6 - torch.sqrt(x**2 + y**2 + z**2)

    out = decoder(field, torch.tensor([-1.0, -1.0, -1.0]), torch.tensor([2.0, 2.0, 2.0]))

    mesh = trimesh.Trimesh(out.verts.numpy(), out.faces.numpy(), process=False)
    assert int(masks.sum()) == 820
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert mesh.volume == pytest.approx(4 / 3 * np.pi * 0.6**3, rel=0.03)  # positive: normals point outward


def test_tiny_checkpoint_keeps_the_lut_and_sizes_match(tiny_model_dir: Path, cpu_runner: ShapERunner):
    on_disk = ShapERunner(tiny_model_dir, device="cpu").weight_bytes  # not loaded: read from safetensors headers
    cpu_runner.load()
    pipe = cpu_runner.pipeline
    assert pipe is not None
    # The LUT buffers are persistent, so from_pretrained restores them: the runner needs no test-only fix.
    assert int(pipe.shap_e_renderer.mesh_decoder.masks.sum()) == 820
    assert 128_000 < parameter_count(pipe) < 130_000  # 128,807 built; +3 once VoidNeRFModel.background loads
    # Loaded size adds the non-persistent buffers (position ids, causal mask) that the files do not hold.
    assert cpu_runner.weight_bytes == pytest.approx(on_disk, rel=0.02)
    assert cpu_runner.estimated_vram_gb == pytest.approx((cpu_runner.weight_bytes + DECODE_WORKSPACE_BYTES) / 2**30)
    # Half precision halves the float weights; the int64/bool LUT buffers keep their size.
    half = ShapERunner(tiny_model_dir, device="cpu", dtype=torch.float16)
    assert on_disk / 2 < half.weight_bytes < on_disk


@pytest.fixture(scope="module")
def first_preview(cpu_runner: ShapERunner, tmp_path_factory: pytest.TempPathFactory):
    """One generation shared by the tests below: each costs seconds on the CPU (a 128^3 field and marching cubes)."""
    progress = Progress()
    artifacts = cpu_runner.run({}, PARAMS, tmp_path_factory.mktemp("first"), progress)
    return artifacts, progress.values


def test_preview_writes_a_coloured_mesh_and_reports_progress(first_preview):
    artifacts, values = first_preview

    assert artifacts.mesh.name == "raw.ply" and artifacts.mesh.is_file()
    assert artifacts.texture is None
    verts, faces, colours = _mesh_arrays(artifacts.mesh)
    assert len(faces) > 0 and faces.max() < len(verts)
    assert colours.shape == (len(verts), 4)
    meta = artifacts.metadata
    assert meta["faces"] == len(faces)
    assert (meta["model"], meta["device"], meta["steps"], meta["seed"]) == ("shap-e", "cpu", 2, 0)
    assert values[0] == 0.0 and values[-1] == 1.0
    assert all(a <= b for a, b in zip(values, values[1:], strict=False))
    assert len(values) >= 3 + 2  # Heun: 2 steps are 3 prior calls, plus start/load/decode/end


def test_same_prompt_and_seed_give_the_same_mesh_after_a_reload(cpu_runner: ShapERunner, first_preview, tmp_path: Path):
    first, _ = first_preview
    cpu_runner.unload()
    assert not cpu_runner.loaded

    again = cpu_runner.run({}, PARAMS, tmp_path, Progress())  # lazily loaded again

    for x, y in zip(_mesh_arrays(first.mesh), _mesh_arrays(again.mesh), strict=True):
        np.testing.assert_array_equal(x, y)
    assert first.mesh.read_bytes() == again.mesh.read_bytes()
    assert again.metadata == {**first.metadata, "generation_s": again.metadata["generation_s"]}


def test_missing_or_incomplete_model_dir_is_a_clear_error(tiny_model_dir: Path, tmp_path: Path):
    with pytest.raises(ModelLoadError, match="model_index.json is missing"):
        ShapERunner(tmp_path / "nothing", device="cpu").load()
    no_weights = tmp_path / "no-weights"
    shutil.copytree(tiny_model_dir, no_weights, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    with pytest.raises(ModelLoadError, match="could not load Shap-E from"):
        ShapERunner(no_weights, device="cpu").run({}, PARAMS, tmp_path / "out", Progress())


@pytest.mark.parametrize(
    ("params", "message"),
    [({"mode": "refine", "prompt": "a horse"}, "preview"), ({"mode": "preview", "prompt": "  "}, "prompt")],
)
def test_bad_params_are_rejected_before_loading(tiny_model_dir: Path, tmp_path: Path, params, message):
    runner = ShapERunner(tiny_model_dir, device="cpu")
    with pytest.raises(ValueError, match=message):
        runner.run({}, params, tmp_path, Progress())
    assert not runner.loaded


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_preview_on_cuda(tiny_model_dir: Path, tmp_path: Path):
    runner = ShapERunner(tiny_model_dir, device="cuda", num_inference_steps=2)
    assert runner.dtype == torch.float16
    progress = Progress()
    try:
        first = runner.run({}, PARAMS, tmp_path / "a", progress)
        again = runner.run({}, PARAMS, tmp_path / "b", Progress())
    finally:
        runner.unload()

    _, faces, _ = _mesh_arrays(first.mesh)
    assert len(faces) > 0
    assert first.metadata["device"] == "cuda" and first.metadata["dtype"] == "float16"
    assert progress.values[0] == 0.0 and progress.values[-1] == 1.0
    assert first.mesh.read_bytes() == again.mesh.read_bytes()
