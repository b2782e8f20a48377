"""Every model format, each checked by an independent reader: pygltflib (GLB), ufbx and assimp (FBX), USD's
own validators (USDZ), trimesh (OBJ, STL), ElementTree and assimp (3MF)."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pygltflib
import pytest
import trimesh
from pxr import Usd, UsdGeom, UsdShade, UsdValidation

from inference.pipeline import export_fbx, texture
from inference.pipeline.deliverables import Deliverables, build_deliverables
from inference.pipeline.export_fbx import run_assimp

ALL_FORMATS = ["glb", "obj", "fbx", "stl", "usdz", "3mf"]

# ufbx's Python binding can crash in a long-lived process, so FBX files are read in a fresh interpreter.
UFBX_SCRIPT = """
import json, sys, ufbx
scene = ufbx.load_file(sys.argv[1])
meshes = list(scene.meshes)
sizes = {}
for mesh in meshes:
    for face in list(mesh.faces):
        sizes[face.num_indices] = sizes.get(face.num_indices, 0) + 1
textures = []
for material in list(scene.materials):
    for slot in list(material.textures):
        content = slot.texture.content
        textures.append([slot.material_prop, 0 if content is None else len(content)])
mesh = meshes[0]
print(json.dumps({"meshes": len(meshes), "faces": sum(m.num_faces for m in meshes), "sizes": sizes,
                  "uv": mesh.vertex_uv.exists, "normal": mesh.vertex_normal.exists, "textures": textures}))
"""


def read_fbx(path: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", UFBX_SCRIPT, str(path)], capture_output=True, text=True, timeout=60, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def coloured_blob(path: Path, subdivisions: int = 5, coloured: bool = True) -> Path:
    """A bumpy, asymmetric closed blob with painted vertex colours (like a refined runner mesh)."""
    sphere = trimesh.creation.icosphere(subdivisions=subdivisions)
    v = sphere.vertices
    bumps = 1 + 0.08 * np.sin(7 * v[:, 0]) * np.cos(5 * v[:, 1]) + 0.05 * np.sin(11 * v[:, 2] + 1)
    v = v * bumps[:, None] * [0.6, 1.0, 0.8] + [0.15, 0.0, 0.0]
    colours = None
    if coloured:
        stripes = (np.sin(9 * v[:, 1]) > 0)[:, None]
        colours = np.where(stripes, [200, 40, 30, 255], [230, 190, 60, 255]).astype(np.uint8)
    trimesh.Trimesh(v, sphere.faces, vertex_colors=colours, process=False).export(path)
    return path


@pytest.fixture(scope="module")
def textured(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Deliverables]:
    work = tmp_path_factory.mktemp("formats_textured")
    raw = coloured_blob(work / "raw.ply")
    out = work / "out"
    params = {"mode": "refine", "target_polycount": 3000, "enable_pbr": True, "target_formats": ALL_FORMATS}
    return out, build_deliverables(raw, params, out)


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Deliverables]:
    work = tmp_path_factory.mktemp("formats_plain")
    raw = coloured_blob(work / "raw.ply", subdivisions=4, coloured=False)
    out = work / "out"
    return out, build_deliverables(
        raw, {"mode": "preview", "target_polycount": 2000, "target_formats": ALL_FORMATS}, out
    )


def test_all_formats_written_and_listed(textured, plain) -> None:
    for out, result in (textured, plain):
        assert set(result.model_files) == {"glb", "obj", "mtl", "fbx", "stl", "usdz", "3mf"}
        for name in result.model_files.values():
            assert (out / name).stat().st_size > 0
        # Scratch folders used for USDZ packaging and FBX conversion are gone.
        assert not [p for p in out.iterdir() if p.name.startswith(".")]
    assert {"load", "clean", "remesh", "unwrap", "bake", "glb", "fbx", "usdz", "total"} <= set(textured[1].timings)


def glb_arrays(path: Path) -> tuple[pygltflib.GLTF2, dict[str, np.ndarray]]:
    gltf = pygltflib.GLTF2().load(str(path))
    blob = gltf.binary_blob()
    prim = gltf.meshes[0].primitives[0]
    widths = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}
    arrays = {}
    named = {**prim.attributes.__dict__, "INDICES": prim.indices}
    for name, index in named.items():
        if index is None or not isinstance(index, int):
            continue
        acc = gltf.accessors[index]
        view = gltf.bufferViews[acc.bufferView]
        dtype = {5126: "<f4", 5125: "<u4"}[acc.componentType]
        start = (view.byteOffset or 0) + (acc.byteOffset or 0)
        data = np.frombuffer(blob, dtype=dtype, count=acc.count * widths[acc.type], offset=start)
        arrays[name] = data.reshape(acc.count, -1)
    return gltf, arrays


def test_glb_textured(textured) -> None:
    out, result = textured
    gltf, arrays = glb_arrays(out / "model.glb")
    assert {"POSITION", "NORMAL", "TEXCOORD_0", "TANGENT"} <= set(arrays)
    assert np.allclose(np.linalg.norm(arrays["NORMAL"], axis=1), 1.0, atol=1e-4)
    assert np.allclose(np.linalg.norm(arrays["TANGENT"][:, :3], axis=1), 1.0, atol=1e-4)
    assert set(np.unique(arrays["TANGENT"][:, 3])) <= {-1.0, 1.0}
    position = gltf.accessors[gltf.meshes[0].primitives[0].attributes.POSITION]
    assert np.allclose(position.min, arrays["POSITION"].min(axis=0))
    assert len(arrays["INDICES"]) == 3 * result.faces
    material = gltf.materials[gltf.meshes[0].primitives[0].material]
    assert material.pbrMetallicRoughness.baseColorTexture is not None
    assert material.pbrMetallicRoughness.metallicRoughnessTexture is not None
    assert material.normalTexture is not None
    assert len(gltf.images) == 3
    assert all(img.mimeType == "image/png" for img in gltf.images)
    # trimesh (another reader) agrees on the face count and sees the texture.
    mesh = trimesh.load(out / "model.glb", force="mesh")
    assert len(mesh.faces) == result.faces
    assert isinstance(mesh.visual, trimesh.visual.TextureVisuals)


def test_glb_plain_has_clay_material(plain) -> None:
    out, result = plain
    assert result.texture_files == []
    gltf, arrays = glb_arrays(out / "model.glb")
    assert "TEXCOORD_0" not in arrays
    assert np.allclose(np.linalg.norm(arrays["NORMAL"], axis=1), 1.0, atol=1e-4)
    material = gltf.materials[0]
    assert material.pbrMetallicRoughness.baseColorTexture is None
    assert material.pbrMetallicRoughness.baseColorFactor[0] > 0.5


def test_obj_mtl_reference_every_map(textured) -> None:
    out, result = textured
    mtl = (out / "model.mtl").read_text().splitlines()
    maps = result.texture_files[0]
    referenced = {line.split()[-1] for line in mtl if line.split()[0] in {"map_Kd", "map_Pm", "map_Pr", "norm"}}
    assert referenced == set(maps.values())
    assert all((out / name).is_file() for name in referenced)
    mesh = trimesh.load(out / "model.obj", force="mesh")
    assert len(mesh.faces) == result.faces
    assert mesh.visual.uv is not None


def test_fbx_textured(textured) -> None:
    out, result = textured
    info = read_fbx(out / "model.fbx")
    assert info["meshes"] == 1
    assert info["faces"] == result.faces
    assert info["uv"]
    assert info["normal"]
    embedded = dict(info["textures"])
    # Base colour and normal map travel inside the FBX (PNG bytes embedded, not just referenced).
    assert embedded.get("DiffuseColor", 0) > 1000
    assert embedded.get("NormalMap", 0) > 1000
    stats = run_assimp("info", str(out / "model.fbx")).stdout
    assert f"Faces:              {result.faces}" in stats
    assert "Textures (embed.):  2" in stats


def test_fbx_plain(plain) -> None:
    out, result = plain
    info = read_fbx(out / "model.fbx")
    assert info["faces"] == result.faces
    assert info["textures"] == []


def validate_usdz(path: Path) -> Usd.Stage:
    stage = Usd.Stage.Open(str(path))
    registry = UsdValidation.ValidationRegistry()
    errors = UsdValidation.ValidationContext(registry.GetOrLoadAllValidators()).Validate(stage)
    assert [e.GetMessage() for e in errors if e.GetType() == UsdValidation.ValidationErrorType.Error] == []
    return stage


def usd_mesh(stage: Usd.Stage) -> UsdGeom.Mesh:
    meshes = [UsdGeom.Mesh(p) for p in stage.Traverse() if p.IsA(UsdGeom.Mesh)]
    assert len(meshes) == 1
    return meshes[0]


def test_usdz_textured(textured) -> None:
    out, result = textured
    stage = validate_usdz(out / "model.usdz")
    mesh = usd_mesh(stage)
    assert len(mesh.GetFaceVertexCountsAttr().Get()) == result.faces
    assert len(mesh.GetNormalsAttr().Get()) == len(mesh.GetPointsAttr().Get())
    assert UsdGeom.PrimvarsAPI(mesh).GetPrimvar("st").IsDefined()
    material = UsdShade.MaterialBindingAPI(mesh.GetPrim()).ComputeBoundMaterial()[0]
    files = {}
    for prim in Usd.PrimRange(material.GetPrim()):
        shader = UsdShade.Shader(prim)
        if shader and shader.GetIdAttr().Get() == "UsdUVTexture":
            asset = shader.GetInput("file").Get()
            files[prim.GetName()] = asset.resolvedPath
            assert asset.resolvedPath, f"{asset.path} does not resolve"
    assert set(files) == {"BaseColorTexture", "MetallicTexture", "RoughnessTexture", "NormalTexture"}
    names = zipfile.ZipFile(out / "model.usdz").namelist()
    assert names[0].endswith(".usdc")
    assert sum(n.endswith(".png") for n in names) == 4


def test_usdz_plain_grey(plain) -> None:
    out, result = plain
    stage = validate_usdz(out / "model.usdz")
    mesh = usd_mesh(stage)
    assert len(mesh.GetFaceVertexCountsAttr().Get()) == result.faces
    material = UsdShade.MaterialBindingAPI(mesh.GetPrim()).ComputeBoundMaterial()[0]
    shaders = [UsdShade.Shader(p) for p in Usd.PrimRange(material.GetPrim()) if UsdShade.Shader(p)]
    assert [s.GetIdAttr().Get() for s in shaders] == ["UsdPreviewSurface"]
    colour = shaders[0].GetInput("diffuseColor").Get()
    assert max(colour) - min(colour) < 0.1  # grey
    assert zipfile.ZipFile(out / "model.usdz").namelist() == ["model.usdc"]


def test_stl_and_3mf(textured) -> None:
    out, result = textured
    assert len(trimesh.load(out / "model.stl").faces) == result.faces
    with zipfile.ZipFile(out / "model.3mf") as zf:
        root = ElementTree.fromstring(zf.read("3D/3dmodel.model"))
        assert "[Content_Types].xml" in zf.namelist()
    ns = {"m": "http://schemas.microsoft.com/3dmanufacturing/core/2015/02"}
    assert len(root.findall(".//m:triangle", ns)) == result.faces
    stats = run_assimp("info", str(out / "model.3mf")).stdout
    assert f"Faces:              {result.faces}" in stats


def test_tangent_convention_on_a_plane() -> None:
    # A unit square in the xy plane facing +z, u along +x and v along +y: tangent +x, bitangent +y, w = +1.
    vertices = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], dtype=float)
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    normals = np.tile([0.0, 0.0, 1.0], (4, 1))
    uvm = texture.UVMesh(vertices, faces, vertices[:, :2], normals, np.arange(4))
    tangents = texture.vertex_tangents(uvm)
    assert np.allclose(tangents, [[1, 0, 0, 1]] * 4)
    # Mirrored UVs (u running along -x) flip the handedness.
    mirrored = texture.UVMesh(
        vertices, faces, np.column_stack([1 - vertices[:, 0], vertices[:, 1]]), normals, uvm.source
    )
    assert np.allclose(texture.vertex_tangents(mirrored), [[-1, 0, 0, -1]] * 4)


def test_normal_map_reproduces_high_res_normals() -> None:
    """Decode the baked map the way a glTF viewer does and compare with the bumpy reference's normals."""
    ref = trimesh.creation.icosphere(subdivisions=6)
    ref.vertices *= (1 + 0.03 * np.sin(12 * ref.vertices[:, 0]) * np.sin(12 * ref.vertices[:, 1]))[:, None]
    ref_normals = np.asarray(ref.vertex_normals)
    low = trimesh.creation.icosphere(subdivisions=3)
    uvm = texture.textured_mesh(np.asarray(low.vertices), np.asarray(low.faces))
    tangents = texture.vertex_tangents(uvm)
    colours = np.full((len(ref.vertices), 3), 128, dtype=np.uint8)
    ref_vertices = np.asarray(ref.vertices)
    baked = texture.bake(
        uvm, ref_vertices, colours, normal_source=(ref_vertices, ref_normals), tangents=tangents, size=256
    )
    # Sample the map at each triangle's centroid and rebuild the world normal from the interpolated frame.
    centroid_uv = uvm.uv[uvm.faces].mean(axis=1)
    px = np.clip((centroid_uv[:, 0] * 256).astype(int), 0, 255)
    py = np.clip(((1 - centroid_uv[:, 1]) * 256).astype(int), 0, 255)
    encoded = np.asarray(baked.normal, dtype=float)[py, px] / 255 * 2 - 1
    n = uvm.normals[uvm.faces].mean(axis=1)
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    t = tangents[uvm.faces][:, :, :3].mean(axis=1)
    t -= n * np.einsum("ij,ij->i", t, n)[:, None]
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    b = np.cross(n, t) * tangents[uvm.faces[:, 0], 3][:, None]
    world = encoded[:, :1] * t + encoded[:, 1:2] * b + encoded[:, 2:] * n
    world /= np.linalg.norm(world, axis=1, keepdims=True)
    centroid = uvm.vertices[uvm.faces].mean(axis=1)
    truth = ref_normals[trimesh.proximity.ProximityQuery(ref).vertex(centroid)[1]]
    baked_error = np.degrees(np.arccos(np.clip(np.einsum("ij,ij->i", world, truth), -1, 1)))
    flat_error = np.degrees(np.arccos(np.clip(np.einsum("ij,ij->i", n, truth), -1, 1)))
    assert np.median(flat_error) > 8  # the bumps are real
    assert np.median(baked_error) < 4


def test_fbx_alone_still_embeds_textures(tmp_path: Path) -> None:
    # Without an OBJ deliverable the FBX converter writes its own scratch OBJ, and leaves nothing behind.
    raw = coloured_blob(tmp_path / "raw.ply", subdivisions=3)
    out = tmp_path / "out"
    params = {"mode": "refine", "target_polycount": 1000, "enable_pbr": True, "target_formats": ["fbx"]}
    result = build_deliverables(raw, params, out)
    assert result.model_files == {"fbx": "model.fbx"}
    assert {p.suffix for p in out.iterdir()} == {".fbx", ".png"}
    info = read_fbx(out / "model.fbx")
    assert info["faces"] == result.faces
    assert {name for name, size in info["textures"] if size > 0} == {"DiffuseColor", "NormalMap"}


def test_missing_assimp_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def no_distribution(name: str):
        raise importlib.metadata.PackageNotFoundError(name)

    export_fbx.assimp_binary.cache_clear()
    monkeypatch.setattr(importlib.metadata, "distribution", no_distribution)
    monkeypatch.setattr(sysconfig, "get_paths", lambda: {"purelib": str(tmp_path)})
    try:
        with pytest.raises(export_fbx.AssimpNotFound, match="cmeel-assimp"):
            export_fbx.assimp_binary()
    finally:
        export_fbx.assimp_binary.cache_clear()
