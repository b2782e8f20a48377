"""Meshy's model operations that repaint or re-lay-out a caller's model: uv-unwrap, retexture, text-to-texture.

All three keep the caller's geometry (every face, in order) and work per texel: the UV triangles of the output
layout are rasterised once (`_texels`), which gives every covered texel its face and barycentrics, hence its
surface point, and (through the same face of the input) its point in the input's own UV layout.

- `uv_unwrap`: a fresh non-overlapping xatlas atlas; the input's look is re-baked onto it by reading the old
  base colour (and metallicRoughness, normal) texture at each texel's old UV. The vertices are the same, so this
  barycentric transfer is exact; normal maps are decoded in the old tangent frame and re-encoded in the new one.
- `retexture` / `text_to_texture`: a new base colour painted per texel, in the model's own UVs
  (`enable_original_uv`) or a fresh atlas. A prompt goes through `procedural_paint.paint` (palette and pattern
  from colour and material words) evaluated at each texel's surface point. A style image is transferred as a
  colour histogram: its pixels (background dropped), sorted by luminance, become a lookup table, and a smooth
  seeded noise field over the surface (plus a little height) is mapped through it by rank, so each of the
  image's colours covers about the share of the surface it covers in the image. This suits the usual style
  reference (a swatch, a material, a photo of something else) better than projecting the picture front-on,
  which would smear a differently shaped object's silhouette and background across the model.
- PBR (`enable_pbr`): metallic and roughness from material words (metal, wood, stone, plastic...), roughness
  varying slightly with the paint, and a tangent-space normal map from the base colour's luminance used as a
  height field (a mild bump, so wood grain and stone mottling catch the light).

Limits: uv_unwrap accepts at most `UV_UNWRAP_MAX_FACES` faces (Meshy's live server cites about 44k; xatlas is
superlinear and holds the GIL: ~1 s at 30k faces, ~11 s at 82k with default options). Retexture without
`enable_original_uv` above that limit paints in the model's own UVs when they cover at least
`MIN_UV_COVERAGE`, else unwraps a decimated copy and subdivides it back (the surface is then resampled, see
`texture.unwrap`); `extra["notes"]` says which. Textures are 1024² (hd_texture: 2048²); CPU baking caps them at
`MAX_TEXTURE_SIZE` (2048²), so text-to-texture's resolution 4096 gives 2048² and says so.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import trimesh
from PIL import Image, ImageOps
from scipy import ndimage

from inference.pipeline import texture
from inference.pipeline.clean import safe_vertex_normals
from inference.pipeline.deliverables import requested_formats, write_surface
from inference.pipeline.model_input import LoadedModel, OpResult, uv_coverage
from inference.pipeline.raster import rasterize
from inference.pipeline.surface import CLAY_RGBA, METALLIC, ROUGHNESS, Surface
from inference.runners import procedural_paint
from inference.runners.base import InputRejected

UV_UNWRAP_MAX_FACES = 44_000
MIN_UV_COVERAGE = 0.05
TEXTURE_SIZE, HD_TEXTURE_SIZE, MAX_TEXTURE_SIZE = 1024, 2048, 2048
TEXT_TO_TEXTURE_FORMATS = ("glb", "fbx", "usdz")
# Style images are read at most this big (the histogram needs no more pixels).
STYLE_SAMPLE_SIZE = 256
LUT_SIZE = 256
LUMA = np.array([0.2126, 0.7152, 0.0722])
# Tangent-space slope per unit of luminance change per texel at 1024² (scaled with the texture size).
BUMP_STRENGTH = 3.0
# (metallic, roughness) for material words; the first word found wins, else surface.METALLIC/ROUGHNESS.
MATERIAL_WORDS: dict[str, tuple[float, float]] = {
    **dict.fromkeys(["chrome", "polished", "mirror"], (1.0, 0.15)),
    **dict.fromkeys(["gold", "golden", "silver", "copper", "brass", "bronze"], (1.0, 0.3)),
    **dict.fromkeys(["metal", "metallic", "steel", "iron", "aluminium", "aluminum"], (1.0, 0.4)),
    **dict.fromkeys(["glossy", "shiny", "lacquer", "lacquered", "ceramic", "porcelain"], (0.0, 0.25)),
    **dict.fromkeys(["plastic", "vinyl"], (0.0, 0.45)),
    **dict.fromkeys(["wood", "wooden", "oak", "timber", "leather"], (0.0, 0.7)),
    **dict.fromkeys(["stone", "rock", "marble", "granite", "concrete", "clay"], (0.0, 0.9)),
    **dict.fromkeys(["fabric", "cloth", "wool", "rubber", "matte"], (0.0, 0.95)),
}

Progress = Callable[[float], None]


# --------------------------------------------------------------------------------------------------- layouts


@dataclass(frozen=True)
class _Layout:
    """The output mesh in its UV layout (trimesh's UV convention: v = 0 is the bottom image row). The original
    and fresh layouts keep the input's faces in order (face i is the input's face i); the resampled one does not.
    """

    vertices: np.ndarray
    normals: np.ndarray
    faces: np.ndarray
    uv: np.ndarray


def _input_normals(mesh: trimesh.Trimesh) -> np.ndarray:
    """The file's (or trimesh's) unit vertex normals, with safe ones wherever those are missing or broken."""
    vertices, faces = np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces, dtype=np.int64)
    try:
        normals = np.asarray(mesh.vertex_normals, dtype=np.float64)
    except Exception:  # noqa: BLE001 (trimesh may fail on odd meshes; fall back to our own)
        normals = np.zeros_like(vertices)
    if normals.shape != vertices.shape:
        normals = np.zeros_like(vertices)
    length = np.linalg.norm(normals, axis=1)
    bad = ~np.isfinite(length) | (length < 0.5)
    if np.any(bad):
        normals = normals.copy()
        normals[bad] = safe_vertex_normals(vertices, faces)[bad]
        length = np.linalg.norm(normals, axis=1)
    return normals / length[:, None]


def _original_layout(mesh: trimesh.Trimesh) -> _Layout:
    return _Layout(
        vertices=np.asarray(mesh.vertices, dtype=np.float64),
        normals=_input_normals(mesh),
        faces=np.asarray(mesh.faces, dtype=np.int64),
        uv=np.asarray(mesh.visual.uv, dtype=np.float64),
    )


def _fresh_layout(mesh: trimesh.Trimesh) -> _Layout:
    """A new xatlas atlas over the same faces, in the same order.

    xatlas gets the mesh welded by position (so old UV seams do not force new ones); afterwards a vertex is
    split again wherever the input had different normals at one position (hard edges stay hard).
    """
    vertices, faces = np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces, dtype=np.int64)
    normals = _input_normals(mesh)
    welded, weld = np.unique(vertices, axis=0, return_inverse=True)
    welded_faces = weld.reshape(-1)[faces]
    # A budget of the face count itself: full resolution (no decimation), faces one to one, and the triangle
    # path's smaller charts (about twice as fast as the quad path's at 30k faces).
    normals_welded = safe_vertex_normals(welded, welded_faces)
    uvm = texture.unwrap(welded, welded_faces, normals_welded, budget=len(welded_faces))
    if len(uvm.faces) != len(faces):
        raise RuntimeError(f"xatlas returned {len(uvm.faces)} faces for {len(faces)}")
    corner_atlas = uvm.faces.reshape(-1)
    corner_input = faces.reshape(-1)
    _, normal_id = np.unique(np.round(normals, 5), axis=0, return_inverse=True)
    normal_id = normal_id.reshape(-1)
    key = corner_atlas * (int(normal_id.max()) + 1) + normal_id[corner_input]
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    return _Layout(
        vertices=vertices[corner_input[first]],
        normals=normals[corner_input[first]],
        faces=inverse.reshape(-1, 3).astype(np.int64),
        uv=np.asarray(uvm.uv, dtype=np.float64)[corner_atlas[first]],
    )


def _resampled_layout(mesh: trimesh.Trimesh) -> _Layout:
    """Big meshes without usable UVs: `texture.textured_mesh` unwraps a decimated copy and subdivides it back
    onto the surface (about the same face count, new vertices)."""
    vertices, faces = np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces, dtype=np.int64)
    welded, weld = np.unique(vertices, axis=0, return_inverse=True)
    uvm = texture.textured_mesh(welded, weld.reshape(-1)[faces])
    return _Layout(uvm.vertices, uvm.normals, np.asarray(uvm.faces, dtype=np.int64), uvm.uv)


# ---------------------------------------------------------------------------------------------------- texels


@dataclass(frozen=True)
class _Texels:
    """The covered texels of a `size`² texture: their layout face and barycentrics, and for every texel the
    nearest covered one (`fill`, for dilating charts into the gutters)."""

    size: int
    covered: np.ndarray  # (size, size) bool
    face: np.ndarray  # (N,) layout face per covered texel, in row-major order
    bary: np.ndarray  # (N, 3)
    fill: tuple[np.ndarray, np.ndarray] | None

    def interp(self, faces: np.ndarray, per_vertex: np.ndarray) -> np.ndarray:
        return np.einsum("pk,pkc->pc", self.bary, per_vertex[faces[self.face]])

    def image(self, values: np.ndarray, mode: str = "RGB") -> Image.Image:
        """An image from per-texel values (0..255), gutters filled from the nearest chart texel."""
        channels = 1 if values.ndim == 1 else values.shape[1]
        out = np.zeros((self.size, self.size, channels), dtype=np.float64)
        out[self.covered] = values.reshape(len(values), channels)
        if self.fill is not None:
            out = out[self.fill[0], self.fill[1]]
        pixels = np.clip(np.rint(out), 0, 255).astype(np.uint8)
        return Image.fromarray(pixels[..., 0] if mode == "L" else pixels, mode)


def _texels(layout: _Layout, size: int) -> _Texels:
    """Rasterise the layout's UV triangles. UVs outside the unit square wrap (glTF's REPEAT): each triangle is
    moved by whole tiles so its centroid lies in the square, and copies shifted by one tile cover what sticks out.
    """
    tri = layout.uv[layout.faces]
    tri = tri - np.floor(tri.mean(axis=1))[:, None, :]
    lo, hi = tri.min(axis=1), tri.max(axis=1)
    parts, owners = [tri], [np.arange(len(tri))]
    for du in (-1, 0, 1):
        for dv in (-1, 0, 1):
            if du == dv == 0:
                continue
            d = np.array([du, dv], dtype=np.float64)
            hit = np.nonzero(np.all((lo + d < 1) & (hi + d > 0), axis=1))[0]
            if len(hit):
                parts.append(tri[hit] + d)
                owners.append(hit)
    tri, owner = np.concatenate(parts), np.concatenate(owners)
    pix = np.stack([tri[..., 0] * size, (1.0 - tri[..., 1]) * size], axis=-1)
    face_img, bary_img = rasterize(pix, size, size)
    covered = face_img >= 0
    if not covered.any():
        raise InputRejected("the model's UV layout covers no texel of the texture", code="model_insufficient_uv")
    fill = None
    if not covered.all():
        _, indices = ndimage.distance_transform_edt(~covered, return_indices=True)
        fill = (indices[0], indices[1])
    return _Texels(size, covered, owner[face_img[covered]], bary_img[covered].astype(np.float64), fill)


def _sample(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear lookup in an (H, W, C) float array at trimesh-convention UVs, wrapping like glTF's REPEAT."""
    h, w = image.shape[:2]
    x = (uv[:, 0] % 1.0) * w - 0.5
    y = (1.0 - uv[:, 1] % 1.0) * h - 0.5
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    x0, x1, y0, y1 = x0 % w, (x0 + 1) % w, y0 % h, (y0 + 1) % h
    top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
    bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def _array(image: Image.Image, mode: str, size: int) -> np.ndarray:
    """A texture as float (H, W, C) 0..255, shrunk first when far larger than the texture it is baked into."""
    image = image.convert(mode)
    if max(image.size) > 2 * size:
        scale = 2 * size / max(image.size)
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.LANCZOS)
    array = np.asarray(image, dtype=np.float64)
    return array[..., None] if array.ndim == 2 else array


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-20)


# ------------------------------------------------------------------------------------------ carrying a look over


def _factor(material: Any, name: str, default: Any) -> Any:
    value = getattr(material, name, None)
    return default if value is None else value


def _flat_colour(material: Any) -> np.ndarray:
    """0..255 RGB of an untextured material: its base colour factor, a simple material's colour, or clay."""
    if getattr(material, "baseColorFactor", None) is not None:
        return _rgb_factor(material) * 255.0
    main = getattr(material, "main_color", None)
    return np.asarray(CLAY_RGBA[:3] if main is None else np.asarray(main)[:3], dtype=np.float64)


def _rgb_factor(material: Any) -> np.ndarray:
    """baseColorFactor (or a simple material's diffuse colour) as 0..1 RGB."""
    factor = getattr(material, "baseColorFactor", None)
    if factor is None:
        return np.ones(3)
    factor = np.asarray(factor, dtype=np.float64).reshape(-1)[:3]
    return factor / 255.0 if factor.dtype.kind in "iu" or factor.max() > 1.0 else factor


def _carried_maps(model: LoadedModel, layout: _Layout, texels: _Texels, notes: list[str]) -> dict[str, Image.Image]:
    """The input's look on the new layout: base colour always (texture, vertex colours or a flat colour), plus
    metallic/roughness and normal maps when the input had them."""
    mesh = model.mesh
    visual, faces = mesh.visual, np.asarray(mesh.faces, dtype=np.int64)
    material = getattr(visual, "material", None)
    input_faces = faces[texels.face]
    old_uv = None
    if model.has_uv:
        old_uv = np.einsum("pk,pkc->pc", texels.bary, np.asarray(visual.uv, dtype=np.float64)[input_faces])
    size = texels.size
    images: dict[str, Image.Image] = {}

    base = model.base_color if old_uv is not None else None
    kind = getattr(visual, "kind", None)
    if base is not None:
        rgb = _sample(_array(base, "RGB", size), old_uv) * _rgb_factor(material)
    elif kind == "vertex":
        colours = np.asarray(visual.vertex_colors, dtype=np.float64)[:, :3]
        rgb = np.einsum("pk,pkc->pc", texels.bary, colours[input_faces])
    elif kind == "face":
        rgb = np.asarray(visual.face_colors, dtype=np.float64)[texels.face, :3]
    else:
        rgb = np.broadcast_to(_flat_colour(material), (len(texels.face), 3))
    images["base_color"] = texels.image(rgb)

    if material is None:
        return images
    mr = getattr(material, "metallicRoughnessTexture", None) if old_uv is not None else None
    metallic_f = float(_factor(material, "metallicFactor", 1.0))
    roughness_f = float(_factor(material, "roughnessFactor", 1.0))
    has_factors = getattr(material, "metallicFactor", None) is not None or (
        getattr(material, "roughnessFactor", None) is not None
    )
    if mr is not None:
        packed = _sample(_array(mr, "RGB", size), old_uv)
        metallic, roughness = packed[:, 2] * metallic_f, packed[:, 1] * roughness_f
        images.update(_mr_images(texels.image(metallic, "L"), texels.image(roughness, "L")))
    elif has_factors and (metallic_f, roughness_f) != (METALLIC, ROUGHNESS):
        # Factors only: the writers' own constant factors would change the look, so write them as flat maps.
        images.update(_mr_images(_flat(size, metallic_f * 255), _flat(size, roughness_f * 255)))
    normal_map = getattr(material, "normalTexture", None)
    if normal_map is not None and old_uv is not None:
        images["normal"] = _carried_normals(mesh, layout, texels, old_uv, _array(normal_map, "RGB", size))
    extras = (getattr(material, "emissiveTexture", None), getattr(material, "occlusionTexture", None))
    if any(image is not None for image in extras):
        notes.append("the model's emissive and occlusion maps are not carried over to the new UV layout")
    return images


def _carried_normals(
    mesh: trimesh.Trimesh, layout: _Layout, texels: _Texels, old_uv: np.ndarray, old_map: np.ndarray
) -> Image.Image:
    """Re-encode a tangent-space normal map for the new layout: decode each texel in the input's tangent frame
    (from its UVs), re-encode in the new one (`texture.vertex_tangents`' convention on both sides)."""
    vertices, faces = np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces, dtype=np.int64)
    normals = _input_normals(mesh)
    source = np.full(len(vertices), -1, dtype=np.int64)
    old = texture.vertex_tangents(
        texture.UVMesh(vertices, faces, np.asarray(mesh.visual.uv, dtype=np.float64), normals, source)
    )
    enc = _sample(old_map, old_uv) / 255.0 * 2.0 - 1.0
    enc[:, 1] *= old[faces[texels.face, 0], 3]
    n_lo = _unit(texels.interp(faces, normals))
    t = texels.interp(faces, old[:, :3])
    t = _unit(t - n_lo * np.einsum("ij,ij->i", t, n_lo)[:, None])
    world = _unit(enc[:, :1] * t + enc[:, 1:2] * np.cross(n_lo, t) + enc[:, 2:3] * n_lo)
    tangents = _tangents(layout)
    return _encode_normals(world, layout, texels, tangents)


def _tangents(layout: _Layout) -> np.ndarray:
    source = np.full(len(layout.vertices), -1, dtype=np.int64)
    return texture.vertex_tangents(texture.UVMesh(layout.vertices, layout.faces, layout.uv, layout.normals, source))


def _encode_normals(world: np.ndarray, layout: _Layout, texels: _Texels, tangents: np.ndarray) -> Image.Image:
    n = _unit(texels.interp(layout.faces, layout.normals))
    t = texels.interp(layout.faces, tangents[:, :3])
    t = _unit(t - n * np.einsum("ij,ij->i", t, n)[:, None])
    b = np.cross(n, t) * tangents[layout.faces[texels.face, 0], 3][:, None]
    local = np.column_stack(
        [np.einsum("ij,ij->i", world, t), np.einsum("ij,ij->i", world, b), np.einsum("ij,ij->i", world, n)]
    )
    local[:, 2] = np.maximum(local[:, 2], 0.05)
    return texels.image((_unit(local) * 0.5 + 0.5) * 255.0)


def _flat(size: int, value: float) -> Image.Image:
    return Image.new("L", (size, size), int(np.clip(round(value), 0, 255)))


def _mr_images(metallic: Image.Image, roughness: Image.Image) -> dict[str, Image.Image]:
    """Meshy's separate metallic and roughness maps plus glTF's packed image (G = roughness, B = metallic)."""
    packed = Image.merge("RGB", (Image.new("L", metallic.size, 0), roughness, metallic))
    return {"metallic": metallic, "roughness": roughness, "metallic_roughness": packed}


# --------------------------------------------------------------------------------------------------- painting


def prompt_words(text: str | None) -> list[str]:
    """Lower-case words (any script: a prompt in Chinese still gets its own palette from its hash)."""
    return re.findall(r"\w+", (text or "").lower())


def _prompt_colours(points: np.ndarray, bounds: np.ndarray, words: list[str], seed: int) -> np.ndarray:
    """`procedural_paint.paint` per texel; the model's bounding box goes along so the pattern is laid out over
    the whole model exactly as for its vertices."""
    rgb, _ = procedural_paint.paint(np.vstack([points, bounds]), words, seed)
    return rgb[: len(points)].astype(np.float64)


def _waves(points: np.ndarray, rng: np.random.Generator, freq: float, count: int = 6) -> np.ndarray:
    """Smooth seeded noise in [-1, 1]: a sum of plane waves."""
    dirs = _unit(rng.normal(size=(count, 3)))
    k = dirs * (freq * rng.uniform(0.6, 1.4, size=(count, 1)) * 2 * np.pi)
    phase = rng.uniform(0, 2 * np.pi, size=count)
    amp = rng.uniform(0.5, 1.0, size=count)
    return (np.sin(points @ k.T + phase) @ amp) / amp.sum()


def _style_lut(path: Path) -> np.ndarray:
    """(LUT_SIZE, 3) 0..255 colours of the style image's foreground by luminance quantile (a smoothed,
    sorted histogram). The background is dropped when the image has alpha, or when its border is one flat
    colour and something else covers at least a tenth of it."""
    try:
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened)
            image.draft("RGB", (STYLE_SAMPLE_SIZE, STYLE_SAMPLE_SIZE))
            image = image.convert("RGBA")
            image.thumbnail((STYLE_SAMPLE_SIZE, STYLE_SAMPLE_SIZE))
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InputRejected("the style image could not be read") from exc
    grid = np.asarray(image, dtype=np.float64)
    rgb, alpha = grid[..., :3].reshape(-1, 3), grid[..., 3].reshape(-1)
    keep = alpha >= 128
    if keep.sum() < 16:
        keep = np.ones(len(rgb), dtype=bool)
    elif keep.all():
        border = np.concatenate([grid[0, :, :3], grid[-1, :, :3], grid[:, 0, :3], grid[:, -1, :3]])
        if np.all(border.std(axis=0) < 10.0):
            foreground = np.linalg.norm(rgb - np.median(border, axis=0), axis=1) > 40.0
            if foreground.mean() >= 0.1:
                keep = foreground
    pixels = rgb[keep]
    ordered = pixels[np.argsort(pixels @ LUMA, kind="stable")]
    cumulative = np.vstack([np.zeros(3), np.cumsum(ordered, axis=0)])
    n = len(ordered)
    half = max(1, int(0.03 * n))
    centre = ((np.arange(LUT_SIZE) + 0.5) / LUT_SIZE * n).astype(np.int64)
    lo, hi = np.clip(centre - half, 0, n - 1), np.clip(centre + half + 1, 1, n)
    return (cumulative[hi] - cumulative[lo]) / (hi - lo)[:, None]


def _style_colours(points: np.ndarray, bounds: np.ndarray, lut: np.ndarray, seed: int) -> np.ndarray:
    """Map a smooth field over the surface through the style LUT by rank (histogram transfer)."""
    lo, hi = bounds
    p = (points - lo) / max(float(np.max(hi - lo)), 1e-9)
    height = (points[:, 1] - lo[1]) / max(float(hi[1] - lo[1]), 1e-9)
    rng = np.random.default_rng(seed)
    field = 0.25 * height + 0.5 * _waves(p, rng, 1.5) + 0.25 * _waves(p, rng, 5.0, 8)
    rank = np.empty(len(field))
    rank[np.argsort(field, kind="stable")] = np.linspace(0.0, 1.0, len(field))
    position = rank * (LUT_SIZE - 1)
    i0 = np.floor(position).astype(np.int64)
    i1 = np.minimum(i0 + 1, LUT_SIZE - 1)
    f = (position - i0)[:, None]
    return lut[i0] * (1 - f) + lut[i1] * f


def _material_values(words: list[str]) -> tuple[float, float]:
    return next((MATERIAL_WORDS[w] for w in words if w in MATERIAL_WORDS), (METALLIC, ROUGHNESS))


def _painted_pbr(base: Image.Image, words: list[str], texels: _Texels) -> dict[str, Image.Image]:
    """Metallic and roughness from the material words (roughness a little higher in darker paint) and a normal
    map from the base colour's luminance as a height field. The bump is built in texture space, where
    tangent-space normals live (x along +u, y along +v), so it holds for any layout whose tangents the GLB
    carries."""
    size = base.size[0]
    metallic, roughness = _material_values(words)
    lum = np.asarray(base.convert("RGB"), dtype=np.float64) @ LUMA / 255.0
    rough = np.clip(roughness + 0.15 * (np.mean(lum) - lum), 0.05, 1.0)
    maps = _mr_images(_flat(size, metallic * 255), Image.fromarray(np.rint(rough * 255).astype(np.uint8), "L"))
    d_row, d_col = np.gradient(lum)
    strength = BUMP_STRENGTH * size / TEXTURE_SIZE
    # Tangent space: x along +u (columns), y along +v, which runs up the image (against the rows).
    local = _unit(np.stack([-strength * d_col, strength * d_row, np.ones_like(lum)], axis=-1))
    if texels.fill is not None:
        # Gutters copy their nearest chart texel's normal (their own gradients would cross chart borders).
        local = local[texels.fill[0], texels.fill[1]]
    maps["normal"] = Image.fromarray(np.clip(np.rint((local * 0.5 + 0.5) * 255), 0, 255).astype(np.uint8), "RGB")
    return maps


# ------------------------------------------------------------------------------------------------- outputs


def _write(
    out_dir: Path,
    layout: _Layout,
    images: dict[str, Image.Image],
    formats: list[str],
    params: Mapping[str, Any],
    tangents: np.ndarray | None,
) -> tuple[dict[str, str], dict[str, str], str, str | None]:
    """Textures, every requested model format and the thumbnails, through the pipeline's writer. Returns (model
    files, texture files, thumbnail, alpha thumbnail)."""
    surface = Surface.from_triangles(
        layout.vertices,
        layout.normals,
        layout.faces,
        uv=layout.uv,
        tangents=tangents if "normal" in images else None,
    )
    written = write_surface(surface, images, {"alpha_thumbnail": params.get("alpha_thumbnail")}, out_dir, formats)
    return written.model_files, written.texture_files[0], written.thumbnail, written.alpha_thumbnail


def _reporter(progress: Progress | None) -> Progress:
    return progress or (lambda _fraction: None)


def _flag(params: Mapping[str, Any], name: str, default: bool) -> bool:
    value = params.get(name)
    return default if value is None else bool(value)


# ------------------------------------------------------------------------------------------------ operations


def uv_unwrap(model: LoadedModel, params: Mapping[str, Any], out_dir: Path, progress: Progress | None) -> OpResult:
    """Meshy /uv-unwrap: `model.glb` with a fresh non-overlapping xatlas atlas over the same faces.

    At most `UV_UNWRAP_MAX_FACES` (44,000) faces, else `InputRejected`. The input's base-colour texture (times
    its factor), or its vertex/face colours, or its flat colour is baked onto the new atlas (1024², 2048² with
    `hd_texture`) as `texture_0.png`; metallicRoughness and normal maps come along when the input had them
    (`texture_0_metallic/_roughness/_normal.png`). Writes `preview.png` (and `preview_alpha.png` when
    `alpha_thumbnail`). `extra["notes"]` lists what could not be carried over.
    """
    if model.source_format != "glb":  # the API checks the URL; the content decides
        raise InputRejected(f"uv-unwrap takes a GLB model, not {model.source_format.upper()}")
    report = _reporter(progress)
    faces = len(model.mesh.faces)
    if faces > UV_UNWRAP_MAX_FACES:
        raise InputRejected(f"the model has {faces} faces; UV unwrapping accepts at most {UV_UNWRAP_MAX_FACES}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report(0.0)
    size = HD_TEXTURE_SIZE if params.get("hd_texture") else TEXTURE_SIZE
    layout = _fresh_layout(model.mesh)
    report(0.4)
    texels = _texels(layout, size)
    report(0.5)
    notes: list[str] = []
    images = _carried_maps(model, layout, texels, notes)
    tangents = _tangents(layout) if "normal" in images else None
    report(0.75)
    model_files, names, thumb, alpha = _write(out_dir, layout, images, ["glb"], params, tangents)
    report(1.0)
    return OpResult(model_files, [names], thumb, alpha, {"notes": notes} if notes else {})


def retexture(
    model: LoadedModel,
    params: Mapping[str, Any],
    out_dir: Path,
    progress: Progress | None,
    style_image: Path | None = None,
) -> OpResult:
    """Meshy /retexture: the same geometry with a new texture following `style_image` or `text_style_prompt`.

    params: text_style_prompt (ignored when `style_image` is given: the image wins, as on Meshy),
    enable_original_uv (default false; when true, paint in the model's own UVs; without UVs `InputRejected` with code
    `model_missing_uv`, with UVs covering under 5 % of the unit square `model_insufficient_uv`; otherwise a
    fresh xatlas atlas), enable_pbr (also metallic, roughness and normal maps), hd_texture (2048² instead of
    1024²), target_formats (default glb, obj, fbx, stl, usdz), alpha_thumbnail, seed (optional, default 0).
    """
    prompt = params.get("text_style_prompt")
    if style_image is None and not (prompt and str(prompt).strip()):
        raise InputRejected("a text_style_prompt or an image_style_url is required")
    return _paint(
        model,
        out_dir,
        progress,
        words=prompt_words(prompt),
        style_image=style_image,
        original_uv=_flag(params, "enable_original_uv", False),
        pbr=_flag(params, "enable_pbr", False),
        size=HD_TEXTURE_SIZE if params.get("hd_texture") else TEXTURE_SIZE,
        formats=requested_formats(params.get("target_formats")),
        params=params,
        notes=[],
    )


def text_to_texture(
    model: LoadedModel, params: Mapping[str, Any], out_dir: Path, progress: Progress | None
) -> OpResult:
    """Meshy's legacy /text-to-texture: `retexture`'s painting with `style_prompt` + `object_prompt` as the
    prompt (style first, so its colour and material words lead), words of `negative_prompt` removed.

    enable_original_uv and enable_pbr default to true; resolution 1024 | 2048 | 4096 (default 1024), capped at
    2048 on this CPU baker (`extra["notes"]` says so); art_style is accepted and has no effect. Writes glb,
    fbx and usdz.
    """
    text = f"{params.get('style_prompt') or ''} {params.get('object_prompt') or ''}"
    if not text.strip():
        raise InputRejected("object_prompt and style_prompt are required")
    unwanted = set(prompt_words(params.get("negative_prompt")))
    words = [w for w in prompt_words(text) if w not in unwanted]
    try:
        resolution = int(params.get("resolution") or TEXTURE_SIZE)
    except (TypeError, ValueError):
        resolution = TEXTURE_SIZE
    size = MAX_TEXTURE_SIZE if resolution >= MAX_TEXTURE_SIZE else TEXTURE_SIZE
    notes = []
    if resolution > MAX_TEXTURE_SIZE:
        notes.append(f"the texture is {size}x{size}: {resolution}x{resolution} is not available on this server")
    return _paint(
        model,
        out_dir,
        progress,
        words=words,
        style_image=None,
        original_uv=_flag(params, "enable_original_uv", True),
        pbr=_flag(params, "enable_pbr", True),
        size=size,
        formats=list(TEXT_TO_TEXTURE_FORMATS),
        params=params,
        notes=notes,
    )


def _layout_for(model: LoadedModel, original_uv: bool, notes: list[str]) -> _Layout:
    coverage = uv_coverage(model.mesh) if model.has_uv else 0.0
    if original_uv:
        if not model.has_uv:
            raise InputRejected("enable_original_uv needs a model with UVs; this one has none", code="model_missing_uv")
        if coverage < MIN_UV_COVERAGE:
            raise InputRejected(
                f"the model's UVs cover {coverage:.1%} of the texture; enable_original_uv needs at least "
                f"{MIN_UV_COVERAGE:.0%}",
                code="model_insufficient_uv",
            )
        return _original_layout(model.mesh)
    if len(model.mesh.faces) <= UV_UNWRAP_MAX_FACES:
        return _fresh_layout(model.mesh)
    if model.has_uv and coverage >= MIN_UV_COVERAGE:
        notes.append(f"the model's own UVs were kept: over {UV_UNWRAP_MAX_FACES} faces are not unwrapped afresh")
        return _original_layout(model.mesh)
    notes.append(f"over {UV_UNWRAP_MAX_FACES} faces without usable UVs: the surface was resampled to unwrap it")
    return _resampled_layout(model.mesh)


def _paint(
    model: LoadedModel,
    out_dir: Path,
    progress: Progress | None,
    *,
    words: list[str],
    style_image: Path | None,
    original_uv: bool,
    pbr: bool,
    size: int,
    formats: list[str],
    params: Mapping[str, Any],
    notes: list[str],
) -> OpResult:
    report = _reporter(progress)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report(0.0)
    lut, style_seed = None, 0
    seed = int(params.get("seed") or 0)
    if style_image is not None:
        lut = _style_lut(Path(style_image))
        digest = hashlib.sha256(Path(style_image).read_bytes() + f"|{seed}".encode()).digest()
        style_seed = int.from_bytes(digest[:8], "little")
    layout = _layout_for(model, original_uv, notes)
    report(0.3)
    texels = _texels(layout, size)
    report(0.45)
    points = texels.interp(layout.faces, layout.vertices)
    bounds = np.stack([layout.vertices.min(axis=0), layout.vertices.max(axis=0)])
    if lut is not None:
        rgb = _style_colours(points, bounds, lut, style_seed)
        words = []
    else:
        rgb = _prompt_colours(points, bounds, words, seed)
    images = {"base_color": texels.image(rgb)}
    report(0.6)
    tangents = None
    if pbr:
        tangents = _tangents(layout)
        images.update(_painted_pbr(images["base_color"], words, texels))
    report(0.7)
    model_files, names, thumb, alpha = _write(out_dir, layout, images, formats, params, tangents)
    report(1.0)
    extra: dict[str, Any] = {"texture_size": size}
    if notes:
        extra["notes"] = notes
    return OpResult(model_files, [names], thumb, alpha, extra)
