"""uv-unwrap, retexture and text-to-texture on a caller's model (inference.pipeline.retexture).

Inputs are built here with trimesh and read back through `load_model`; outputs are read with independent readers
(trimesh and pygltflib for GLB, PIL for textures, pxr for USDZ) and checked for what a caller would see.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pygltflib
import pytest
import trimesh
from PIL import Image
from pxr import Usd, UsdGeom
from trimesh.visual import TextureVisuals
from trimesh.visual.material import PBRMaterial

from inference.pipeline import retexture
from inference.pipeline.model_input import LoadedModel, load_model
from inference.runners.base import InputRejected

GREY = (128, 128, 128)


def sphere_arrays(rings: int = 32, segments: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A latitude-longitude sphere (radius 0.5) with the usual UVs: u = longitude, v = latitude, a seam column."""
    theta, phi = np.meshgrid(np.linspace(0, np.pi, rings + 1), np.linspace(0, 2 * np.pi, segments + 1), indexing="ij")
    vertices = 0.5 * np.stack([np.sin(theta) * np.cos(phi), np.cos(theta), np.sin(theta) * np.sin(phi)], -1)
    uv = np.stack([phi / (2 * np.pi), 1 - theta / np.pi], -1).reshape(-1, 2)
    idx = np.arange((rings + 1) * (segments + 1)).reshape(rings + 1, segments + 1)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    faces = np.concatenate([np.stack([a, c, b], -1).reshape(-1, 3), np.stack([b, c, d], -1).reshape(-1, 3)])
    return vertices.reshape(-1, 3), faces, uv


def textured_glb(path: Path, image: Image.Image, uv_scale: float = 1.0, **material: object) -> Path:
    vertices, faces, uv = sphere_arrays()
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    mesh.visual = TextureVisuals(uv=uv * uv_scale, material=PBRMaterial(baseColorTexture=image, **material))
    mesh.export(path)
    return path


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("retexture")


@pytest.fixture(scope="module")
def grey_sphere(work: Path) -> LoadedModel:
    path = textured_glb(work / "grey.glb", Image.new("RGB", (64, 64), GREY), metallicFactor=0.0, roughnessFactor=0.8)
    return load_model(path, "glb")


@pytest.fixture(scope="module")
def bare_model(work: Path) -> LoadedModel:
    path = work / "bare.glb"
    trimesh.creation.icosphere(subdivisions=3).export(path)
    model = load_model(path, "glb")
    assert not model.has_uv
    return model


def read_glb(path: Path) -> trimesh.Trimesh:
    mesh = trimesh.load(path, force="mesh", process=False)
    assert isinstance(mesh, trimesh.Trimesh)
    return mesh


def texture_array(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.float64)


def surface_texels(texture: np.ndarray, uv: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Texels (RGB) under points spread evenly over every UV triangle, repeated by the triangle's UV area, so
    their statistics are those of the texture over the used UV area."""
    weights = np.array([[a, b, 1 - a - b] for a in np.linspace(0.05, 0.9, 6) for b in np.linspace(0.05, 0.9, 6)])
    weights = weights[weights[:, 2] > 0.02]
    tri = uv[faces]
    points = np.einsum("sk,fkc->fsc", weights, tri)
    area = 0.5 * np.abs(cross2(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]))
    repeat = np.maximum(1, np.rint(area / area[area > 0].mean() * 4)).astype(int)
    return texel_at(texture, np.repeat(points, repeat, axis=0).reshape(-1, 2))


def cross2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


def texel_at(texture: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """The texel under each UV (trimesh's convention: v = 0 is the bottom row), wrapping like glTF."""
    h, w = texture.shape[:2]
    x = np.clip(((uv[:, 0] % 1.0) * w).astype(int), 0, w - 1)
    y = np.clip(((1 - uv[:, 1] % 1.0) * h).astype(int), 0, h - 1)
    return texture[y, x]


def painted(out: Path) -> np.ndarray:
    mesh = read_glb(out / "model.glb")
    return surface_texels(texture_array(out / "texture_0.png"), np.asarray(mesh.visual.uv), np.asarray(mesh.faces))


def test_red_prompt_paints_the_model_red(grey_sphere: LoadedModel, work: Path) -> None:
    out = work / "red"
    fractions: list[float] = []
    result = retexture.retexture(
        grey_sphere, {"text_style_prompt": "red", "target_formats": ["glb"]}, out, fractions.append
    )
    assert result.model_files == {"glb": "model.glb"}
    assert result.texture_files == [{"base_color": "texture_0.png"}]
    assert result.thumbnail == "preview.png" and (out / "preview.png").is_file()
    assert result.alpha_thumbnail is None
    assert fractions[0] == 0.0 and fractions[-1] == 1.0 and fractions == sorted(fractions)
    r, g, b = painted(out).mean(axis=0)
    assert r > 120 and r > 3 * max(g, b), (r, g, b)
    # The GLB embeds the same texture the PNG holds.
    embedded = np.asarray(read_glb(out / "model.glb").visual.material.baseColorTexture.convert("RGB"), dtype=float)
    assert np.array_equal(embedded, texture_array(out / "texture_0.png"))
    with Image.open(out / "texture_0.png") as image:
        assert image.size == (1024, 1024)


def test_blue_wooden_is_blue_and_brown(grey_sphere: LoadedModel, work: Path) -> None:
    out = work / "blue_wood"
    retexture.retexture(grey_sphere, {"text_style_prompt": "blue wooden", "target_formats": ["glb"]}, out, None)
    texels = painted(out)
    r, g, b = texels.T
    blue = np.mean((b > r + 30) & (b > g))
    brown = np.mean((r > g) & (g > b) & (r > b + 30))
    assert blue > 0.4 and brown > 0.1, (blue, brown)


def test_style_image_wins_over_the_prompt(grey_sphere: LoadedModel, work: Path) -> None:
    style = work / "green.png"
    Image.new("RGB", (80, 60), (40, 170, 50)).save(style)
    out = work / "green"
    result = retexture.retexture(
        grey_sphere, {"text_style_prompt": "red", "target_formats": ["glb"]}, out, None, style_image=style
    )
    assert result.model_files == {"glb": "model.glb"}
    r, g, b = painted(out).mean(axis=0)
    assert g > 1.5 * r and g > 1.5 * b, (r, g, b)


def test_style_image_background_is_left_out(grey_sphere: LoadedModel, work: Path) -> None:
    """A blue object on a white background paints the model blue, not white."""
    pixels = np.full((64, 64, 3), 255, dtype=np.uint8)
    pixels[16:48, 16:48] = (30, 60, 200)
    style = work / "object_on_white.png"
    Image.fromarray(pixels).save(style)
    out = work / "object_on_white"
    retexture.retexture(grey_sphere, {"target_formats": ["glb"]}, out, None, style_image=style)
    r, g, b = painted(out).mean(axis=0)
    assert b > r + 100 and b > g + 80, (r, g, b)


def test_original_uv_is_kept_exactly(grey_sphere: LoadedModel, work: Path) -> None:
    out = work / "original_uv"
    params = {"text_style_prompt": "yellow", "enable_original_uv": True, "target_formats": ["glb"]}
    retexture.retexture(grey_sphere, params, out, None)
    mesh = read_glb(out / "model.glb")
    assert np.array_equal(mesh.faces, grey_sphere.mesh.faces)
    np.testing.assert_allclose(mesh.vertices, grey_sphere.mesh.vertices, atol=1e-6)
    np.testing.assert_allclose(mesh.visual.uv, grey_sphere.mesh.visual.uv, atol=1e-6)
    r, g, b = painted(out).mean(axis=0)
    assert r > 150 and g > 120 and b < 0.6 * g, (r, g, b)


def test_original_uv_needs_uvs(bare_model: LoadedModel, work: Path) -> None:
    with pytest.raises(InputRejected) as caught:
        retexture.retexture(bare_model, {"text_style_prompt": "red", "enable_original_uv": True}, work / "x", None)
    assert caught.value.code == "model_missing_uv"


def test_original_uv_needs_enough_uv_area(work: Path) -> None:
    squeezed = load_model(textured_glb(work / "squeezed.glb", Image.new("RGB", (8, 8), GREY), uv_scale=0.1), "glb")
    with pytest.raises(InputRejected) as caught:
        retexture.retexture(squeezed, {"text_style_prompt": "red", "enable_original_uv": True}, work / "y", None)
    assert caught.value.code == "model_insufficient_uv"


def test_model_without_uvs_is_unwrapped_and_written_in_every_default_format(
    bare_model: LoadedModel, work: Path
) -> None:
    out = work / "bare_all"
    result = retexture.retexture(bare_model, {"text_style_prompt": "orange", "alpha_thumbnail": True}, out, None)
    assert set(result.model_files) == {"glb", "obj", "mtl", "fbx", "stl", "usdz"}
    for name in result.model_files.values():
        assert (out / name).stat().st_size > 0
    assert result.alpha_thumbnail == "preview_alpha.png"
    with Image.open(out / "preview_alpha.png") as image:
        assert image.mode == "RGBA"
    mesh = read_glb(out / "model.glb")
    assert len(mesh.faces) == len(bare_model.mesh.faces)
    uv = np.asarray(mesh.visual.uv)
    assert uv.min() >= 0 and uv.max() <= 1
    r, g, b = painted(out).mean(axis=0)
    assert r > 180 and 50 < g < 0.8 * r and b < 0.5 * g, (r, g, b)


def test_enable_pbr_writes_metallic_roughness_and_normal_maps(grey_sphere: LoadedModel, work: Path) -> None:
    out = work / "pbr"
    params = {"text_style_prompt": "golden metal", "enable_pbr": True, "target_formats": ["glb"]}
    result = retexture.retexture(grey_sphere, params, out, None)
    maps = result.texture_files[0]
    assert maps == {
        "base_color": "texture_0.png",
        "metallic": "texture_0_metallic.png",
        "roughness": "texture_0_roughness.png",
        "normal": "texture_0_normal.png",
    }
    assert texture_array(out / maps["metallic"]).mean() > 200  # metal words make it metallic
    assert texture_array(out / maps["roughness"]).mean() < 150
    normal = texture_array(out / maps["normal"])
    assert normal[..., 2].mean() > 200 and abs(normal[..., 0].mean() - 128) < 20
    gltf = pygltflib.GLTF2().load(str(out / "model.glb"))
    material = gltf.materials[0]
    assert material.pbrMetallicRoughness.metallicRoughnessTexture is not None
    assert material.normalTexture is not None
    assert gltf.meshes[0].primitives[0].attributes.TANGENT is not None


def two_colour_sphere(work: Path) -> LoadedModel:
    """Left half of the texture (u < 0.5: z > 0 on the sphere) red, right half blue."""
    pixels = np.zeros((64, 64, 3), dtype=np.uint8)
    pixels[:, :32] = (220, 20, 20)
    pixels[:, 32:] = (20, 40, 220)
    return load_model(textured_glb(work / "two_colour.glb", Image.fromarray(pixels)), "glb")


def uv_overlaps(uv: np.ndarray, faces: np.ndarray, grid: int = 512, margin: float = 0.3) -> int:
    """Texel centres lying inside more than one UV triangle by more than `margin` texels from its edges."""
    counts = np.zeros((grid, grid), dtype=np.int32)
    for tri in uv[faces] * grid:
        signed = cross2(tri[1] - tri[0], tri[2] - tri[0])
        if abs(signed) < 1e-9:
            continue
        x0, y0 = np.floor(tri.min(axis=0)).astype(int)
        x1, y1 = np.ceil(tri.max(axis=0)).astype(int)
        xs, ys = np.meshgrid(np.arange(max(x0, 0), min(x1, grid)), np.arange(max(y0, 0), min(y1, grid)))
        p = np.stack([xs + 0.5, ys + 0.5], axis=-1)
        inside = np.ones(xs.shape, dtype=bool)
        for k in range(3):
            a, b = tri[k], tri[(k + 1) % 3]
            edge = b - a
            distance = np.sign(signed) * (edge[0] * (p[..., 1] - a[1]) - edge[1] * (p[..., 0] - a[0]))
            inside &= distance / np.linalg.norm(edge) > margin
        counts[ys[inside], xs[inside]] += 1
    return int(np.count_nonzero(counts > 1))


def test_uv_unwrap_gives_a_clean_atlas_and_keeps_the_colours(work: Path) -> None:
    model = two_colour_sphere(work)
    out = work / "unwrap"
    result = retexture.uv_unwrap(model, {}, out, None)
    assert result.model_files == {"glb": "model.glb"}
    assert result.texture_files == [{"base_color": "texture_0.png"}]
    assert (out / "preview.png").is_file()
    mesh = read_glb(out / "model.glb")
    uv, faces = np.asarray(mesh.visual.uv), np.asarray(mesh.faces)
    # Same surface, face for face.
    centroids = mesh.vertices[faces].mean(axis=1)
    np.testing.assert_allclose(centroids, model.mesh.vertices[model.mesh.faces].mean(axis=1), atol=1e-6)
    assert uv.min() >= 0 and uv.max() <= 1
    assert not np.allclose(uv[faces], model.mesh.visual.uv[model.mesh.faces])  # a new layout
    assert uv_overlaps(uv, faces) == 0
    texture = texture_array(out / "texture_0.png")
    colour = texel_at(texture, uv[faces].mean(axis=1))
    red, blue = centroids[:, 2] > 0.1, centroids[:, 2] < -0.1
    assert np.mean(colour[red, 0] > colour[red, 2] + 100) > 0.99
    assert np.mean(colour[blue, 2] > colour[blue, 0] + 100) > 0.99


def test_uv_unwrap_bakes_vertex_colours_and_carries_pbr_maps(work: Path) -> None:
    vertices, faces, uv = sphere_arrays(16, 32)
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    metal_rough = Image.new("RGB", (16, 16), (0, 100, 255))  # G = roughness, B = metallic
    flat_normal = Image.new("RGB", (16, 16), (128, 128, 255))
    material = PBRMaterial(
        baseColorTexture=Image.new("RGB", (16, 16), (200, 150, 50)),
        metallicRoughnessTexture=metal_rough,
        normalTexture=flat_normal,
        metallicFactor=1.0,
        roughnessFactor=1.0,
    )
    mesh.visual = TextureVisuals(uv=uv, material=material)
    mesh.export(work / "pbr_in.glb")
    out = work / "unwrap_pbr"
    result = retexture.uv_unwrap(load_model(work / "pbr_in.glb", "glb"), {}, out, None)
    assert set(result.texture_files[0]) == {"base_color", "metallic", "roughness", "normal"}
    assert np.allclose(texture_array(out / "texture_0.png").mean(axis=(0, 1)), (200, 150, 50), atol=2)
    assert abs(texture_array(out / "texture_0_metallic.png").mean() - 255) < 2
    assert abs(texture_array(out / "texture_0_roughness.png").mean() - 100) < 2
    normal = texture_array(out / "texture_0_normal.png").reshape(-1, 3)
    assert np.all(np.abs(normal - (128, 128, 255)) < 6)  # flat stays flat in the new tangent frames

    # Vertex colours (no UVs, no texture) are baked onto the atlas, on the right faces.
    ball = trimesh.creation.icosphere(subdivisions=3)
    top = ball.vertices[:, 1] > 0
    ball.visual.vertex_colors = np.where(top[:, None], [230, 30, 30, 255], [30, 30, 230, 255]).astype(np.uint8)
    out = work / "unwrap_colours"
    retexture.uv_unwrap(LoadedModel(ball, "glb"), {}, out, None)
    baked = read_glb(out / "model.glb")
    texture = texture_array(out / "texture_0.png")
    colour = texel_at(texture, np.asarray(baked.visual.uv)[baked.faces].mean(axis=1))
    height = baked.vertices[baked.faces].mean(axis=1)[:, 1]
    assert np.all(colour[height > 0.3, 0] > 180) and np.all(colour[height < -0.3, 2] > 180)


def test_uv_unwrap_refuses_too_many_faces() -> None:
    big = trimesh.creation.icosphere(subdivisions=6)
    assert len(big.faces) > retexture.UV_UNWRAP_MAX_FACES
    with pytest.raises(InputRejected, match="at most 44000"):
        retexture.uv_unwrap(LoadedModel(big, "glb"), {}, Path("/nonexistent"), None)


def test_text_to_texture_writes_glb_fbx_usdz(grey_sphere: LoadedModel, work: Path) -> None:
    out = work / "text_to_texture"
    params = {"object_prompt": "a ball", "style_prompt": "purple", "negative_prompt": "red", "resolution": 4096}
    result = retexture.text_to_texture(grey_sphere, params, out, None)
    assert result.model_files == {"glb": "model.glb", "fbx": "model.fbx", "usdz": "model.usdz"}
    assert set(result.texture_files[0]) == {"base_color", "metallic", "roughness", "normal"}  # PBR by default
    assert result.extra["texture_size"] == 2048 and "4096" in result.extra["notes"][0]
    with Image.open(out / "texture_0.png") as image:
        assert image.size == (2048, 2048)
    assert (out / "model.fbx").read_bytes().startswith(b"Kaydara FBX Binary")
    stage = Usd.Stage.Open(str(out / "model.usdz"))
    meshes = [UsdGeom.Mesh(p) for p in stage.Traverse() if p.IsA(UsdGeom.Mesh)]
    assert len(meshes) == 1 and UsdGeom.PrimvarsAPI(meshes[0]).GetPrimvar("st").IsDefined()
    mesh = read_glb(out / "model.glb")  # original UVs by default
    np.testing.assert_allclose(mesh.visual.uv, grey_sphere.mesh.visual.uv, atol=1e-6)
    r, g, b = painted(out).mean(axis=0)
    assert b > g + 40 and r > g + 20, (r, g, b)


def test_retexture_needs_a_style() -> None:
    model = LoadedModel(trimesh.creation.box(), "glb")
    with pytest.raises(InputRejected):
        retexture.retexture(model, {"text_style_prompt": "  "}, Path("/nonexistent"), None)


def test_retexture_of_a_big_model_without_uvs_resamples_to_unwrap(work: Path) -> None:
    big = trimesh.creation.icosphere(subdivisions=6)
    assert len(big.faces) > retexture.UV_UNWRAP_MAX_FACES
    out = work / "big"
    result = retexture.retexture(
        LoadedModel(big, "glb"), {"text_style_prompt": "red", "target_formats": ["glb"]}, out, None
    )
    assert "resampled" in result.extra["notes"][0]
    mesh = read_glb(out / "model.glb")
    assert abs(len(mesh.faces) - len(big.faces)) < 0.01 * len(big.faces)
    np.testing.assert_allclose(np.linalg.norm(mesh.vertices, axis=1), 1.0, atol=0.01)  # still the same sphere
    r, g, b = painted(out).mean(axis=0)
    assert r > 120 and r > 3 * max(g, b), (r, g, b)
