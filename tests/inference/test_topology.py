"""Quad topology (Instant Meshes) and symmetry: quads survive into OBJ/FBX/USDZ, counts hit the target,
mirrored meshes are symmetric and closed."""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import pytest
import trimesh
from pxr import UsdGeom
from scipy.spatial import cKDTree

from inference.pipeline import quads
from inference.pipeline.deliverables import Deliverables, build_deliverables
from inference.pipeline.quads import pair_triangles, quads_to_triangles
from inference.pipeline.symmetry import mirror, positive_half
from tests.inference.test_export_formats import coloured_blob, read_fbx, validate_usdz

POLYGON_FORMATS = ["glb", "obj", "fbx", "usdz"]


def obj_face_sizes(path: Path) -> collections.Counter:
    return collections.Counter(len(line.split()) - 1 for line in path.read_text().splitlines() if line[:2] == "f ")


def usd_face_sizes(path: Path) -> collections.Counter:
    stage = validate_usdz(path)
    mesh = next(UsdGeom.Mesh(p) for p in stage.Traverse() if p.IsA(UsdGeom.Mesh))
    return collections.Counter(mesh.GetFaceVertexCountsAttr().Get())


def quad_share(sizes: collections.Counter) -> float:
    return sizes[4] / sum(sizes.values())


def welded(path: Path) -> trimesh.Trimesh:
    """The GLB's surface with UV-seam twins merged (they split vertices, not the surface)."""
    mesh = trimesh.load(path, force="mesh", process=False)
    mesh = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    mesh.merge_vertices(merge_tex=True, merge_norm=True)
    return mesh


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return coloured_blob(tmp_path_factory.mktemp("topology_raw") / "raw.ply")


@pytest.fixture(scope="module")
def quad_textured(raw: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Deliverables]:
    out = tmp_path_factory.mktemp("quad_textured")
    params = {"mode": "refine", "topology": "quad", "target_polycount": 2000, "enable_pbr": True}
    return out, build_deliverables(raw, {**params, "target_formats": POLYGON_FORMATS}, out)


@pytest.fixture(scope="module")
def quad_symmetric(raw: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Deliverables]:
    out = tmp_path_factory.mktemp("quad_symmetric")
    params = {"mode": "preview", "topology": "quad", "target_polycount": 1500, "symmetry_mode": "on"}
    return out, build_deliverables(raw, {**params, "target_formats": ["glb", "obj"]}, out)


def test_quad_count_and_share_in_every_polygon_format(quad_textured) -> None:
    out, result = quad_textured
    obj = obj_face_sizes(out / "model.obj")
    assert sum(obj.values()) == result.faces
    assert abs(obj[4] - 2000) <= 200  # the polycount counts quads for quad topology
    assert quad_share(obj) >= 0.9  # UV seams cut only a few quads back into triangles
    assert usd_face_sizes(out / "model.usdz") == obj
    fbx = read_fbx(out / "model.fbx")
    assert {int(k): v for k, v in fbx["sizes"].items()} == dict(obj)
    assert fbx["uv"]
    # GLB holds the same surface as triangles: two per quad, one per leftover triangle.
    glb = trimesh.load(out / "model.glb", force="mesh")
    assert len(glb.faces) == 2 * obj[4] + obj[3]


def test_quads_keep_their_uvs(quad_textured) -> None:
    out, _ = quad_textured
    vt, faces = [], []
    for line in (out / "model.obj").read_text().splitlines():
        if line.startswith("vt "):
            vt.append([float(x) for x in line.split()[1:]])
        elif line.startswith("f ") and len(line.split()) == 5:
            faces.append([int(c.split("/")[1]) - 1 for c in line.split()[1:]])
    uv, quads = np.array(vt), np.array(faces)
    assert uv.min() >= 0 and uv.max() <= 1
    # Each quad's UV polygon is a proper quad inside one chart: convex, all four corners turning the same
    # way (xatlas mirrors about half of its charts, so either way; the tangents' w records which).
    corners = uv[quads]
    edges = np.roll(corners, -1, axis=1) - corners
    following = np.roll(edges, -1, axis=1)
    turn = edges[:, :, 0] * following[:, :, 1] - edges[:, :, 1] * following[:, :, 0]
    convex = np.all(turn > 0, axis=1) | np.all(turn < 0, axis=1)
    assert convex.mean() > 0.98


def test_quad_surface_is_closed_and_outward(quad_textured) -> None:
    mesh = welded(quad_textured[0] / "model.glb")
    assert mesh.is_watertight
    assert mesh.volume > 0


def mirror_error(mesh: trimesh.Trimesh) -> float:
    """Largest distance from a mirrored vertex to the nearest vertex, relative to the size."""
    dist, _ = cKDTree(mesh.vertices).query(mesh.vertices * [-1, 1, 1])
    return float(dist.max() / np.ptp(mesh.vertices, axis=0).max())


@pytest.mark.parametrize("topology", ["triangle", "quad"])
def test_symmetry_on_is_mirror_symmetric_and_closed(raw: Path, quad_symmetric, tmp_path: Path, topology: str) -> None:
    if topology == "quad":
        out, result = quad_symmetric
        assert quad_share(obj_face_sizes(out / "model.obj")) >= 0.9
        assert abs(result.faces - 1500) <= 150
    else:
        out = tmp_path
        params = {"mode": "refine", "target_polycount": 3000, "symmetry_mode": "on", "target_formats": ["glb"]}
        result = build_deliverables(raw, params, out)
        assert abs(result.faces - 3000) <= 300
    mesh = welded(out / "model.glb")
    assert mirror_error(mesh) < 1e-5
    assert mesh.is_watertight
    assert mesh.volume > 0


@pytest.mark.parametrize("mode", ["auto", "off"])
def test_symmetry_auto_and_off_leave_the_shape(raw: Path, tmp_path: Path, mode: str) -> None:
    params = {"mode": "preview", "target_polycount": 1000, "symmetry_mode": mode, "target_formats": ["stl"]}
    build_deliverables(raw, params, tmp_path)
    mesh = trimesh.load(tmp_path / "model.stl")
    assert mirror_error(mesh) > 0.05  # the blob is off-centre and lopsided, and stays so


def test_positive_half_and_mirror_close_a_box_cut() -> None:
    box = trimesh.creation.box(extents=[2, 1, 1])
    box.apply_translation([0.3, 0, 0])
    half = positive_half(box.vertices, box.faces)
    assert half is not None
    assert half[0][:, 0].min() == 0
    v, f = mirror(*half)
    mesh = trimesh.Trimesh(v, f, process=False)
    assert mesh.is_watertight
    assert np.isclose(mesh.volume, 2 * 1.3)
    assert positive_half(box.vertices - [5, 0, 0], box.faces) is None  # nothing at x > 0


def test_pair_triangles_round_trip_and_seam_split() -> None:
    vertices = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [2, 0, 0], [2, 1, 0]], dtype=float)
    quads = np.array([[0, 1, 2, 3], [1, 4, 5, 2]])
    tris, owner = quads_to_triangles(vertices, quads)
    assert len(tris) == 4
    counts, flat = pair_triangles(tris, owner)
    assert counts.tolist() == [4, 4]
    assert {frozenset(flat[:4]), frozenset(flat[4:])} == {frozenset(q) for q in quads.tolist()}
    # A UV seam along the second quad's diagonal gives its two triangles different diagonal vertices.
    seamed = tris.copy()
    seamed[3] = np.where(seamed[3] == seamed[2][0], 99, seamed[3])
    counts, flat = pair_triangles(seamed, owner)
    assert counts.tolist() == [4, 3, 3]
    assert len(flat) == 10


def test_quad_topology_needs_remesh(raw: Path, tmp_path: Path) -> None:
    # Without remeshing the cleaned triangles are kept (Meshy applies topology only when remeshing).
    params = {"mode": "preview", "topology": "quad", "should_remesh": False, "target_formats": ["obj"]}
    result = build_deliverables(raw, params, tmp_path)
    assert obj_face_sizes(tmp_path / "model.obj") == {3: result.faces}


@pytest.mark.parametrize("symmetry", ["off", "on"])
def test_large_quad_targets_subdivide_after_unwrapping(
    raw: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, symmetry: str
) -> None:
    # Above DIRECT_QUADS, Instant Meshes runs at a quarter of the target and each face is split afterwards:
    # the result is all quads (seam triangles become 3 quads each), still textured, closed and on target.
    monkeypatch.setattr(quads, "DIRECT_QUADS", 500)
    params = {"mode": "refine", "topology": "quad", "target_polycount": 2000, "symmetry_mode": symmetry}
    result = build_deliverables(raw, {**params, "enable_pbr": True, "target_formats": ["glb", "obj"]}, tmp_path)
    assert "subdivide" in result.timings
    sizes = obj_face_sizes(tmp_path / "model.obj")
    assert sizes == {4: result.faces}
    assert abs(result.faces - 2000) <= 200
    mesh = welded(tmp_path / "model.glb")
    assert mesh.is_watertight
    assert mesh.volume > 0
    if symmetry == "on":
        assert mirror_error(mesh) < 1e-5
    glb = trimesh.load(tmp_path / "model.glb", force="mesh")
    assert glb.visual.uv is not None


def test_symmetry_without_remeshing(raw: Path, tmp_path: Path) -> None:
    # The mirrored mesh no longer matches the raw vertices one to one: colours are looked up, not copied.
    params = {"mode": "refine", "should_remesh": False, "symmetry_mode": "on", "enable_pbr": True}
    result = build_deliverables(raw, {**params, "target_formats": ["glb"]}, tmp_path)
    assert result.texture_files
    mesh = welded(tmp_path / "model.glb")
    assert mirror_error(mesh) < 1e-5
    assert mesh.is_watertight
