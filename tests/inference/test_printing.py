"""3D printing: analyze's numbers on meshes with known defects, repair to a healthy mesh read back from the written
file by trimesh, and the multi-colour 3MF read back by lib3mf (and by a plain zip + XML parse)."""

from __future__ import annotations

import json
import re
import time
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from inference.pipeline import printing
from inference.pipeline.model_input import LoadedModel, load_model
from inference.runners.base import InputRejected

CORE_NS = "{http://schemas.microsoft.com/3dmanufacturing/core/2015/02}"
MATERIALS_NS = "{http://schemas.microsoft.com/3dmanufacturing/material/2015/02}"
STRIPES = [(220, 30, 30), (30, 180, 60), (40, 60, 210)]  # top, middle, bottom of the sphere


def no_progress(_: float) -> None:
    pass


# --------------------------------------------------------------------------------------------- meshes with defects


def cube(lo=(0.0, 0.0, 0.0), hi=(1.0, 1.0, 1.0)) -> tuple[np.ndarray, np.ndarray]:
    box = trimesh.creation.box(bounds=[lo, hi])
    return np.asarray(box.vertices, dtype=np.float64), np.asarray(box.faces, dtype=np.int64)


def joined(*meshes: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    vertices, faces, offset = [], [], 0
    for v, f in meshes:
        vertices.append(v)
        faces.append(f + offset)
        offset += len(v)
    return np.concatenate(vertices), np.concatenate(faces)


def holed_cube():
    v, f = cube()
    return v, f[1:]


def two_cubes_sharing_an_edge():
    # Unit cubes at the origin and at (1, 1, 0): they touch along the z edge through x = y = 1 only.
    return joined(cube(), cube((1, 1, 0), (2, 2, 1)))


def flipped_cube():
    v, f = cube()
    f = f.copy()
    f[3] = f[3, ::-1]
    return v, f


def cube_with_degenerate_face():
    """Still closed: triangle (a, b, c) is split at the midpoint m of edge a-b, and the sliver (a, b, m) closes the
    T-junction, so the only defect is one face of zero area."""
    v, f = cube()
    a, b, c = f[0]
    v = np.concatenate([v, [(v[a] + v[b]) / 2]])
    m = len(v) - 1
    return v, np.concatenate([f[1:], [[a, m, c], [m, b, c], [a, b, m]]])


def seam_split_cube():
    """Every face with its own three vertices, as UV seams leave a textured mesh."""
    v, f = cube()
    corners = v[f].reshape(-1, 3)
    return corners, np.arange(len(corners)).reshape(-1, 3)


def as_model(v: np.ndarray, f: np.ndarray, source_format: str = "glb") -> LoadedModel:
    return LoadedModel(mesh=trimesh.Trimesh(v, f, process=False), source_format=source_format)


def printability(v: np.ndarray, f: np.ndarray, tmp_path: Path) -> dict:
    result = printing.analyze(as_model(v, f), tmp_path, no_progress)
    assert result.model_files == {}
    report = result.extra["printability"]
    assert json.loads(json.dumps(report)) == report  # plain JSON types only
    return report


# --------------------------------------------------------------------------------------------- analyze


def test_closed_cube_is_healthy(tmp_path: Path) -> None:
    report = printability(*cube(), tmp_path)
    assert report["_version"] == 1
    assert report["status"] == "healthy"
    assert (report["issue_count"], report["error_count"], report["warning_count"]) == (0, 0, 0)
    metrics = report["metrics"]
    assert metrics["is_watertight"] is True
    assert metrics["volume"] == pytest.approx(1.0, abs=1e-12)
    assert (metrics["non_manifold_edges"], metrics["degenerate_faces"], metrics["holes"]) == (0, 0, 0)
    assert (metrics["face_count"], metrics["vertex_count"], metrics["shells"]) == (12, 8, 1)
    assert isinstance(report["evaluated_at"], int) and report["evaluated_at"] > 1_700_000_000_000


def test_cube_with_a_missing_face_has_one_hole(tmp_path: Path) -> None:
    report = printability(*holed_cube(), tmp_path)
    metrics = report["metrics"]
    assert report["status"] == "error"
    assert metrics["is_watertight"] is False
    assert metrics["holes"] == 1
    assert metrics["boundary_edges"] == 3
    assert (metrics["non_manifold_edges"], metrics["degenerate_faces"]) == (0, 0)
    assert [i["code"] for i in report["issues"] if i["severity"] == "error"] == ["holes"]


def test_two_cubes_sharing_an_edge_are_non_manifold(tmp_path: Path) -> None:
    report = printability(*two_cubes_sharing_an_edge(), tmp_path)
    metrics = report["metrics"]
    assert report["status"] == "error"
    assert metrics["non_manifold_edges"] == 1
    assert metrics["is_watertight"] is False
    assert (metrics["holes"], metrics["degenerate_faces"]) == (0, 0)
    assert metrics["volume"] == pytest.approx(2.0, abs=1e-12)
    assert metrics["vertex_count"] == 14  # the shared edge's two vertices are merged by position


def test_flipped_face_is_a_winding_warning(tmp_path: Path) -> None:
    report = printability(*flipped_cube(), tmp_path)
    metrics = report["metrics"]
    assert report["status"] == "warning"
    assert [i["code"] for i in report["issues"]] == ["inconsistent_winding"]
    assert metrics["flipped_faces"] == 1 and metrics["winding_consistent"] is False
    assert metrics["is_watertight"] is True
    assert metrics["volume"] == pytest.approx(1.0, abs=1e-12)  # measured once the winding is made consistent


def test_inside_out_cube_is_inverted(tmp_path: Path) -> None:
    v, f = cube()
    report = printability(v, f[:, ::-1], tmp_path)
    assert report["status"] == "error"
    assert [i["code"] for i in report["issues"]] == ["inverted"]
    assert report["metrics"]["volume"] == pytest.approx(-1.0, abs=1e-12)


def test_degenerate_face_is_a_warning(tmp_path: Path) -> None:
    report = printability(*cube_with_degenerate_face(), tmp_path)
    metrics = report["metrics"]
    assert report["status"] == "warning"
    assert [i["code"] for i in report["issues"]] == ["degenerate_faces"]
    assert metrics["degenerate_faces"] == 1
    assert metrics["is_watertight"] is True
    assert (metrics["non_manifold_edges"], metrics["holes"]) == (0, 0)
    # A face on a repeated vertex is degenerate too, and left out of the topology.
    v, f = cube()
    report = printability(v, np.concatenate([f, [[0, 0, 1]]]), tmp_path)
    assert report["status"] == "warning" and report["metrics"]["degenerate_faces"] == 1


def test_seams_do_not_split_the_surface(tmp_path: Path) -> None:
    report = printability(*seam_split_cube(), tmp_path)
    assert report["status"] == "healthy"
    assert report["metrics"]["vertex_count"] == 8


def test_cavity_is_not_inverted_and_separate_parts_warn(tmp_path: Path) -> None:
    outer, inner = cube(), cube((0.25,) * 3, (0.75,) * 3)
    hollow = joined(outer, (inner[0], inner[1][:, ::-1]))
    report = printability(*hollow, tmp_path)
    assert report["status"] == "healthy"
    assert report["metrics"]["cavities"] == 1
    assert report["metrics"]["volume"] == pytest.approx(0.875)
    report = printability(*joined(cube(), cube((3, 0, 0), (4, 1, 1))), tmp_path)
    assert report["status"] == "warning"
    assert [i["code"] for i in report["issues"]] == ["multiple_shells"]


# --------------------------------------------------------------------------------------------- repair


DEFECTS = {
    "holed": holed_cube,
    "shared_edge": two_cubes_sharing_an_edge,
    "flipped": flipped_cube,
    "degenerate": cube_with_degenerate_face,
    "inverted": lambda: (cube()[0], cube()[1][:, ::-1]),
    "duplicated": lambda: (cube()[0], np.concatenate([cube()[1], cube()[1][:3]])),
}


def read_back(out_dir: Path, files: dict[str, str]) -> trimesh.Trimesh:
    """The written model as an independent reader sees it (trimesh's loader, vertices merged by position)."""
    key = next(k for k in ("glb", "obj", "stl") if k in files)
    mesh = trimesh.load(out_dir / files[key], force="mesh")
    mesh.merge_vertices(merge_tex=True, merge_norm=True)
    return mesh


@pytest.mark.parametrize("fmt", ["glb", "obj", "stl"])
@pytest.mark.parametrize("defect", sorted(DEFECTS))
def test_repair_gives_a_healthy_file(defect: str, fmt: str, tmp_path: Path) -> None:
    v, f = DEFECTS[defect]()
    result = printing.repair(as_model(v, f, fmt), tmp_path, no_progress)
    expected = {
        "glb": {"glb": "model.glb"},
        "obj": {"obj": "model.obj", "mtl": "model.mtl"},
        "stl": {"stl": "model.stl"},
    }
    assert result.model_files == expected[fmt]
    assert result.texture_files == []
    assert result.thumbnail == "preview.png" and (tmp_path / "preview.png").is_file()
    assert result.extra["printability"]["status"] == "healthy"
    assert json.loads(json.dumps(result.extra)) == result.extra

    mesh = read_back(tmp_path, result.model_files)
    assert mesh.is_watertight and mesh.is_winding_consistent and mesh.is_volume
    assert mesh.volume > 0
    again = printing.analyze(LoadedModel(mesh=mesh, source_format=fmt), tmp_path, no_progress)
    assert again.extra["printability"]["status"] == "healthy", again.extra["printability"]["issues"]
    if defect == "shared_edge":
        # One part: the cubes are fused by a small joint along the shared edge, not left touching.
        assert mesh.body_count == 1
        assert mesh.volume == pytest.approx(2.0, rel=1e-3)
    elif defect in ("flipped", "inverted", "duplicated", "degenerate", "holed"):
        assert mesh.volume == pytest.approx(1.0, abs=1e-5)


def test_repair_of_fbx_and_textured_input_writes_an_untextured_glb(tmp_path: Path) -> None:
    model = textured_sphere()
    model.source_format = "fbx"
    result = printing.repair(model, tmp_path, no_progress)
    assert result.model_files == {"glb": "model.glb"}
    scene = trimesh.load(tmp_path / "model.glb")
    mesh = scene.to_geometry() if hasattr(scene, "to_geometry") else scene.dump(concatenate=True)
    assert getattr(mesh.visual, "uv", None) is None
    material = getattr(mesh.visual, "material", None)
    assert getattr(material, "baseColorTexture", None) is None


def test_repair_of_a_broken_100k_face_sphere(tmp_path: Path) -> None:
    sphere = trimesh.creation.uv_sphere(count=[164, 164])
    rng = np.random.default_rng(7)
    centres = sphere.triangles_center
    keep = np.ones(len(sphere.faces), dtype=bool)
    for direction in rng.normal(size=(20, 3)):
        direction /= np.linalg.norm(direction)
        keep &= np.linalg.norm(centres - direction, axis=1) > rng.uniform(0.03, 0.1)
    faces = sphere.faces[keep].copy()
    flip = rng.random(len(faces)) < 0.05
    faces[flip] = faces[flip, ::-1]
    faces = np.concatenate([faces, faces[:100]])  # duplicates
    assert len(faces) >= 100_000
    model = as_model(np.asarray(sphere.vertices), faces)
    before = printing.analyze(model, tmp_path, no_progress).extra["printability"]
    assert before["status"] == "error" and before["metrics"]["holes"] >= 15
    assert before["metrics"]["flipped_faces"] > 4000

    start = time.perf_counter()
    result = printing.repair(model, tmp_path, no_progress)
    elapsed = time.perf_counter() - start
    print(f"repair of {len(faces)} faces: {elapsed:.2f} s")
    assert elapsed < 120, "a blow-up guard only: the speed is measured in bench/"
    mesh = read_back(tmp_path, result.model_files)
    assert mesh.is_volume
    report = printing.analyze(LoadedModel(mesh=mesh, source_format="glb"), tmp_path, no_progress)
    assert report.extra["printability"]["status"] == "healthy"
    assert mesh.volume == pytest.approx(4 / 3 * np.pi, rel=0.01)


# --------------------------------------------------------------------------------------------- multi-colour


def stripe_texture() -> Image.Image:
    image = np.zeros((96, 96, 3), dtype=np.uint8)
    for i, colour in enumerate(STRIPES):
        image[32 * i : 32 * (i + 1)] = colour
    return Image.fromarray(image)


def sphere_uv(vertices: np.ndarray) -> np.ndarray:
    """Equirectangular UVs: v follows latitude, so the texture's rows are horizontal bands on the sphere."""
    u = 0.5 + np.arctan2(vertices[:, 0], vertices[:, 2]) / (2 * np.pi)
    v = 0.5 + np.arcsin(np.clip(vertices[:, 1], -1, 1)) / np.pi
    return np.column_stack([u, v])


def textured_sphere(tmp_path: Path | None = None) -> LoadedModel:
    sphere = trimesh.creation.icosphere(subdivisions=3)
    material = trimesh.visual.material.PBRMaterial(baseColorTexture=stripe_texture())
    sphere.visual = trimesh.visual.TextureVisuals(uv=sphere_uv(sphere.vertices), material=material)
    if tmp_path is None:
        return LoadedModel(mesh=sphere, source_format="glb")
    path = tmp_path / "input.glb"
    sphere.export(path)
    return load_model(path, "glb")


def expected_stripe(y: np.ndarray) -> np.ndarray:
    """Stripe index (0 top .. 2 bottom) at height y on the unit sphere."""
    v = 0.5 + np.arcsin(np.clip(y, -1, 1)) / np.pi
    return np.clip(((1 - v) * 3).astype(int), 0, 2)


def hex_colour(colour: np.ndarray) -> str:
    r, g, b = (int(x) for x in colour)
    return f"#{r:02X}{g:02X}{b:02X}"


def read_3mf_lib3mf(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vertices, triangles, per-triangle sRGB colour) through lib3mf, the 3MF consortium's reader."""
    import lib3mf  # a dev dependency: the independent reader must run, never skip

    wrapper = lib3mf.get_wrapper()
    model = wrapper.CreateModel()
    reader = model.QueryReader("3mf")
    reader.ReadFromFile(str(path))
    warnings = {reader.GetWarning(i)[1] for i in range(reader.GetWarningCount())}
    assert warnings <= {"Invalid Attribute in namespace."}  # the slicers' non-namespaced paint_color
    groups = {}
    iterator = model.GetColorGroups()
    while iterator.MoveNext():
        group = iterator.GetCurrentColorGroup()
        groups[group.GetUniqueResourceID()] = {
            pid: (c.Red, c.Green, c.Blue) for pid, c in ((p, group.GetColor(p)) for p in group.GetAllPropertyIDs())
        }
    objects = model.GetMeshObjects()
    assert objects.MoveNext()
    mesh = objects.GetCurrentMeshObject()
    assert not objects.MoveNext()
    vertices = np.array([list(p.Coordinates) for p in mesh.GetVertices()])
    triangles = np.array([list(t.Indices) for t in mesh.GetTriangleIndices()])
    colours = []
    for prop in mesh.GetAllTriangleProperties():
        assert prop.ResourceID in groups, "every triangle must reference a colour group"
        assert len({prop.PropertyIDs[0], prop.PropertyIDs[1], prop.PropertyIDs[2]}) == 1
        colours.append(groups[prop.ResourceID][prop.PropertyIDs[0]])
    return vertices, triangles, np.array(colours)


def read_3mf_xml(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """The same by hand: colour groups by id, triangles' pid/p1, and their paint codes."""
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        assert {"[Content_Types].xml", "_rels/.rels", "3D/3dmodel.model"} <= names
        rels = zf.read("_rels/.rels").decode()
        assert 'Target="/3D/3dmodel.model"' in rels
        if 'Target="/Metadata/thumbnail.png"' in rels:
            Image.open(zf.open("Metadata/thumbnail.png")).verify()
        root = ET.fromstring(zf.read("3D/3dmodel.model"))
    groups = {}
    for group in root.iter(f"{MATERIALS_NS}colorgroup"):
        colours = [c.get("color") for c in group.findall(f"{MATERIALS_NS}color")]
        groups[group.get("id")] = [tuple(int(h[i : i + 2], 16) for i in (1, 3, 5)) for h in colours]
    mesh = root.find(f"{CORE_NS}resources/{CORE_NS}object/{CORE_NS}mesh")
    vertices = np.array([[float(v.get(k)) for k in "xyz"] for v in mesh.iter(f"{CORE_NS}vertex")])
    triangles, colours, codes = [], [], []
    for t in mesh.iter(f"{CORE_NS}triangle"):
        triangles.append([int(t.get(k)) for k in ("v1", "v2", "v3")])
        colours.append(groups[t.get("pid")][int(t.get("p1"))])
        codes.append(t.get("paint_color"))
        assert t.get("{http://schemas.slic3r.org/3mf/2017/06}mmu_segmentation") == t.get("paint_color")
    return vertices, np.array(triangles), np.array(colours), codes


def assert_stripes(vertices: np.ndarray, triangles: np.ndarray, colours: np.ndarray) -> None:
    """Three colours near the stripes', each triangle coloured like the stripe under its centroid."""
    palette = np.unique(colours, axis=0)
    assert len(palette) == 3
    nearest = np.argmin(np.abs(palette[:, None, :].astype(int) - np.array(STRIPES)[None]).sum(axis=2), axis=1)
    assert sorted(nearest.tolist()) == [0, 1, 2]
    for found, stripe in zip(palette, nearest, strict=True):
        assert np.abs(found.astype(int) - np.array(STRIPES[stripe])).max() <= 6
    # 3MF is Z-up: the model's height (glTF +Y) is the file's z.
    centroid_height = vertices[triangles].mean(axis=1)[:, 2]
    index = {tuple(c): s for c, s in zip(map(tuple, palette), nearest, strict=True)}
    got = np.array([index[tuple(c)] for c in colours])
    agree = np.mean(got == expected_stripe(centroid_height / np.linalg.norm(vertices[triangles].mean(axis=1), axis=1)))
    assert agree > 0.97


@pytest.fixture(scope="module")
def three_regions(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The striped sphere through a GLB file and load_model, coloured with max_colors=3."""
    out = tmp_path_factory.mktemp("multi_color")
    result = printing.multi_color(textured_sphere(out), {"max_colors": 3}, out, no_progress)
    assert result.model_files == {"3mf": "model.3mf"}
    assert result.thumbnail == "preview.png" and (out / "preview.png").is_file()
    hexes = result.extra["colors"]
    assert len(hexes) == 3 and all(re.fullmatch(r"#[0-9A-F]{6}", h) for h in hexes)
    return out / "model.3mf", result.extra


def test_multi_color_three_regions_read_by_lib3mf(three_regions: tuple[Path, dict]) -> None:
    path, extra = three_regions
    vertices, triangles, colours = read_3mf_lib3mf(path)
    assert len(triangles) == extra["face_count"]
    assert_stripes(vertices, triangles, colours)
    assert {hex_colour(c) for c in colours} == set(extra["colors"])
    # Refinement adds no T-junction: the coloured surface is still closed.
    assert trimesh.Trimesh(vertices, triangles).is_watertight


def test_multi_color_three_regions_read_by_xml(three_regions: tuple[Path, dict]) -> None:
    path, extra = three_regions
    vertices, triangles, colours, codes = read_3mf_xml(path)
    assert len(triangles) == extra["face_count"]
    assert_stripes(vertices, triangles, colours)
    assert {hex_colour(c) for c in colours} == set(extra["colors"])
    assert trimesh.Trimesh(vertices, triangles).is_watertight
    # Palette colour k is the slicers' filament k + 1, in the colour groups' order.
    filament = {h: i + 1 for i, h in enumerate(extra["colors"])}
    table = {1: "4", 2: "8", 3: "0C"}
    assert codes == [table[filament[hex_colour(c)]] for c in colours]


def test_multi_color_limits_and_depth(tmp_path: Path) -> None:
    model = textured_sphere()
    one = printing.multi_color(model, {"max_colors": 1}, tmp_path, no_progress)
    assert len(one.extra["colors"]) == 1
    _, _, colours, _ = read_3mf_xml(tmp_path / "model.3mf")
    assert len(np.unique(colours, axis=0)) == 1
    # More colours allowed than the texture has: still the three, no invented blends.
    four = printing.multi_color(model, {}, tmp_path, no_progress)
    assert len(four.extra["colors"]) == 3
    coarse = printing.multi_color(model, {"max_colors": 3, "max_depth": 3}, tmp_path, no_progress)
    fine = printing.multi_color(model, {"max_colors": 3, "max_depth": 6}, tmp_path, no_progress)
    assert len(model.mesh.faces) < coarse.extra["face_count"] < fine.extra["face_count"] <= printing.MAX_3MF_FACES
    again = printing.multi_color(model, {"max_colors": 3, "max_depth": 6}, tmp_path, no_progress)
    assert again.extra == fine.extra  # deterministic


def test_multi_color_from_vertex_colours(tmp_path: Path) -> None:
    sphere = trimesh.creation.icosphere(subdivisions=3)
    stripe = expected_stripe(sphere.vertices[:, 1])
    sphere.visual = trimesh.visual.ColorVisuals(sphere, vertex_colors=np.array(STRIPES, dtype=np.uint8)[stripe])
    result = printing.multi_color(
        LoadedModel(mesh=sphere, source_format="glb"), {"max_colors": 3}, tmp_path, no_progress
    )
    assert len(result.extra["colors"]) == 3
    _, _, colours, _ = read_3mf_xml(tmp_path / "model.3mf")
    assert len(np.unique(colours, axis=0)) == 3


def test_multi_color_rejects_untextured_models_and_bad_params(tmp_path: Path) -> None:
    with pytest.raises(InputRejected, match="needs a textured model"):
        printing.multi_color(as_model(*cube()), {}, tmp_path, no_progress)
    model = textured_sphere()
    for params in ({"max_colors": 0}, {"max_colors": 17}, {"max_depth": 2}, {"max_depth": 7}, {"max_colors": "4"}):
        with pytest.raises(InputRejected):
            printing.multi_color(model, params, tmp_path, no_progress)


def test_repair_refuses_a_model_without_volume(tmp_path: Path) -> None:
    with pytest.raises(InputRejected, match="encloses no volume"):
        printing.repair(as_model(np.eye(3), np.array([[0, 1, 2]])), tmp_path, no_progress)


def test_paint_codes_follow_the_triangle_selector_encoding() -> None:
    codes = [printing._paint_code(n) for n in range(17)]
    assert codes[:5] == ["", "4", "8", "0C", "1C"]
    assert codes[16] == "DC"
