"""UV unwrapping (xatlas), tangents, and baking vertex colours and high-res normals into texture maps.

xatlas is single-threaded, holds the GIL and is superlinear: 30k faces took 3.5-4.7 s with default
options, almost all of it growing charts (`addFaceToChart` and the chart overlap checks in a perf profile),
not packing. Capping the chart area at 1/`CHART_AREA_DIVISOR` of the surface keeps chart growth cheap:
~1 s at 30k with about the same chart count and stretch (utilisation 0.66 -> 0.6). Small meshes are fast
anyway, so there the cap is loosened to keep at least `chart_faces` faces per chart: many small charts
mean many seams (and for quad topology, seams through quads split them). Triangle meshes above
`UNWRAP_BUDGET` faces are unwrapped at a quarter (or a sixteenth...) of their face count and then
midpoint-subdivided with their UVs back to the requested count, snapping the new vertices onto the
full-resolution surface. Quad meshes are unwrapped as they are (decimating would destroy the quads).
UVs use trimesh's convention (v = 0 at the bottom row of the image), as OBJ and USD do; the GLB writer flips.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xatlas
from PIL import Image
from scipy import ndimage
from scipy.spatial import cKDTree

from inference.pipeline.clean import safe_vertex_normals
from inference.pipeline.raster import rasterize
from inference.pipeline.remesh import decimate, subdivide_until
from inference.pipeline.surface import METALLIC, ROUGHNESS

UNWRAP_BUDGET = 30_000
CHART_AREA_DIVISOR = 60
# Faces per chart at least (cap loosened below 60x this many faces). Quads: 2,000 quads lost 12 % of their
# quads to seams at 1/60 and 4 % at 1/3.
CHART_FACES_TRIANGLES, CHART_FACES_QUADS = 500, 1500
TEXTURE_SIZE = 1024
FLAT_NORMAL = (128, 128, 255)


@dataclass(frozen=True)
class UVMesh:
    """A mesh split along UV seams: every array is per split vertex; `source` maps to the input vertex
    (or -1 for vertices created by subdivision). `faces` keep the input face order."""

    vertices: np.ndarray
    faces: np.ndarray
    uv: np.ndarray
    normals: np.ndarray
    source: np.ndarray


def _xatlas(
    vertices: np.ndarray, faces: np.ndarray, chart_faces: int = CHART_FACES_TRIANGLES
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    atlas = xatlas.Atlas()
    atlas.add_mesh(vertices.astype(np.float32), faces.astype(np.uint32))
    corners = vertices[faces]
    area = 0.5 * np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1)
    charts = xatlas.ChartOptions()
    charts.max_chart_area = float(area.sum()) / float(np.clip(len(faces) / chart_faces, 1, CHART_AREA_DIVISOR))
    pack = xatlas.PackOptions()
    # Pack for the texture we bake, with a 2-texel gutter so bilinear filtering does not mix charts.
    pack.resolution = TEXTURE_SIZE
    pack.padding = 2
    pack.bilinear = True
    atlas.generate(chart_options=charts, pack_options=pack)
    vmapping, indices, uvs = atlas[0]
    return vmapping.astype(np.int64), indices.astype(np.int64), uvs.astype(np.float64)


def unwrap(vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray, budget: int | None = UNWRAP_BUDGET) -> UVMesh:
    """UV-unwrap a welded mesh; the result has the same face count (to within rounding above `budget`).

    `budget=None` (quad meshes, as triangle pairs) always unwraps at full resolution, keeps faces one to
    one with the input and uses larger charts.
    """
    if budget is None or len(faces) <= budget:
        chart_faces = CHART_FACES_QUADS if budget is None else CHART_FACES_TRIANGLES
        vmap, new_faces, uv = _xatlas(vertices, faces, chart_faces)
        return UVMesh(vertices[vmap], new_faces, uv, normals[vmap], vmap)
    passes = int(np.ceil(np.log(len(faces) / budget) / np.log(4)))
    low_v, low_f = decimate(vertices, faces, max(4, round(len(faces) / 4**passes)))
    vmap, low_faces, low_uv = _xatlas(low_v, low_f)
    v, f, attrs = subdivide_until(low_v[vmap], low_faces, len(low_faces) * 4**passes, {"uv": low_uv})
    v, n = snap_to_surface(v, vertices, normals)
    return UVMesh(v, f, attrs["uv"], n, np.full(len(v), -1, dtype=np.int64))


def snap_to_surface(
    points: np.ndarray, ref_vertices: np.ndarray, ref_normals: np.ndarray, symmetric: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Pull subdivided points onto a finer surface: move each along the normal of the nearest reference
    vertex onto that vertex's tangent plane. Returns the points and those normals (smooth, and the same
    for seam twins, which share a position).

    With `symmetric` (both meshes mirror-symmetric across x = 0), points on the plane stay on it: their
    nearest reference vertex may be either of two mirror twins, whose normal leans to one side.
    """
    nearest = cKDTree(ref_vertices).query(points, workers=-1)[1]
    n = ref_normals[nearest]
    snapped = points + n * np.einsum("ij,ij->i", ref_vertices[nearest] - points, n)[:, None]
    if symmetric:
        on_plane = points[:, 0] == 0
        snapped[on_plane, 0] = 0.0
        n = n.copy()
        n[on_plane, 0] = 0.0
        n[np.linalg.norm(n, axis=1) < 1e-6] = (0.0, 1.0, 0.0)  # glTF needs unit normals
        n = _unit(n)
    return snapped, n


def textured_mesh(vertices: np.ndarray, faces: np.ndarray, budget: int | None = UNWRAP_BUDGET) -> UVMesh:
    """Unwrap a welded mesh with seam-free normals (computed before splitting, then copied to the twins)."""
    return unwrap(vertices, faces, safe_vertex_normals(vertices, faces), budget)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-20)


def _any_perpendicular(n: np.ndarray) -> np.ndarray:
    helper = np.where(np.abs(n[:, :1]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]])
    return _unit(np.cross(n, helper))


def vertex_tangents(uvmesh: UVMesh) -> np.ndarray:
    """glTF TANGENT (V, 4): unit xyz along +u, orthogonal to the normal; w = +-1 so that
    cross(normal, tangent) * w points along +v (trimesh's v, i.e. up in the image), as glTF viewers expect.

    xatlas mirrors about half of its charts (u runs the other way round the face), so w = -1 is common and
    matters: it flips the green channel's direction. Per face dP/du and dP/dv, area-weighted onto the
    vertices (Lengyel's method). Faces with a degenerate UV
    triangle (xatlas leaves a few slivers at (0, 0)) contribute nothing; vertices left without a tangent
    get any vector perpendicular to their normal.
    """
    v, f, uv, n = uvmesh.vertices, uvmesh.faces, uvmesh.uv, uvmesh.normals
    e1, e2 = v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]
    d1, d2 = uv[f[:, 1]] - uv[f[:, 0]], uv[f[:, 2]] - uv[f[:, 0]]
    det = d1[:, 0] * d2[:, 1] - d2[:, 0] * d1[:, 1]
    ok = np.abs(det) > 1e-14
    inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)[:, None]
    area = 0.5 * np.linalg.norm(np.cross(e1, e2), axis=1)[:, None]
    t_face = _unit((e1 * d2[:, 1:] - e2 * d1[:, 1:]) * inv) * area
    b_face = _unit((e2 * d1[:, :1] - e1 * d2[:, :1]) * inv) * area
    t_sum, b_sum = np.zeros_like(v), np.zeros_like(v)
    for k in range(3):
        for c in range(3):
            t_sum[:, c] += np.bincount(f[:, k], t_face[:, c], minlength=len(v))
            b_sum[:, c] += np.bincount(f[:, k], b_face[:, c], minlength=len(v))
    t = t_sum - n * np.einsum("ij,ij->i", t_sum, n)[:, None]
    length = np.linalg.norm(t, axis=1)
    bad = length < 1e-12
    t = np.where(bad[:, None], _any_perpendicular(n), t / np.maximum(length, 1e-20)[:, None])
    w = np.where(np.einsum("ij,ij->i", np.cross(n, t), b_sum) < 0, -1.0, 1.0)
    return np.column_stack([t, w])


@dataclass(frozen=True)
class BakedMaps:
    base_color: Image.Image
    normal: Image.Image | None


def bake(
    uvmesh: UVMesh,
    ref_vertices: np.ndarray,
    ref_colours: np.ndarray,
    *,
    normal_source: tuple[np.ndarray, np.ndarray] | None = None,
    tangents: np.ndarray | None = None,
    same_vertices: bool = False,
    size: int = TEXTURE_SIZE,
) -> BakedMaps:
    """Bake reference vertex colours (V, 3 uint8) and, given `normal_source` (vertices, unit normals of the
    high-res surface; often the same vertices) and `tangents`, a tangent-space normal map into `size`² images.

    With `same_vertices` (the UV mesh was unwrapped from the reference mesh itself, so `uvmesh.source`
    indexes it) colours are interpolated exactly across each face and the normal map is flat. Otherwise
    each texel blends the 3 nearest reference vertices (inverse distance): per texel when the reference is
    much denser than the UV mesh (keeps its detail), else per UV vertex. Reference normals facing away from
    the low-res normal (the far side of a thin part) are ignored.
    """
    tri = np.stack([uvmesh.uv[:, 0] * size, (1.0 - uvmesh.uv[:, 1]) * size], axis=1)[uvmesh.faces]
    face_img, bary_img = rasterize(tri, size, size)
    covered = face_img >= 0
    corners = uvmesh.faces[face_img[covered]]
    bary = bary_img[covered].astype(np.float64)

    def interp(per_vertex: np.ndarray) -> np.ndarray:
        return np.einsum("pk,pkc->pc", bary, per_vertex[corners])

    colours = np.asarray(ref_colours, dtype=np.float64)
    want_normals = normal_source is not None and tangents is not None
    source = normal_source if want_normals else None
    texel_normal = None
    if same_vertices and np.all(uvmesh.source >= 0):
        texel_rgb = interp(colours[uvmesh.source])
    elif len(ref_vertices) > 2 * len(uvmesh.vertices):
        lo_normal = _unit(interp(uvmesh.normals))
        texel_rgb, texel_normal = _sample(ref_vertices, colours, source, interp(uvmesh.vertices), lo_normal)
    else:
        vertex_rgb, vertex_normal = _sample(ref_vertices, colours, source, uvmesh.vertices, uvmesh.normals)
        texel_rgb = interp(vertex_rgb)
        texel_normal = None if vertex_normal is None else interp(vertex_normal)
    # Dilate: every empty texel copies its nearest baked texel, so mip-mapping and bilinear filtering near
    # chart borders never pull in black (or a wrong normal).
    fill = None
    if not covered.all():
        _, fill = ndimage.distance_transform_edt(~covered, return_indices=True)
    base = _image(texel_rgb, covered, fill, size)
    normal = None
    if want_normals:
        if texel_normal is None:
            normal = Image.new("RGB", (size, size), FLAT_NORMAL)
        else:
            encoded = _tangent_space(texel_normal, interp(uvmesh.normals), interp(tangents[:, :3]))
            w = tangents[corners[:, 0], 3]
            encoded[:, 1] *= w
            normal = _image((encoded * 0.5 + 0.5) * 255.0, covered, fill, size)
    return BakedMaps(base, normal)


def colours_at(
    uvmesh: UVMesh, ref_vertices: np.ndarray, ref_colours: np.ndarray, same_vertices: bool = False
) -> np.ndarray:
    """Reference colours (V, 3, 0..255) at the UV mesh's vertices, blended like `bake` does per UV vertex."""
    colours = np.asarray(ref_colours, dtype=np.float64)
    if same_vertices and np.all(uvmesh.source >= 0):
        return colours[uvmesh.source]
    return _sample(ref_vertices, colours, None, uvmesh.vertices, uvmesh.normals)[0]


def _neighbours(points: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the 3 nearest points and their inverse-distance weights (not normalised)."""
    dist, idx = cKDTree(points).query(queries, k=min(3, len(points)), workers=-1)
    if dist.ndim == 1:
        dist, idx = dist[:, None], idx[:, None]
    return idx, 1.0 / np.maximum(dist, 1e-9)


def _sample(
    points: np.ndarray,
    colours: np.ndarray,
    normal_source: tuple[np.ndarray, np.ndarray] | None,
    queries: np.ndarray,
    lo_normal: np.ndarray,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Inverse-distance blends at `queries` of the 3 nearest reference colours and, if asked, normals.

    One KD-tree query serves both when the normals belong to the same vertices (the usual case).
    """
    idx, weights = _neighbours(points, queries)
    rgb = np.einsum("pk,pkc->pc", weights / weights.sum(axis=1, keepdims=True), colours[idx])
    if normal_source is None:
        return rgb, None
    normal_points, normals = normal_source
    if normal_points is not points:
        idx, weights = _neighbours(normal_points, queries)
    candidates = normals[idx]
    weights = weights * (np.einsum("pkc,pc->pk", candidates, lo_normal) > 0.2)
    total = weights.sum(axis=1, keepdims=True)
    blended = np.einsum("pk,pkc->pc", weights / np.maximum(total, 1e-20), candidates)
    return rgb, _unit(np.where(total > 0, blended, lo_normal))


def _tangent_space(normal: np.ndarray, lo_normal: np.ndarray, tangent: np.ndarray) -> np.ndarray:
    """(x, y, z) of `normal` in the interpolated (tangent, normal x tangent, normal) frame; y before the
    handedness sign. The frame is orthonormalised per texel, as glTF viewers do per fragment."""
    n = _unit(lo_normal)
    t = _unit(tangent - n * np.einsum("ij,ij->i", tangent, n)[:, None])
    b = np.cross(n, t)
    local = np.stack([np.einsum("ij,ij->i", normal, t), np.einsum("ij,ij->i", normal, b)], axis=1)
    z = np.maximum(np.einsum("ij,ij->i", normal, n), 0.05)
    return _unit(np.column_stack([local, z]))


def _image(texels: np.ndarray, covered: np.ndarray, fill: np.ndarray | None, size: int) -> Image.Image:
    image = np.zeros((size, size, 3), dtype=np.float64)
    image[covered] = texels
    if fill is not None:
        image = image[fill[0], fill[1]]
    return Image.fromarray(np.clip(np.rint(image), 0, 255).astype(np.uint8), "RGB")


def pbr_maps(size: int = TEXTURE_SIZE) -> dict[str, Image.Image]:
    """Constant metallic and roughness maps (no material model yet) and glTF's packed metallicRoughness
    image (G = roughness, B = metallic)."""
    metallic = Image.new("L", (size, size), int(round(METALLIC * 255)))
    roughness = Image.new("L", (size, size), int(round(ROUGHNESS * 255)))
    packed = Image.new("RGB", (size, size), (0, int(round(ROUGHNESS * 255)), int(round(METALLIC * 255))))
    return {"metallic": metallic, "roughness": roughness, "metallic_roughness": packed}
