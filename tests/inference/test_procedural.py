"""The procedural reference runner: determinism, mesh validity, progress, and refine colouring."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image
from scipy.spatial import cKDTree

from inference.runners.base import RunnerArtifacts
from inference.runners.procedural import ProceduralRunner


def preview(out: Path, prompt: str = "a wooden chair", seed: int = 1, **extra) -> RunnerArtifacts:
    return ProceduralRunner().run(
        {}, {"mode": "preview", "prompt": prompt, "seed": seed, **extra}, out, lambda _f: None
    )


def refine(out: Path, preview_mesh: Path, texture_prompt: str | None, seed: int = 1, **inputs) -> RunnerArtifacts:
    params = {"mode": "refine", "seed": seed, "texture_prompt": texture_prompt}
    return ProceduralRunner().run({"preview_mesh": preview_mesh, **inputs}, params, out, lambda _f: None)


def rgb(path: Path) -> np.ndarray:
    return np.asarray(trimesh.load(path, process=False).visual.vertex_colors)[:, :3].astype(float)


@pytest.fixture(scope="module")
def chair(tmp_path_factory: pytest.TempPathFactory) -> RunnerArtifacts:
    return preview(tmp_path_factory.mktemp("chair"))


def test_preview_is_deterministic(chair: RunnerArtifacts, tmp_path: Path) -> None:
    again = preview(tmp_path, "A  wooden chair!", 1)  # case and punctuation do not matter
    assert again.mesh.read_bytes() == chair.mesh.read_bytes()
    assert again.metadata == chair.metadata


@pytest.mark.parametrize(("prompt", "seed"), [("a wooden chair", 2), ("a robot", 1)])
def test_other_prompt_or_seed_gives_another_mesh(
    chair: RunnerArtifacts, tmp_path: Path, prompt: str, seed: int
) -> None:
    other = trimesh.load(preview(tmp_path, prompt, seed).mesh, process=False)
    base = trimesh.load(chair.mesh, process=False)
    assert other.vertices.shape != base.vertices.shape or not np.allclose(other.vertices, base.vertices)


@pytest.mark.parametrize(
    ("prompt", "family"),
    [
        ("a wooden chair", "chair"),
        ("a red sports car", "car"),
        ("an old oak tree", "tree"),
        ("a knight's sword", "sword"),
        ("a coffee mug", "cup"),
        ("a cute cat", "creature"),
        ("qwzx vorpal thing", None),
    ],
)
def test_preview_mesh_is_watertight_normalised_and_symmetric(tmp_path: Path, prompt: str, family: str | None) -> None:
    art = preview(tmp_path, prompt, 3)
    assert art.mesh == tmp_path / "raw.ply"
    assert art.metadata["procedural"] is True
    if family:
        assert art.metadata["family"] == family
    mesh = trimesh.load(art.mesh)
    assert mesh.is_watertight
    assert mesh.is_winding_consistent
    assert mesh.volume > 0  # outward normals
    assert 20_000 <= len(mesh.faces) <= 60_000
    assert art.metadata["faces"] == len(mesh.faces)
    lo, hi = mesh.bounds
    assert np.max(hi - lo) == pytest.approx(1.0, abs=1e-6)
    assert lo[1] == pytest.approx(0.0, abs=1e-6)
    # Mirror symmetry about x = 0: every vertex has a mirrored twin.
    mirrored = mesh.vertices * [-1.0, 1.0, 1.0]
    assert cKDTree(mesh.vertices).query(mirrored)[0].max() < 1e-5
    # Preview is geometry only: uniform neutral grey.
    colours = np.asarray(mesh.visual.vertex_colors)[:, :3]
    assert np.ptp(colours, axis=0).max() == 0


def test_symmetry_off_breaks_the_mirror(tmp_path: Path) -> None:
    mesh = trimesh.load(preview(tmp_path, "a cute cat", 3, symmetry_mode="off").mesh)
    assert mesh.is_watertight
    mirrored = mesh.vertices * [-1.0, 1.0, 1.0]
    assert cKDTree(mesh.vertices).query(mirrored)[0].max() > 1e-3


def test_preview_is_fast(tmp_path: Path) -> None:
    """A coarse guard against an accidental blow-up (it takes ~0.06 s); speed itself is measured in bench/."""
    start = time.perf_counter()
    preview(tmp_path, "a house", 4)
    assert time.perf_counter() - start < 10.0


@pytest.mark.parametrize("mode", ["preview", "refine"])
def test_progress_is_monotonic_from_0_to_1(chair: RunnerArtifacts, tmp_path: Path, mode: str) -> None:
    seen: list[float] = []
    inputs = {"preview_mesh": chair.mesh} if mode == "refine" else {}
    params = {"mode": mode, "prompt": "a mushroom", "seed": 5, "texture_prompt": "red"}
    ProceduralRunner().run(inputs, params, tmp_path, seen.append)
    assert seen[0] == 0.0
    assert seen[-1] == 1.0
    assert all(b >= a for a, b in zip(seen, seen[1:], strict=False))
    assert all(0.0 <= f <= 1.0 for f in seen)
    assert len(seen) >= 10


def test_step_delay_slows_the_run(tmp_path: Path) -> None:
    start = time.perf_counter()
    ProceduralRunner(step_delay_s=0.02).run(
        {}, {"mode": "preview", "prompt": "a cup", "seed": 1}, tmp_path, lambda _f: None
    )
    assert time.perf_counter() - start >= 10 * 0.02


def test_unknown_mode_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mode"):
        ProceduralRunner().run({}, {"mode": "remesh", "prompt": "x", "seed": 1}, tmp_path, lambda _f: None)


def test_refine_paints_varying_colours_by_texture_prompt(chair: RunnerArtifacts, tmp_path: Path) -> None:
    red = refine(tmp_path / "red", chair.mesh, "glossy red paint")
    blue = refine(tmp_path / "blue", chair.mesh, "deep blue")
    wood = refine(tmp_path / "wood", chair.mesh, "wooden")
    red_rgb, blue_rgb, wood_rgb = rgb(red.mesh), rgb(blue.mesh), rgb(wood.mesh)
    # Geometry is the preview's; only colours are new.
    assert red.metadata["faces"] == chair.metadata["faces"]
    for colours in (red_rgb, blue_rgb, wood_rgb):
        assert colours.std(axis=0).max() > 5  # not a flat colour
    assert red_rgb[:, 0].mean() > 2 * red_rgb[:, 2].mean()
    assert blue_rgb[:, 2].mean() > 2 * blue_rgb[:, 0].mean()
    assert np.abs(red_rgb.mean(axis=0) - wood_rgb.mean(axis=0)).max() > 30
    assert wood.metadata["pattern"] == "wood"


def test_refine_is_deterministic_and_seed_dependent_for_unknown_words(chair: RunnerArtifacts, tmp_path: Path) -> None:
    a = refine(tmp_path / "a", chair.mesh, "mysterious alien skin", seed=3)
    b = refine(tmp_path / "b", chair.mesh, "mysterious alien skin", seed=3)
    c = refine(tmp_path / "c", chair.mesh, "mysterious alien skin", seed=4)
    assert a.mesh.read_bytes() == b.mesh.read_bytes()
    assert not np.array_equal(rgb(a.mesh), rgb(c.mesh))


def test_refine_projects_a_texture_image(chair: RunnerArtifacts, tmp_path: Path) -> None:
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    image[:, :32] = (255, 0, 0)  # left half red
    image[:, 32:] = (0, 0, 255)  # right half blue
    Image.fromarray(image).save(tmp_path / "ref.png")
    art = refine(tmp_path / "img", chair.mesh, "green", texture_image=tmp_path / "ref.png")
    assert art.metadata["texture_source"] == "image"
    mesh = trimesh.load(art.mesh, process=False)
    colours = np.asarray(mesh.visual.vertex_colors)[:, :3].astype(int)
    left, right = mesh.vertices[:, 0] < -0.1, mesh.vertices[:, 0] > 0.1
    assert (colours[left, 0] > colours[left, 2]).all()
    assert (colours[right, 2] > colours[right, 0]).all()
