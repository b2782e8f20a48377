"""The deliverables pipeline: polycount, formats, GLB/OBJ/STL validity, textures and thumbnails (FBX, USDZ and
3MF in test_export_formats.py, quads and symmetry in test_topology.py)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image
from scipy.spatial import cKDTree

from inference.pipeline.clean import clean_mesh, load_mesh
from inference.pipeline.deliverables import Deliverables, build_deliverables, requested_formats
from inference.pipeline.raster import rasterize
from inference.pipeline.thumbnail import _sample
from inference.runners.procedural import ProceduralRunner

MODEL_SUFFIXES = {".glb", ".obj", ".mtl", ".stl", ".fbx", ".usdz", ".3mf"}


@pytest.fixture(scope="module")
def raw_preview(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("preview_raw")
    return (
        ProceduralRunner()
        .run({}, {"mode": "preview", "prompt": "a wooden chair", "seed": 1}, out, lambda _f: None)
        .mesh
    )


@pytest.fixture(scope="module")
def preview_out(raw_preview: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Deliverables]:
    out = tmp_path_factory.mktemp("preview_out")
    params = {"mode": "preview", "should_remesh": True, "target_polycount": 30000, "alpha_thumbnail": True}
    return out, build_deliverables(raw_preview, params, out)


@pytest.fixture(scope="module")
def raw_refine(preview_out: tuple[Path, Deliverables], tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Refine starts from the preview's GLB, as in the service.
    out = tmp_path_factory.mktemp("refine_raw")
    params = {"mode": "refine", "seed": 1, "texture_prompt": "red and gold"}
    return ProceduralRunner().run({"preview_mesh": preview_out[0] / "model.glb"}, params, out, lambda _f: None).mesh


@pytest.fixture(scope="module")
def refine_out(raw_refine: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Deliverables]:
    out = tmp_path_factory.mktemp("refine_out")
    params = {"mode": "refine", "target_polycount": 4000, "enable_pbr": True}
    return out, build_deliverables(raw_refine, params, out)


def glb_json_and_bin(path: Path) -> tuple[dict, bytes]:
    data = path.read_bytes()
    assert data[:4] == b"glTF"
    assert struct.unpack("<I", data[4:8])[0] == 2
    json_len = struct.unpack("<I", data[12:16])[0]
    doc = json.loads(data[20 : 20 + json_len])
    bin_start = 20 + json_len
    bin_len = struct.unpack("<I", data[bin_start : bin_start + 4])[0]
    return doc, data[bin_start + 8 : bin_start + 8 + bin_len]


def read_accessor(doc: dict, blob: bytes, index: int) -> np.ndarray:
    acc = doc["accessors"][index]
    view = doc["bufferViews"][acc["bufferView"]]
    assert acc["componentType"] == 5126  # FLOAT
    width = {"VEC2": 2, "VEC3": 3}[acc["type"]]
    start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
    return np.frombuffer(blob, dtype="<f4", count=acc["count"] * width, offset=start).reshape(-1, width)


def model_files_on_disk(out: Path) -> set[str]:
    return {p.name for p in out.iterdir() if p.suffix in MODEL_SUFFIXES}


@pytest.mark.parametrize("target", [5000, 50000])
def test_target_polycount_down_and_up(raw_preview: Path, tmp_path: Path, target: int) -> None:
    raw_faces = len(trimesh.load(raw_preview).faces)
    assert (target < raw_faces) == (target == 5000)  # one decimation, one upsampling
    result = build_deliverables(
        raw_preview, {"mode": "preview", "target_polycount": target, "target_formats": ["glb"]}, tmp_path
    )
    assert abs(result.faces - target) <= 0.1 * target
    glb = trimesh.load(tmp_path / "model.glb", force="mesh")
    assert len(glb.faces) == result.faces


def test_no_remesh_keeps_the_cleaned_face_count(raw_preview: Path, tmp_path: Path) -> None:
    expected = len(clean_mesh(load_mesh(raw_preview)).faces)
    result = build_deliverables(
        raw_preview,
        {"mode": "preview", "should_remesh": False, "target_polycount": 1000, "target_formats": ["stl"]},
        tmp_path,
    )
    assert result.faces == expected
    assert len(trimesh.load(tmp_path / "model.stl").faces) == expected


@pytest.mark.parametrize(
    ("formats", "expected"),
    [
        (None, {"glb", "obj", "mtl", "fbx", "stl", "usdz"}),  # Meshy's default: no 3MF
        (["stl"], {"stl"}),
        (["obj"], {"obj", "mtl"}),
        (["glb", "fbx", "stl"], {"glb", "fbx", "stl"}),
        (["usdz", "3mf"], {"usdz", "3mf"}),
        (["fbx"], {"fbx"}),  # FBX converts an OBJ, which is not left behind unless asked for
        (["step", "blend"], {"glb"}),  # nothing known: GLB anyway
    ],
)
def test_target_formats_are_respected(
    raw_preview: Path, tmp_path: Path, formats: list[str] | None, expected: set[str]
) -> None:
    params = {"mode": "preview", "target_polycount": 2000, "target_formats": formats}
    result = build_deliverables(raw_preview, params, tmp_path)
    assert set(result.model_files) == expected
    assert model_files_on_disk(tmp_path) == set(result.model_files.values())
    for name in result.model_files.values():
        assert (tmp_path / name).stat().st_size > 0


def test_requested_formats_order_and_fallback() -> None:
    assert requested_formats(["STL", "glb", "obj"]) == ["glb", "obj", "stl"]
    assert requested_formats(["3mf", ".USDZ", "fbx"]) == ["fbx", "usdz", "3mf"]
    assert requested_formats(None) == ["glb", "obj", "fbx", "stl", "usdz"]
    assert requested_formats([]) == ["glb"]


def test_preview_glb_is_untextured_with_unit_normals(preview_out: tuple[Path, Deliverables]) -> None:
    out, result = preview_out
    assert result.texture_files == []
    assert result.faces == 30000
    doc, blob = glb_json_and_bin(out / "model.glb")
    prim = doc["meshes"][0]["primitives"][0]
    assert "NORMAL" in prim["attributes"]
    assert "TEXCOORD_0" not in prim["attributes"]
    normals = read_accessor(doc, blob, prim["attributes"]["NORMAL"])
    assert np.allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-3)
    mesh = trimesh.load(out / "model.glb", force="mesh")
    assert len(mesh.faces) == result.faces
    assert mesh.is_watertight


def test_refine_glb_is_textured_with_uvs(refine_out: tuple[Path, Deliverables], raw_refine: Path) -> None:
    out, result = refine_out
    assert abs(result.faces - 4000) <= 400
    doc, blob = glb_json_and_bin(out / "model.glb")
    prim = doc["meshes"][0]["primitives"][0]
    assert {"POSITION", "NORMAL", "TEXCOORD_0"} <= set(prim["attributes"])
    normals = read_accessor(doc, blob, prim["attributes"]["NORMAL"])
    assert np.allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-3)
    pbr = doc["materials"][prim["material"]]["pbrMetallicRoughness"]
    assert "baseColorTexture" in pbr
    assert "metallicRoughnessTexture" in pbr

    mesh = trimesh.load(out / "model.glb", force="mesh")
    assert isinstance(mesh.visual, trimesh.visual.TextureVisuals)
    uv = mesh.visual.uv
    assert uv.shape == (len(mesh.vertices), 2)
    assert uv.min() >= 0.0
    assert uv.max() <= 1.0
    texture = np.asarray(mesh.visual.material.baseColorTexture.convert("RGB"), dtype=float)
    assert texture.shape == (1024, 1024, 3)
    # The texture looked up at each vertex's UV reproduces the runner's vertex colour there.
    raw = trimesh.load(raw_refine, process=False)
    nearest = cKDTree(raw.vertices).query(mesh.vertices)[1]
    expected = np.asarray(raw.visual.vertex_colors)[nearest, :3].astype(float)
    error = np.abs(_sample(texture, uv) - expected).mean(axis=1)
    assert np.median(error) < 8


def test_refine_texture_files_and_pbr_maps(refine_out: tuple[Path, Deliverables]) -> None:
    out, result = refine_out
    assert result.texture_files == [
        {
            "base_color": "texture_0.png",
            "metallic": "texture_0_metallic.png",
            "roughness": "texture_0_roughness.png",
            "normal": "texture_0_normal.png",
        }
    ]
    base = np.asarray(Image.open(out / "texture_0.png").convert("RGB"), dtype=float)
    assert base.std(axis=(0, 1)).max() > 5  # baked colours vary
    assert base[..., 0].mean() > base[..., 2].mean()  # "red and gold"
    for name in result.texture_files[0].values():
        assert Image.open(out / name).size == (1024, 1024)


def test_obj_references_mtl_and_texture(refine_out: tuple[Path, Deliverables]) -> None:
    out, result = refine_out
    assert result.model_files["obj"] == "model.obj"
    assert result.model_files["mtl"] == "model.mtl"
    obj_text = (out / "model.obj").read_text()
    assert "mtllib model.mtl" in obj_text
    mtl = (out / "model.mtl").read_text().splitlines()
    assert "map_Kd texture_0.png" in mtl
    assert "Kd 1.000000 1.000000 1.000000" in mtl
    assert "map_Pr texture_0_roughness.png" in mtl
    assert (out / "texture_0.png").is_file()
    mesh = trimesh.load(out / "model.obj", force="mesh")
    assert len(mesh.faces) == result.faces
    assert isinstance(mesh.visual, trimesh.visual.TextureVisuals)
    assert mesh.visual.uv is not None


def test_stl_reloads(refine_out: tuple[Path, Deliverables]) -> None:
    out, result = refine_out
    assert len(trimesh.load(out / result.model_files["stl"]).faces) == result.faces


def object_fraction(png: Path) -> tuple[float, np.ndarray]:
    img = np.asarray(Image.open(png).convert("RGB"), dtype=float)
    # The framing margin keeps column 0 free of the object: it is the background gradient of each row.
    background = img[:, :1, :]
    mask = np.abs(img - background).max(axis=2) > 12
    return float(mask.mean()), img[mask]


@pytest.mark.parametrize("which", ["preview", "refine"])
def test_thumbnail_shows_the_object(preview_out, refine_out, which: str) -> None:
    out, result = preview_out if which == "preview" else refine_out
    assert result.thumbnail == "preview.png"
    with Image.open(out / "preview.png") as im:
        assert im.format == "PNG"
        assert im.size == (512, 512)
    fraction, pixels = object_fraction(out / "preview.png")
    assert 0.1 <= fraction <= 0.8
    assert pixels.std(axis=0).max() > 10  # shaded, not a flat silhouette
    if which == "refine":
        assert pixels[:, 0].mean() > pixels[:, 2].mean() + 20  # red and gold, not clay grey


def test_alpha_thumbnail(preview_out: tuple[Path, Deliverables], refine_out) -> None:
    out, result = preview_out
    assert result.alpha_thumbnail == "preview_alpha.png"
    with Image.open(out / "preview_alpha.png") as im:
        assert im.mode == "RGBA"
        assert im.size == (512, 512)
        alpha = np.asarray(im)[..., 3]
    assert alpha[0, 0] == 0
    assert alpha[-1, -1] == 0
    assert 0.1 <= (alpha > 0).mean() <= 0.8
    assert refine_out[1].alpha_thumbnail is None
    assert not (refine_out[0] / "preview_alpha.png").exists()


def test_progress_is_monotonic(raw_preview: Path, tmp_path: Path) -> None:
    seen: list[float] = []
    build_deliverables(
        raw_preview,
        {"mode": "preview", "target_polycount": 2000, "target_formats": ["glb"]},
        tmp_path,
        seen.append,
    )
    assert seen[0] == 0.0
    assert seen[-1] == 1.0
    assert all(b >= a for a, b in zip(seen, seen[1:], strict=False))


def test_rasterize_covers_a_triangle_exactly() -> None:
    # Lower-left half of a 64x64 image: 64 * 65 / 2 pixel centres lie inside or on the diagonal.
    tri = np.array([[[0.0, 0.0], [0.0, 64.0], [64.0, 64.0]]])
    face, bary = rasterize(tri, 64, 64)
    covered = face >= 0
    assert covered.sum() == 64 * 65 // 2
    assert np.allclose(bary[covered].sum(axis=1), 1.0, atol=1e-5)
    # Nearest wins with depths: a second, closer triangle over the same area hides the first.
    two = np.concatenate([tri, tri])
    face, _ = rasterize(two, 64, 64, inv_depth=np.array([[1.0] * 3, [2.0] * 3]))
    assert set(np.unique(face)) == {-1, 1}


def test_messy_open_mesh_is_cleaned(tmp_path: Path) -> None:
    # Unwelded corners, one face missing (open), a duplicate face and a zero-area face.
    box = trimesh.creation.box()
    vertices = box.vertices[box.faces].reshape(-1, 3)
    faces = np.arange(len(vertices)).reshape(-1, 3)
    faces = np.vstack([faces[1:], faces[2:3], [[0, 0, 1]]])
    trimesh.Trimesh(vertices, faces, process=False).export(tmp_path / "messy.ply")
    cleaned = clean_mesh(load_mesh(tmp_path / "messy.ply"))
    assert len(cleaned.faces) == 11
    assert len(cleaned.vertices) == 8
    result = build_deliverables(
        tmp_path / "messy.ply",
        {"mode": "preview", "target_polycount": 1000, "target_formats": ["glb"]},
        tmp_path,
    )
    assert abs(result.faces - 1000) <= 100
    doc, blob = glb_json_and_bin(tmp_path / "model.glb")
    normals = read_accessor(doc, blob, doc["meshes"][0]["primitives"][0]["attributes"]["NORMAL"])
    assert np.allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-3)
    assert object_fraction(tmp_path / "preview.png")[0] > 0.1


def test_a_textured_mesh_above_the_unwrap_budget_is_unwrapped_low_then_subdivided(
    raw_refine: Path, tmp_path: Path
) -> None:
    """80k faces is over UNWRAP_BUDGET (30k): UVs come from a coarser unwrap carried through subdivision."""
    from inference.pipeline.texture import UNWRAP_BUDGET

    target = 80_000
    assert target > UNWRAP_BUDGET
    params = {"mode": "refine", "target_polycount": target, "enable_pbr": True, "target_formats": ["glb"]}
    result = build_deliverables(raw_refine, params, tmp_path)
    assert abs(result.faces - target) <= 0.1 * target
    glb = trimesh.load(tmp_path / "model.glb", force="mesh")
    assert len(glb.faces) == result.faces
    uv = np.asarray(glb.visual.uv)
    assert uv.shape == (len(glb.vertices), 2)
    assert uv.min() >= 0.0 and uv.max() <= 1.0
    assert result.texture_files and {"base_color", "normal"} <= set(result.texture_files[0])
