"""Remesh, convert and resize on a caller's model (inference/pipeline/model_ops.py), every output read back with an
independent reader: trimesh (GLB, glTF, OBJ, STL), the GLB's own JSON (materials), ufbx in a fresh interpreter
(FBX), zipfile (USDZ, 3MF)."""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image
from trimesh.visual import TextureVisuals
from trimesh.visual.material import PBRMaterial

from inference.pipeline import export_fbx, model_ops, texture
from inference.pipeline.model_input import LoadedModel, load_model
from inference.runners.base import InputRejected
from tests.inference.test_export_formats import read_fbx

RED, BLUE = (220, 20, 20), (20, 20, 220)
ALL_FORMATS = ["glb", "obj", "fbx", "stl", "usdz", "3mf"]


def two_colour_sphere() -> trimesh.Trimesh:
    """An icosphere (5120 faces) whose planar UVs (u follows x, inside 0.1..0.9 so no lookup wraps) read a texture
    that is red on its left half and blue on its right: red where x < 0, blue where x > 0. Also a metallicRoughness
    map (roughness 0.6, metallic 0) and a flat normal map."""
    sphere = trimesh.creation.icosphere(subdivisions=4)
    v = sphere.vertices
    uv = planar_uv(v)
    base = np.zeros((64, 64, 3), np.uint8)
    base[:, :32], base[:, 32:] = RED, BLUE
    material = PBRMaterial(
        baseColorTexture=Image.fromarray(base),
        metallicRoughnessTexture=Image.new("RGB", (16, 16), (0, 153, 0)),
        normalTexture=Image.new("RGB", (16, 16), (128, 128, 255)),
    )
    return trimesh.Trimesh(v, sphere.faces, visual=TextureVisuals(uv=uv, material=material), process=False)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("model_ops_inputs")
    sphere = two_colour_sphere()
    sphere.export(work / "sphere.glb")
    # OBJ inputs come without their MTL (the loader never opens it): one with UVs only, one also with colours.
    write_obj(work / "uv.obj", sphere, coloured=False)
    write_obj(work / "coloured.obj", sphere, coloured=True)
    ellipsoid = trimesh.creation.icosphere(subdivisions=4)  # 5120 faces
    trimesh.Trimesh(ellipsoid.vertices * [0.5, 1.0, 0.25], ellipsoid.faces).export(work / "ellipsoid.stl")
    return {
        "glb": work / "sphere.glb",
        "obj": work / "uv.obj",
        "coloured_obj": work / "coloured.obj",
        "stl": work / "ellipsoid.stl",
    }


def write_obj(path: Path, mesh: trimesh.Trimesh, coloured: bool) -> None:
    """`v x y z [r g b]`, `vt u v` and `f v/vt ...`: red where x < 0, blue where x > 0 when `coloured`."""
    v = mesh.vertices
    colours = np.where(v[:, :1] < 0, RED, BLUE) / 255.0
    rows = [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in v]
    if coloured:
        rows = [f"{row} {r:.4f} {g:.4f} {b:.4f}" for row, (r, g, b) in zip(rows, colours, strict=True)]
    rows += [f"vt {u:.6f} {t:.6f}" for u, t in mesh.visual.uv]
    rows += ["f " + " ".join(f"{i + 1}/{i + 1}" for i in face) for face in mesh.faces]
    path.write_text("\n".join(rows) + "\n")


def planar_uv(vertices: np.ndarray) -> np.ndarray:
    """The UVs `two_colour_sphere` gives a point of the unit sphere."""
    return np.column_stack([0.1 + 0.8 * (vertices[:, 0] + 1) / 2, 0.1 + 0.8 * (vertices[:, 1] + 1) / 2])


@pytest.fixture(scope="module")
def glb(inputs: dict[str, Path]) -> LoadedModel:
    return load_model(inputs["glb"], "glb")


@pytest.fixture(scope="module")
def remeshed(glb: LoadedModel, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, model_ops.OpResult]:
    out = tmp_path_factory.mktemp("remeshed")
    seen: list[float] = []
    result = model_ops.remesh(glb, {"target_polycount": 2000}, out, seen.append)
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen)
    return out, result


def glb_document(path: Path) -> dict:
    data = path.read_bytes()
    assert data[:4] == b"glTF"
    length = struct.unpack_from("<I", data, 12)[0]
    return json.loads(data[20 : 20 + length])


def face_colours(mesh: trimesh.Trimesh) -> np.ndarray:
    """The base colour texture read (nearest texel) at each face's UV centroid, as trimesh loaded it."""
    material = mesh.visual.material
    image = getattr(material, "baseColorTexture", None) or material.image
    image = np.asarray(image.convert("RGB"))
    uv = mesh.visual.uv[mesh.faces].mean(axis=1)
    h, w = image.shape[:2]
    x = np.clip((uv[:, 0] % 1.0) * w, 0, w - 1).astype(int)
    y = np.clip((1.0 - uv[:, 1] % 1.0) * h, 0, h - 1).astype(int)
    return image[y, x].astype(int)


def assert_sides(mesh: trimesh.Trimesh) -> None:
    """Red on the -x side, blue on the +x side (away from the boundary at x = 0)."""
    colours = face_colours(mesh)
    x = mesh.triangles_center[:, 0]
    left, right = colours[x < -0.2], colours[x > 0.2]
    assert len(left) > 50 and len(right) > 50
    assert np.mean(np.abs(left - RED).max(axis=1) < 40) > 0.98
    assert np.mean(np.abs(right - BLUE).max(axis=1) < 40) > 0.98


def test_remesh_keeps_textures_on_the_right_sides(remeshed: tuple[Path, model_ops.OpResult]) -> None:
    out, result = remeshed
    # Default formats: GLB only (remesh's default differs from the generation endpoints').
    assert result.model_files == {"glb": "model.glb"}
    assert result.thumbnail == "preview.png" and (out / "preview.png").is_file() and result.alpha_thumbnail is None
    assert result.texture_files == [
        {
            "base_color": "texture_0.png",
            "metallic": "texture_0_metallic.png",
            "roughness": "texture_0_roughness.png",
            "normal": "texture_0_normal.png",
        }
    ]
    mesh = trimesh.load(out / "model.glb", force="mesh")
    assert abs(len(mesh.faces) - 2000) <= 200
    assert_sides(mesh)
    material = glb_document(out / "model.glb")["materials"][0]
    assert "baseColorTexture" in material["pbrMetallicRoughness"]
    assert "metallicRoughnessTexture" in material["pbrMetallicRoughness"]
    assert "normalTexture" in material
    # The maps carry the input's values: roughness 0.6, metallic 0, and a flat normal map on a smooth sphere.
    assert abs(np.asarray(Image.open(out / "texture_0_roughness.png")).mean() - 153) < 2
    assert np.asarray(Image.open(out / "texture_0_metallic.png")).max() == 0
    normal = np.asarray(Image.open(out / "texture_0_normal.png"), dtype=np.float64) / 127.5 - 1.0
    assert np.mean(normal[..., 2] > 0.95) > 0.99


def test_remesh_quads_in_obj_and_sizes(glb: LoadedModel, tmp_path: Path) -> None:
    params = {
        "topology": "quad",
        "target_polycount": 800,
        "target_formats": ["obj", "glb"],
        "resize_longest_side": 2.0,
        "alpha_thumbnail": True,
    }
    result = model_ops.remesh(glb, params, tmp_path, lambda _f: None)
    assert result.model_files == {"glb": "model.glb", "obj": "model.obj", "mtl": "model.mtl"}
    assert result.alpha_thumbnail == "preview_alpha.png" and (tmp_path / "preview_alpha.png").is_file()
    sizes = [len(line.split()) - 1 for line in (tmp_path / "model.obj").read_text().splitlines() if line[:2] == "f "]
    assert np.mean(np.array(sizes) == 4) > 0.9
    assert "map_Kd texture_0.png" in (tmp_path / "model.mtl").read_text()
    mesh = trimesh.load(tmp_path / "model.glb", force="mesh")
    lo, hi = mesh.bounds
    assert np.isclose((hi - lo).max(), 2.0, atol=1e-3)
    assert np.isclose(lo[1], 0.0, atol=1e-6)  # origin_at bottom (the default)
    assert np.allclose(((lo + hi) / 2)[[0, 2]], 0.0, atol=1e-3)
    assert_sides(mesh)


def test_remesh_decimation_mode_and_untextured_stl(inputs: dict[str, Path], tmp_path: Path) -> None:
    stl = load_model(inputs["stl"], "stl")
    assert len(stl.mesh.faces) == 5120
    # decimation_mode overrides target_polycount: mode 2 keeps a quarter of the input's faces.
    result = model_ops.remesh(stl, {"decimation_mode": 2, "target_polycount": 30000}, tmp_path, lambda _f: None)
    faces = len(trimesh.load(tmp_path / "model.glb", force="mesh").faces)
    assert abs(faces - 5120 * model_ops.DECIMATION_SHARE[2]) <= 130
    assert result.texture_files == [] and result.model_files == {"glb": "model.glb"}
    material = glb_document(tmp_path / "model.glb")["materials"][0]
    assert "baseColorTexture" not in material["pbrMetallicRoughness"]


def test_remesh_re_bakes_each_side_of_a_thin_part(tmp_path: Path) -> None:
    """A 2 cm slab, red on top and blue underneath: every texel must sample its own side, not the nearer-by-a-hair
    other one."""
    slab = trimesh.creation.box(extents=(1.0, 0.02, 1.0))
    slab = slab.subdivide().subdivide()
    v, f = slab.vertices, slab.faces
    # Split the top and bottom faces into separate vertices so each side can have its own UVs.
    centre_y = v[f].mean(axis=1)[:, 1]
    verts = v[f].reshape(-1, 3)
    top = np.repeat(centre_y >= 0, 3)
    uv = np.where(top[:, None], [0.25, 0.5], [0.75, 0.5]) + 0.0 * verts[:, :2]
    base = np.zeros((8, 8, 3), np.uint8)
    base[:, :4], base[:, 4:] = RED, BLUE
    mesh = trimesh.Trimesh(
        verts,
        np.arange(len(verts)).reshape(-1, 3),
        visual=TextureVisuals(uv=uv, material=PBRMaterial(baseColorTexture=Image.fromarray(base))),
        process=False,
    )
    model = LoadedModel(mesh=mesh, source_format="glb")
    model_ops.remesh(model, {"target_polycount": 3000}, tmp_path, lambda _f: None)
    out = trimesh.load(tmp_path / "model.glb", force="mesh")
    colours = face_colours(out)
    normal_y = out.face_normals[:, 1]
    up, down = colours[normal_y > 0.9], colours[normal_y < -0.9]
    assert np.mean(np.abs(up - RED).max(axis=1) < 40) > 0.97
    assert np.mean(np.abs(down - BLUE).max(axis=1) < 40) > 0.97


def test_convert_writes_every_format_with_the_textures_unchanged(glb: LoadedModel, tmp_path: Path) -> None:
    result = model_ops.convert(glb, {"target_formats": ALL_FORMATS}, tmp_path, lambda _f: None)
    assert result.model_files == {
        "glb": "model.glb",
        "obj": "model.obj",
        "mtl": "model.mtl",
        "fbx": "model.fbx",
        "stl": "model.stl",
        "usdz": "model.usdz",
        "3mf": "model.3mf",
    }
    assert all((tmp_path / name).stat().st_size > 0 for name in result.model_files.values())
    # The texture is the input's, texel for texel, and the geometry and UVs are the input's.
    source = glb.mesh
    assert np.array_equal(
        np.asarray(Image.open(tmp_path / "texture_0.png")), np.asarray(source.visual.material.baseColorTexture)
    )
    out = trimesh.load(tmp_path / "model.glb", force="mesh", process=False)
    assert len(out.faces) == len(source.faces)
    assert np.allclose(out.vertices, source.vertices, atol=1e-6)
    assert np.allclose(out.visual.uv, source.visual.uv, atol=1e-6)
    assert_sides(out)
    assert "normalTexture" in glb_document(tmp_path / "model.glb")["materials"][0]
    assert "map_Kd texture_0.png" in (tmp_path / "model.mtl").read_text()
    obj = trimesh.load(tmp_path / "model.obj", force="mesh", process=False)
    assert len(obj.faces) == len(source.faces)
    assert_sides(obj)
    assert len(trimesh.load(tmp_path / "model.stl", force="mesh").faces) == len(source.faces)
    fbx = read_fbx(tmp_path / "model.fbx")
    assert fbx["faces"] == len(source.faces) and fbx["uv"]
    assert any(prop == "DiffuseColor" and size > 0 for prop, size in fbx["textures"])
    with zipfile.ZipFile(tmp_path / "model.usdz") as usdz:
        assert {"model.usdc", "texture_0.png"} <= set(usdz.namelist())
    with zipfile.ZipFile(tmp_path / "model.3mf") as package:
        assert "3D/3dmodel.model" in package.namelist()


def test_resize_keeps_an_obj_an_obj(inputs: dict[str, Path], tmp_path: Path) -> None:
    obj = load_model(inputs["coloured_obj"], "obj")
    assert obj.has_uv and obj.base_color is None  # colours per vertex; the MTL never comes along
    # Resize keeps the caller's format (the API passes output_format; without it the input's own is used).
    result = model_ops.resize(obj, {"resize_height": 0.5}, tmp_path / "r", lambda _f: None)
    assert result.model_files == {"obj": "model.obj", "mtl": "model.mtl"}
    # Vertex colours survive as a texture baked from them.
    assert result.texture_files == [{"base_color": "texture_0.png"}] and result.thumbnail == "preview.png"
    assert "map_Kd texture_0.png" in (tmp_path / "r" / "model.mtl").read_text()
    mesh = trimesh.load(tmp_path / "r" / "model.obj", force="mesh", process=False)
    lo, hi = mesh.bounds
    assert np.isclose(hi[1] - lo[1], 0.5, atol=1e-5) and np.isclose(lo[1], 0.0, atol=1e-6)
    assert_sides(mesh)
    # From an input task the API asks for GLB; center puts the box's centre at the origin.
    params = {"resize_longest_side": 3.0, "origin_at": "center", "output_format": "glb"}
    result = model_ops.resize(obj, params, tmp_path / "g", lambda _f: None)
    assert result.model_files == {"glb": "model.glb"}
    lo, hi = trimesh.load(tmp_path / "g" / "model.glb", force="mesh").bounds
    assert np.isclose((hi - lo).max(), 3.0, atol=1e-4) and np.allclose((lo + hi) / 2, 0.0, atol=1e-4)


def test_convert_keeps_the_uvs_of_an_untextured_obj(inputs: dict[str, Path], tmp_path: Path) -> None:
    obj = load_model(inputs["obj"], "obj")
    assert obj.has_uv and obj.base_color is None
    result = model_ops.convert(obj, {"target_formats": ["glb", "obj", "fbx"]}, tmp_path, lambda _f: None)
    assert result.texture_files == []
    for name in ("model.glb", "model.obj"):
        mesh = trimesh.load(tmp_path / name, force="mesh", process=False)
        assert len(mesh.faces) == len(obj.mesh.faces)
        assert np.allclose(mesh.visual.uv, planar_uv(mesh.vertices), atol=1e-5)
    assert read_fbx(tmp_path / "model.fbx")["uv"]


def test_resize_stl_and_gltf(inputs: dict[str, Path], glb: LoadedModel, tmp_path: Path) -> None:
    box = load_model(inputs["stl"], "stl")
    result = model_ops.resize(box, {"auto_size": True, "output_format": "stl"}, tmp_path / "s", lambda _f: None)
    assert result.model_files == {"stl": "model.stl"} and result.texture_files == []
    lo, hi = trimesh.load(tmp_path / "s" / "model.stl").bounds
    assert np.isclose((hi - lo).max(), model_ops.AUTO_SIZE_M) and np.isclose(lo[1], 0.0)
    result = model_ops.resize(glb, {"resize_height": 2.0, "output_format": "gltf"}, tmp_path / "t", lambda _f: None)
    assert result.model_files == {"gltf": "model.gltf"}
    mesh = trimesh.load(tmp_path / "t" / "model.gltf", force="mesh")
    assert np.isclose(np.ptp(mesh.vertices[:, 1]), 2.0, atol=1e-5)
    assert_sides(mesh)


def test_vertex_coloured_input_is_baked(tmp_path: Path) -> None:
    sphere = trimesh.creation.icosphere(subdivisions=3)
    colours = np.where(sphere.vertices[:, :1] < 0, [*RED, 255], [*BLUE, 255]).astype(np.uint8)
    trimesh.Trimesh(sphere.vertices, sphere.faces, vertex_colors=colours).export(tmp_path / "vc.glb")
    model = load_model(tmp_path / "vc.glb", "glb")
    result = model_ops.convert(model, {"target_formats": ["glb"]}, tmp_path / "c", lambda _f: None)
    assert result.texture_files == [{"base_color": "texture_0.png"}]
    assert_sides(trimesh.load(tmp_path / "c" / "model.glb", force="mesh"))
    model_ops.remesh(model, {"target_polycount": 400}, tmp_path / "r", lambda _f: None)
    assert_sides(trimesh.load(tmp_path / "r" / "model.glb", force="mesh"))


@pytest.mark.parametrize(
    ("operation", "params", "message"),
    [
        ("resize", {"resize_height": 1.0, "resize_longest_side": 2.0}, "mutually exclusive"),
        ("resize", {"resize_longest_side": 2.0, "auto_size": True}, "mutually exclusive"),
        ("resize", {}, "give one of"),
        ("resize", {"resize_height": -1}, "positive number"),
        ("resize", {"auto_size": True, "origin_at": "top"}, "origin_at"),
        ("resize", {"auto_size": True, "output_format": "blend"}, "cannot be written"),
        ("remesh", {"resize_height": 1.0, "auto_size": True}, "mutually exclusive"),
        ("remesh", {"target_formats": ["glb", "blend"]}, "'blend' is not available"),
        ("remesh", {"target_polycount": 50}, "between 100 and 300000"),
        ("remesh", {"decimation_mode": 5}, "decimation_mode"),
        ("remesh", {"topology": "hex"}, "topology"),
        ("convert", {}, "target_formats is required"),
        ("convert", {"target_formats": ["step"]}, "not available"),
    ],
)
def test_bad_parameters_are_rejected(
    glb: LoadedModel, tmp_path: Path, operation: str, params: dict, message: str
) -> None:
    with pytest.raises(InputRejected, match=message) as rejected:
        getattr(model_ops, operation)(glb, params, tmp_path, lambda _f: None)
    assert isinstance(rejected.value, ValueError) and rejected.value.code == "invalid_input"


def test_a_failed_export_is_format_conversion_failed(
    glb: LoadedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("assimp crashed")

    monkeypatch.setattr(export_fbx, "export_fbx", broken)
    with pytest.raises(InputRejected, match="could not be converted to FBX") as rejected:
        model_ops.convert(glb, {"target_formats": ["glb", "fbx"]}, tmp_path, lambda _f: None)
    assert rejected.value.code == "format_conversion_failed"


def test_closest_point_on_triangles_matches_trimesh() -> None:
    rng = np.random.default_rng(1)
    triangles = rng.normal(size=(2000, 3, 3))
    points = rng.normal(size=(2000, 3)) * 2
    closest, bary = texture.closest_on_triangles(points, triangles[:, 0], triangles[:, 1], triangles[:, 2])
    expected = trimesh.triangles.closest_point(triangles, points)
    assert np.allclose(closest, expected, atol=1e-9)
    assert np.allclose(bary.sum(axis=1), 1.0) and bary.min() >= -1e-12


def test_an_inside_out_source_is_turned_like_the_cleaned_mesh() -> None:
    """Cleaning turns an inside-out closed mesh outward; the source it is baked from must follow, or every texel
    would prefer the faces on the far side of a thin part."""
    sphere = trimesh.creation.icosphere(subdivisions=2)
    maps = texture.SourceMaps(np.zeros((1, 1, 3), np.uint8))
    inside_out = sphere.faces[:, ::-1]
    source = texture.TexturedSource(sphere.vertices, inside_out, np.zeros((len(sphere.vertices), 2)), maps)
    assert source.oriented_like(sphere.vertices, sphere.faces).outward == -1.0
    assert source.oriented_like(sphere.vertices, inside_out) is source


def test_a_model_of_degenerate_faces_is_the_callers_problem(tmp_path: Path) -> None:
    from inference.pipeline.model_input import load_model
    from inference.runners.base import InputRejected

    path = tmp_path / "flat.glb"  # one triangle whose corners are on one line: no area anywhere
    path.write_bytes(trimesh.Trimesh([[0, 0, 0], [1, 0, 0], [2, 0, 0]], [[0, 1, 2]], process=False).export(
        file_type="glb"))  # fmt: skip
    with pytest.raises(InputRejected, match="no surface"):
        model_ops.remesh(load_model(path, "glb"), {"target_polycount": 500}, tmp_path / "out", lambda f: None)


def test_uv_unwrap_reads_the_content_not_the_name(tmp_path: Path) -> None:
    from inference.pipeline import retexture
    from inference.pipeline.model_input import load_model
    from inference.runners.base import InputRejected

    path = tmp_path / "box.obj"
    path.write_text(trimesh.creation.box().export(file_type="obj"))
    with pytest.raises(InputRejected, match="GLB"):
        retexture.uv_unwrap(load_model(path, "obj"), {}, tmp_path / "out", lambda f: None)
