"""The visual-hull (silhouette carving) reference runner for multi-image-to-3d.

A known, asymmetric shape (a rounded box with a short cylinder standing off-centre on it) is rendered
orthographically from the four sides Meshy's order names (front, right, back, left), each side painted its own
colour, into RGBA PNGs whose alpha is the coverage. The runner must rebuild the shape from those pictures:
volume IoU against the truth, colours on the right sides, a watertight outward mesh, rejection of views that
contradict each other, and byte-identical output for the same input. Meshes are read back with trimesh.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from inference.pipeline.raster import rasterize
from inference.runners.base import InputRejected, RunnerArtifacts
from inference.runners.sdf import Box, Composition, Cylinder, polygonise
from inference.runners.visual_hull import VisualHullRunner

# Colour of the faces whose normal is mostly along each axis: +X, -X, +Y, -Y, +Z, -Z.
SIDE_COLOURS = {
    "+x": (40, 180, 60),  # right: green
    "-x": (230, 200, 40),  # left: yellow
    "+y": (240, 240, 240),
    "-y": (90, 90, 90),
    "+z": (220, 40, 40),  # front: red
    "-z": (40, 70, 220),  # back: blue
}
BACKGROUND = (255, 0, 255)  # under alpha 0: must never show up on the mesh
VIEWS = ("front", "right", "back", "left")


def truth_mesh() -> trimesh.Trimesh:
    """Rounded box 0.9 wide (x), 0.5 deep (z), with a cylinder standing at +x, -z on its top."""
    comp = Composition()
    comp.add(Box(c=(0.0, 0.28, 0.0), half=(0.45, 0.28, 0.25), round=0.08))
    comp.add(Cylinder(c=(0.22, 0.76, -0.07), r=0.16, h=0.22, axis=1, round=0.03))
    verts, faces = polygonise(comp, 160, symmetric=False)
    return trimesh.Trimesh(normalise(verts), faces)


def normalise(verts: np.ndarray) -> np.ndarray:
    """Unit longest side, centred on x/z, standing on y = 0 (the runners' convention)."""
    lo, hi = verts.min(axis=0), verts.max(axis=0)
    centre = np.array([(lo[0] + hi[0]) / 2, lo[1], (lo[2] + hi[2]) / 2])
    return (verts - centre) / float(np.max(hi - lo))


def side_colours(mesh: trimesh.Trimesh) -> np.ndarray:
    n = mesh.face_normals
    axis = np.argmax(np.abs(n), axis=1)
    positive = n[np.arange(len(n)), axis] > 0
    keys = np.array([["-x", "+x"], ["-y", "+y"], ["-z", "+z"]])[axis, positive.astype(int)]
    return np.array([SIDE_COLOURS[k] for k in keys], dtype=np.uint8)


def view_axes(index: int) -> tuple[np.ndarray, np.ndarray]:
    """(towards the camera, image right) for front, right, back, left."""
    return [
        (np.array([0, 0, 1.0]), np.array([1.0, 0, 0])),
        (np.array([1.0, 0, 0]), np.array([0, 0, -1.0])),
        (np.array([0, 0, -1.0]), np.array([-1.0, 0, 0])),
        (np.array([-1.0, 0, 0]), np.array([0, 0, 1.0])),
    ][index]


def render_view(mesh: trimesh.Trimesh, index: int, size: int, scale: float, shift: tuple[float, float]) -> np.ndarray:
    """Orthographic RGBA (uint8) of the mesh from one side: alpha is coverage, colours are the side colours.

    `scale` is pixels per unit and `shift` moves the object in the picture, so each view frames it differently.
    """
    ss = 2
    n = size * ss
    towards, right = view_axes(index)
    v = mesh.vertices
    col = n / 2 + (v @ right) * scale * ss + shift[0] * ss
    row = n / 2 - (v[:, 1] - 0.5 * v[:, 1].max()) * scale * ss + shift[1] * ss
    pix = np.stack([col, row], axis=1)
    near = v @ towards + 10.0  # larger is nearer the camera
    face_img, _ = rasterize(pix[mesh.faces], n, n, near[mesh.faces])
    covered = face_img >= 0
    colour = np.zeros((n, n, 3), dtype=np.float64)
    colour[covered] = side_colours(mesh)[face_img[covered]]
    alpha = covered.reshape(size, ss, size, ss).mean(axis=(1, 3))
    summed = colour.reshape(size, ss, size, ss, 3).sum(axis=(1, 3))
    count = covered.reshape(size, ss, size, ss).sum(axis=(1, 3))[..., None]
    rgb = np.where(count > 0, summed / np.maximum(count, 1), BACKGROUND)
    return np.dstack([np.rint(rgb), np.rint(alpha * 255)]).astype(np.uint8)


def write_views(mesh: trimesh.Trimesh, out: Path, count: int = 4, size: int = 384) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(count):
        # Different framing per view: the runner must crop each silhouette and agree on one height.
        rgba = render_view(mesh, k, size, scale=240 + 25 * k, shift=(-20 + 15 * k, 10 - 8 * k))
        path = out / f"{k}_{VIEWS[k]}.png"
        Image.fromarray(rgba, "RGBA").save(path)
        paths.append(path)
    return paths


def run(images: list[Path], out: Path, **params) -> tuple[RunnerArtifacts, list[float]]:
    seen: list[float] = []
    art = VisualHullRunner(None).run({"images": images}, params, out, seen.append)
    return art, seen


def occupancy(mesh: trimesh.Trimesh, points: np.ndarray, pitch: float = 0.01) -> np.ndarray:
    """Which points lie inside the mesh: trimesh's surface voxels at `pitch`, with the interior filled."""
    return mesh.voxelized(pitch).fill().is_filled(points)


def iou(a: trimesh.Trimesh, b: trimesh.Trimesh, cells: int = 40) -> float:
    lo = np.minimum(a.bounds[0], b.bounds[0]) - 0.02
    hi = np.maximum(a.bounds[1], b.bounds[1]) + 0.02
    axes = [np.linspace(lo[i], hi[i], cells) for i in range(3)]
    points = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    in_a, in_b = occupancy(a, points), occupancy(b, points)
    return float((in_a & in_b).sum() / (in_a | in_b).sum())


@pytest.fixture(scope="module")
def truth() -> trimesh.Trimesh:
    return truth_mesh()


@pytest.fixture(scope="module")
def views(truth: trimesh.Trimesh, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_views(truth, tmp_path_factory.mktemp("views"))


@pytest.fixture(scope="module")
def carved(views: list[Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[RunnerArtifacts, list[float]]:
    return run(views, tmp_path_factory.mktemp("carved"))


def load(art: RunnerArtifacts) -> trimesh.Trimesh:
    return trimesh.load(art.mesh, process=False)


def test_volume_iou_against_the_truth(truth: trimesh.Trimesh, carved: tuple[RunnerArtifacts, list[float]]) -> None:
    mesh = load(carved[0])
    score = iou(truth, mesh)
    print(f"visual hull volume IoU vs truth: {score:.3f}")
    assert score >= 0.8
    # Extents (normalised): the box's 0.9 x 0.5 footprint and its height, in the right axes.
    assert np.allclose(mesh.extents, truth.extents, atol=0.03)


def test_mesh_is_watertight_outward_and_normalised(carved: tuple[RunnerArtifacts, list[float]]) -> None:
    art, fractions = carved
    mesh = trimesh.load(art.mesh)
    assert art.mesh.name == "raw.ply"
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert mesh.volume > 0
    lo, hi = mesh.bounds
    assert np.max(hi - lo) == pytest.approx(1.0, abs=1e-6)
    assert lo[1] == pytest.approx(0.0, abs=1e-6)
    assert (lo[0] + hi[0]) / 2 == pytest.approx(0.0, abs=1e-6)
    assert (lo[2] + hi[2]) / 2 == pytest.approx(0.0, abs=1e-6)
    assert art.metadata["faces"] == len(mesh.faces)
    assert art.metadata["views"] == list(VIEWS)
    assert set(art.metadata["timings_s"]) == {"silhouettes", "carve", "polygonise", "colour", "write"}
    assert art.metadata["texture_source"] == "photo"
    assert fractions[0] == 0.0 and fractions[-1] == 1.0
    assert fractions == sorted(fractions)


def test_cylinder_stands_where_the_views_put_it(carved: tuple[RunnerArtifacts, list[float]]) -> None:
    """The cylinder is at +x and -z: a mirrored back/left or swapped right/left view would move or erase it."""
    mesh = load(carved[0])
    top = mesh.vertices[mesh.vertices[:, 1] > 0.8 * mesh.vertices[:, 1].max()]
    assert len(top) > 50
    centre = top.mean(axis=0)
    assert centre[0] > 0.15 and centre[2] < -0.04


def mean_colour_facing(mesh: trimesh.Trimesh, direction: tuple[float, float, float]) -> np.ndarray:
    facing = mesh.vertex_normals @ np.asarray(direction, dtype=float) > 0.9
    assert facing.sum() > 100
    return np.asarray(mesh.visual.vertex_colors)[facing, :3].astype(float).mean(axis=0)


@pytest.mark.parametrize(
    ("direction", "side"), [((1, 0, 0), "+x"), ((-1, 0, 0), "-x"), ((0, 0, 1), "+z"), ((0, 0, -1), "-z")]
)
def test_each_side_takes_the_colour_of_its_own_view(
    carved: tuple[RunnerArtifacts, list[float]], direction: tuple[float, float, float], side: str
) -> None:
    mesh = load(carved[0])
    got = mean_colour_facing(mesh, direction)
    assert np.abs(got - SIDE_COLOURS[side]).max() < 25, (side, got)


def test_no_background_colour_bleeds_onto_the_mesh(carved: tuple[RunnerArtifacts, list[float]]) -> None:
    rgb = np.asarray(load(carved[0]).visual.vertex_colors)[:, :3].astype(int)
    magenta = (rgb[:, 0] > 150) & (rgb[:, 1] < 100) & (rgb[:, 2] > 150)
    assert magenta.mean() < 0.002


def test_same_input_gives_identical_output(views: list[Path], carved, tmp_path: Path) -> None:
    again, _ = run(views, tmp_path)
    assert again.mesh.read_bytes() == carved[0].mesh.read_bytes()


def test_two_views_front_and_right(truth: trimesh.Trimesh, views: list[Path], tmp_path: Path) -> None:
    art, _ = run(views[:2], tmp_path)
    mesh = load(art)
    assert art.metadata["views"] == ["front", "right"]
    assert trimesh.load(art.mesh).is_watertight
    # Two orthogonal silhouettes of this shape already pin it down well.
    assert iou(truth, mesh) >= 0.75
    # The unseen back is painted from the front view, seen through.
    assert np.abs(mean_colour_facing(mesh, (0, 0, -1)) - SIDE_COLOURS["+z"]).max() < 30


def test_without_texture_the_mesh_is_grey(views: list[Path], tmp_path: Path) -> None:
    art, _ = run(views, tmp_path, should_texture=False)
    colours = np.asarray(load(art).visual.vertex_colors)
    assert (colours == (180, 180, 180, 255)).all()


def test_texture_prompt_repaints_but_keeps_the_shading_of_the_photos(views: list[Path], tmp_path: Path) -> None:
    art, _ = run(views, tmp_path, texture_prompt="bright red", seed=3)
    assert art.metadata["texture_source"] == "prompt"
    rgb = np.asarray(load(art).visual.vertex_colors)[:, :3].astype(float)
    assert rgb[:, 0].mean() > rgb[:, 1].mean() + 40


def test_views_that_contradict_each_other_are_rejected(tmp_path: Path) -> None:
    # Top-left and bottom-right blocks: as the back view (not mirrored) it puts the top at +x where the front
    # put it at -x, so nothing survives carving.
    rgba = np.zeros((256, 256, 4), dtype=np.uint8)
    rgba[40:128, 40:128] = (200, 50, 50, 255)
    rgba[128:216, 128:216] = (200, 50, 50, 255)
    right = np.zeros_like(rgba)
    right[40:216, 90:170] = (50, 200, 50, 255)
    paths = []
    for name, picture in (("front", rgba), ("right", right), ("back", rgba)):
        path = tmp_path / f"{name}.png"
        Image.fromarray(picture, "RGBA").save(path)
        paths.append(path)
    with pytest.raises(InputRejected, match="do not show one consistent object"):
        run(paths, tmp_path / "out")


def test_loose_carving_debris_is_dropped(tmp_path: Path) -> None:
    # A small blob floating above the object in both views survives the 2D speck filter (over 1% of the
    # silhouette) but carves into a tiny cube: it is dropped, and the mesh is one piece.
    front = np.zeros((256, 256, 4), dtype=np.uint8)
    front[100:230, 60:196] = (200, 60, 60, 255)
    front[40:56, 180:196] = (200, 60, 60, 255)
    right = np.zeros_like(front)
    right[100:230, 90:166] = (60, 200, 60, 255)
    right[40:56, 150:166] = (60, 200, 60, 255)
    paths = []
    for name, picture in (("front", front), ("right", right)):
        Image.fromarray(picture, "RGBA").save(path := tmp_path / f"{name}.png")
        paths.append(path)
    art, _ = run(paths, tmp_path / "out")
    mesh = trimesh.load(art.mesh)
    assert mesh.is_watertight and mesh.body_count == 1
    # What is left is the block: 136 x 130 x 76 pixels, normalised to a unit longest side.
    assert np.allclose(mesh.extents, np.array([136, 130, 76]) / 136, atol=0.03)


def test_blank_view_is_rejected(views: list[Path], tmp_path: Path) -> None:
    blank = tmp_path / "blank.png"
    Image.fromarray(np.zeros((128, 128, 4), dtype=np.uint8), "RGBA").save(blank)
    with pytest.raises(InputRejected):
        run([views[0], blank], tmp_path / "out")


def test_one_image_goes_to_the_single_image_runner(
    views: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    class FakeInflate:
        def __init__(self, cutout_model: Path | None, step_delay_s: float = 0.0) -> None:
            calls.append(("init", cutout_model))

        def run(self, inputs, params, out_dir, progress):
            calls.append(("run", list(inputs["images"]), params, out_dir))
            return RunnerArtifacts(mesh=Path(out_dir) / "raw.ply", metadata={"fake": True})

    module = types.ModuleType("inference.runners.image_inflate")
    module.ImageInflateRunner = FakeInflate  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "inference.runners.image_inflate", module)
    model = tmp_path / "u2netp.onnx"
    art = VisualHullRunner(model).run({"images": [views[0]]}, {"seed": 2}, tmp_path, lambda _f: None)
    assert art.metadata == {"fake": True}
    assert calls == [("init", model), ("run", [views[0]], {"seed": 2}, tmp_path)]


def test_one_image_real_inflate_runner(views: list[Path], tmp_path: Path) -> None:
    pytest.importorskip("inference.runners.image_inflate")
    art, fractions = run(views[:1], tmp_path)
    mesh = trimesh.load(art.mesh)
    assert mesh.is_watertight and len(mesh.faces) > 100
    assert fractions[-1] == pytest.approx(1.0)


def test_too_many_or_no_images_are_rejected(views: list[Path], tmp_path: Path) -> None:
    with pytest.raises(InputRejected):
        run([], tmp_path)
    with pytest.raises(InputRejected):
        run(views + views[:1], tmp_path)
