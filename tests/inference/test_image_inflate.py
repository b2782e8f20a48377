"""The image-to-3d reference runner: u2netp cutout, silhouette inflation, colours, and rejected inputs.

Inputs are drawn here with PIL; outputs are read back with trimesh and checked against the drawn masks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image, ImageDraw
from scipy import ndimage

from inference.bundled_models import u2netp_path
from inference.runners.base import InputRejected, RunnerArtifacts
from inference.runners.cutout import Cutout, foreground, load_rgba
from inference.runners.image_inflate import ImageInflateRunner

SIZE = 512
BACKGROUND = (248, 248, 246)
MUG_RED = (200, 30, 30)


@pytest.fixture(scope="module")
def model() -> Path:
    path = u2netp_path()
    if path is None:
        pytest.fail("u2netp.onnx is not installed: run `make install` (it runs `python -m inference.bundled_models`)")
    return path


def noisy(image: Image.Image, sigma: float = 3.0) -> Image.Image:
    pixels = np.asarray(image, dtype=np.float64)
    pixels = pixels + np.random.default_rng(7).normal(0, sigma, pixels.shape)
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))


def draw_mug(size: int = SIZE) -> tuple[Image.Image, np.ndarray, np.ndarray]:
    """A red mug from the side (rounded body, ring handle) on a lightly noisy white background.

    Returns the picture, the object's mask and the mask of the hole inside the handle.
    """
    s = size / 512
    body = [int(v * s) for v in (130, 150, 320, 400)]
    ring = [int(v * s) for v in (280, 200, 410, 340)]
    hole = [int(v * s) for v in (310, 230, 380, 310)]
    picture = Image.new("RGB", (size, size), BACKGROUND)
    mask = Image.new("L", (size, size), 0)
    for canvas, ink, paper in ((ImageDraw.Draw(picture), MUG_RED, BACKGROUND), (ImageDraw.Draw(mask), 255, 0)):
        canvas.ellipse(ring, fill=ink)
        canvas.ellipse(hole, fill=paper)
        canvas.rounded_rectangle(body, radius=int(30 * s), fill=ink)
    hole_mask = Image.new("L", (size, size), 0)
    ImageDraw.Draw(hole_mask).ellipse(hole, fill=255)
    hole_only = (np.asarray(hole_mask) > 127) & ~(np.asarray(mask) > 127)
    return noisy(picture), np.asarray(mask) > 127, hole_only


def draw_blocks(size: int = SIZE) -> tuple[Image.Image, np.ndarray]:
    """A blue rectangle with a yellow disc on it, on a white background."""
    picture = Image.new("RGB", (size, size), BACKGROUND)
    mask = Image.new("L", (size, size), 0)
    for canvas, ink1, ink2 in (
        (ImageDraw.Draw(picture), (30, 60, 190), (240, 200, 30)),
        (ImageDraw.Draw(mask), 255, 255),
    ):
        canvas.rectangle((120, 170, 330, 420), fill=ink1)
        canvas.ellipse((250, 90, 420, 260), fill=ink2)
    return noisy(picture), np.asarray(mask) > 127


def save(image: Image.Image, path: Path) -> Path:
    image.save(path)
    return path


def run(model: Path | None, image: Path, out: Path, progress=None, **params) -> RunnerArtifacts:
    inputs = {"images": [image]}
    if "texture_image" in params:
        inputs["texture_image"] = params.pop("texture_image")
    return ImageInflateRunner(model).run(inputs, params, out, progress or (lambda _f: None))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def to_pixels(vertices: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mesh (x, y) to picture (column, row), fitting the mesh's x/y bounds to the mask's bounding box."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    col = cols[0] + (vertices[:, 0] - lo[0]) / (hi[0] - lo[0]) * (cols[-1] + 1 - cols[0]) - 0.5
    row = rows[0] + (hi[1] - vertices[:, 1]) / (hi[1] - lo[1]) * (rows[-1] + 1 - rows[0]) - 0.5
    return np.stack([col, row], axis=1)


def front_projection(mesh: trimesh.Trimesh, mask: np.ndarray) -> np.ndarray:
    """Orthographic silhouette of the mesh seen along -z, rasterised at the mask's size."""
    pixels = to_pixels(np.asarray(mesh.vertices), mask)
    canvas = Image.new("L", (mask.shape[1], mask.shape[0]), 0)
    draw = ImageDraw.Draw(canvas)
    for tri in pixels[np.asarray(mesh.faces)]:
        draw.polygon([tuple(p) for p in tri], fill=255)
    return np.asarray(canvas) > 127


def colours(path: Path) -> tuple[trimesh.Trimesh, np.ndarray]:
    mesh = trimesh.load(path, process=False)
    return mesh, np.asarray(mesh.visual.vertex_colors).astype(float)


@pytest.fixture(scope="module")
def mug(model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[RunnerArtifacts, np.ndarray, np.ndarray, list]:
    folder = tmp_path_factory.mktemp("mug")
    picture, mask, hole = draw_mug()
    seen: list[float] = []
    artifacts = run(model, save(picture, folder / "mug.png"), folder / "out", seen.append)
    return artifacts, mask, hole, seen


def test_cutout_mask_matches_drawn_object(model: Path) -> None:
    picture, truth = draw_blocks()
    alpha = Cutout(model).mask(np.asarray(picture))
    assert alpha.shape == truth.shape and alpha.dtype == np.float32
    assert 0.0 <= alpha.min() and alpha.max() <= 1.0
    assert iou(alpha >= 0.5, truth) >= 0.9


def test_mug_is_a_closed_normalised_mesh(mug) -> None:
    artifacts, _mask, _hole, seen = mug
    assert artifacts.mesh.name == "raw.ply"
    mesh = trimesh.load(artifacts.mesh)  # merges vertices: an independent watertightness check
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert mesh.volume > 0
    assert 20_000 <= len(mesh.faces) <= 80_000
    lo, hi = mesh.bounds
    assert np.isclose(np.max(hi - lo), 1.0) and np.isclose(lo[1], 0.0)
    assert np.isclose(lo[0], -hi[0]) and np.isclose(lo[2], -hi[2])
    meta = artifacts.metadata
    assert set(meta["timings_s"]) == {"cutout", "inflate", "colour"}
    assert meta["faces"] == len(mesh.faces)
    assert 0.15 < meta["foreground_fraction"] < 0.3
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen)


def test_mug_outline_and_hole_match_the_picture(mug) -> None:
    artifacts, mask, hole, _seen = mug
    silhouette = front_projection(trimesh.load(artifacts.mesh, process=False), mask)
    assert iou(silhouette, mask) >= 0.9
    # The handle's hole stays open through the whole depth: every triangle is drawn, front or back (checked 2 px in
    # from the hole's edge, as PIL fills polygons edges included).
    assert silhouette[ndimage.binary_erosion(hole, iterations=2)].mean() < 0.02


def test_mug_colours_follow_the_photo_front_and_back(mug) -> None:
    artifacts, _mask, _hole, _seen = mug
    mesh, rgba = colours(artifacts.mesh)
    normals = np.asarray(mesh.vertex_normals)
    front, back = normals[:, 2] > 0.5, normals[:, 2] < -0.5
    assert (rgba[:, 3] == 255).all()
    error = np.abs(rgba[front, :3] - MUG_RED).mean()
    assert error < 12, error
    back_rgb = rgba[back, :3].mean(axis=0)
    assert back_rgb[0] > 120 and back_rgb[0] > back_rgb[1] + 80 and back_rgb[0] > back_rgb[2] + 80, back_rgb


def test_two_colour_picture_keeps_its_colours_in_place(model: Path, tmp_path: Path) -> None:
    picture, mask = draw_blocks()
    artifacts = run(model, save(picture, tmp_path / "blocks.png"), tmp_path / "out")
    mesh, rgba = colours(artifacts.mesh)
    assert iou(front_projection(mesh, mask), mask) >= 0.9
    front = np.asarray(mesh.vertex_normals)[:, 2] > 0.5
    col, row = np.rint(to_pixels(np.asarray(mesh.vertices), mask)[front]).astype(int).T
    expected = np.asarray(picture, dtype=float)[np.clip(row, 0, SIZE - 1), np.clip(col, 0, SIZE - 1)]
    # Vertices on the outline may sample the neighbouring colour; the bulk must match the photo under them.
    errors = np.abs(rgba[front, :3] - expected).mean(axis=1)
    assert np.median(errors) < 10 and errors.mean() < 25, (np.median(errors), errors.mean())


def test_same_input_gives_identical_bytes(model: Path, mug, tmp_path: Path) -> None:
    artifacts, *_ = mug
    picture, _mask, _hole = draw_mug()
    again = run(model, save(picture, tmp_path / "mug.png"), tmp_path / "out")
    assert again.mesh.read_bytes() == artifacts.mesh.read_bytes()


def test_rgba_input_uses_its_own_transparency(tmp_path: Path) -> None:
    # No cutout model at all: the picture's alpha must be enough. RGB under the transparent part is noise.
    rgb = np.random.default_rng(3).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    shape = Image.new("L", (400, 300), 0)
    ImageDraw.Draw(shape).polygon([(60, 260), (200, 30), (340, 260)], fill=255)
    truth = np.asarray(shape) > 127
    rgb[truth] = (40, 160, 60)
    path = save(Image.fromarray(np.dstack([rgb, np.asarray(shape)]), "RGBA"), tmp_path / "cut.png")
    artifacts = run(None, path, tmp_path / "out")
    mesh, rgba = colours(artifacts.mesh)
    assert trimesh.load(artifacts.mesh).is_watertight
    assert iou(front_projection(mesh, truth), truth) >= 0.9
    assert np.abs(rgba[:, :3].mean(axis=0) - (40, 160, 60)).max() < 30


def test_untextured_is_uniform_grey(model: Path, tmp_path: Path) -> None:
    picture, _mask, _hole = draw_mug()
    artifacts = run(model, save(picture, tmp_path / "mug.png"), tmp_path / "out", should_texture=False)
    _mesh, rgba = colours(artifacts.mesh)
    assert (rgba == (180, 180, 180, 255)).all()


def test_texture_prompt_wins_and_paints(model: Path, tmp_path: Path) -> None:
    picture, _mask, _hole = draw_mug()
    blue = save(Image.new("RGB", (64, 64), (20, 40, 220)), tmp_path / "blue.png")
    image = save(picture, tmp_path / "mug.png")
    artifacts = run(model, image, tmp_path / "out", texture_prompt="green", seed=3, texture_image=blue)
    _mesh, rgba = colours(artifacts.mesh)
    r, g, b = rgba[:, :3].mean(axis=0)
    assert g > r + 30 and g > b + 30, (r, g, b)
    assert artifacts.metadata["texture_source"] == "prompt"
    projected = run(model, image, tmp_path / "out2", texture_image=blue)
    _mesh, rgba = colours(projected.mesh)
    r, g, b = rgba[:, :3].mean(axis=0)
    assert b > r + 100 and b > g + 100, (r, g, b)
    assert projected.metadata["texture_source"] == "image"


def test_all_background_is_rejected(model: Path, tmp_path: Path) -> None:
    blank = save(noisy(Image.new("RGB", (SIZE, SIZE), BACKGROUND)), tmp_path / "blank.png")
    with pytest.raises(InputRejected, match="no object found in the image: it looks like all background"):
        run(model, blank, tmp_path / "out")
    transparent = save(Image.new("RGBA", (64, 64), (255, 0, 0, 0)), tmp_path / "clear.png")
    with pytest.raises(InputRejected, match="all background"):
        foreground(load_rgba(transparent), None)


def test_unusable_files_are_rejected(model: Path, tmp_path: Path) -> None:
    tiny = save(Image.new("RGB", (1, 1), (200, 30, 30)), tmp_path / "tiny.png")
    with pytest.raises(InputRejected, match=r"image is 1x1 pixels; it must be at least 32x32"):
        run(model, tiny, tmp_path / "out")
    picture, _mask, _hole = draw_mug()
    whole = save(picture, tmp_path / "mug.png").read_bytes()
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(InputRejected, match="damaged or incomplete"):
        run(model, truncated, tmp_path / "out")
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"%PDF-1.7 this is not a picture at all\n" * 40)
    with pytest.raises(InputRejected, match="not an image") as rejected:
        run(model, junk, tmp_path / "out")
    assert "/" not in str(rejected.value)  # messages carry no paths


def test_large_pictures_are_reduced_while_decoding(tmp_path: Path) -> None:
    from inference.runners.cutout import WORK_LONG_SIDE, load_rgba

    for fmt in ("PNG", "JPEG"):
        path = tmp_path / f"wide.{fmt.lower()}"
        Image.new("RGB", (4000, 1000), (200, 30, 30)).save(path, fmt)
        rgba = load_rgba(path)
        assert max(rgba.shape[:2]) <= WORK_LONG_SIDE and rgba.shape[1] > 3 * rgba.shape[0]


def test_a_vanished_input_is_the_callers_problem_not_a_crash(tmp_path: Path) -> None:
    from inference.runners.cutout import load_rgba

    with pytest.raises(InputRejected, match="no longer available"):
        load_rgba(tmp_path / "gone.png")
