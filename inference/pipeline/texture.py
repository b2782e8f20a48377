"""UV unwrapping (xatlas), tangents, and baking vertex colours, high-res normals or another textured surface's
maps (`TexturedSource`, for remeshing a caller's textured model) into texture maps.

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

import copy
from dataclasses import dataclass

import numpy as np
import xatlas
from PIL import Image
from scipy import ndimage
from scipy.spatial import cKDTree

from inference.pipeline.clean import is_closed, safe_vertex_normals, signed_volume
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
class Texels:
    """The texels a UV mesh covers in a `size`² map: `covered` (size, size) mask, and per covered texel (row-major)
    its face's `corners` (N, 3) and `bary`centrics (N, 3); `fill` the nearest covered texel of every texel (None
    when all are covered), for dilation: every empty texel copies its nearest baked texel, so mip-mapping and
    bilinear filtering near chart borders never pull in black (or a wrong normal)."""

    covered: np.ndarray
    corners: np.ndarray
    bary: np.ndarray
    fill: np.ndarray | None
    size: int

    @classmethod
    def of(cls, uvmesh: UVMesh, size: int) -> Texels:
        tri = np.stack([uvmesh.uv[:, 0] * size, (1.0 - uvmesh.uv[:, 1]) * size], axis=1)[uvmesh.faces]
        face_img, bary_img = rasterize(tri, size, size)
        covered = face_img >= 0
        fill = None
        if not covered.all():
            _, fill = ndimage.distance_transform_edt(~covered, return_indices=True)
        corners = uvmesh.faces[face_img[covered]]
        return cls(covered, corners, bary_img[covered].astype(np.float64), fill, size)

    def interp(self, per_vertex: np.ndarray) -> np.ndarray:
        """A per-vertex attribute interpolated at every covered texel."""
        return np.einsum("pk,pkc->pc", self.bary, per_vertex[self.corners])

    def image(self, texels: np.ndarray) -> Image.Image:
        return _image(texels, self.covered, self.fill, self.size)


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
    texels = Texels.of(uvmesh, size)
    covered, corners, interp = texels.covered, texels.corners, texels.interp

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
    fill = texels.fill
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
    """An RGB image ((N, 3) texels) or a grey one ((N,) texels), 0..255, dilated with `fill`."""
    grey = texels.ndim == 1
    image = np.zeros((size, size) if grey else (size, size, 3), dtype=np.float64)
    image[covered] = texels
    if fill is not None:
        image = image[fill[0], fill[1]]
    return Image.fromarray(np.clip(np.rint(image), 0, 255).astype(np.uint8), "L" if grey else "RGB")


def pbr_maps(size: int = TEXTURE_SIZE) -> dict[str, Image.Image]:
    """Constant metallic and roughness maps (no material model yet) and glTF's packed metallicRoughness
    image (G = roughness, B = metallic)."""
    metallic = Image.new("L", (size, size), int(round(METALLIC * 255)))
    roughness = Image.new("L", (size, size), int(round(ROUGHNESS * 255)))
    packed = Image.new("RGB", (size, size), (0, int(round(ROUGHNESS * 255)), int(round(METALLIC * 255))))
    return {"metallic": metallic, "roughness": roughness, "metallic_roughness": packed}


# Re-baking an input model's own textures onto a new surface (remesh of a textured model).
# Surface samples the nearest-sample search draws on: every face centroid, plus random points on the faces
# larger than 1/SOURCE_SAMPLES of the surface (about SOURCE_SAMPLES in all when all faces are that large).
SOURCE_SAMPLES = 200_000
# Candidate source faces per texel (the faces of this many nearest samples), of which the closest wins.
SOURCE_CANDIDATES = 6
_QUERY_CHUNK = 65_536


@dataclass(frozen=True)
class SourceMaps:
    """A textured input's look as uint8 image arrays (row 0 is the top; trimesh's UVs put v = 0 at the bottom row).

    `base_color` (H, W, 3) already multiplied by the base colour factor; `metallic` and `roughness` (H, W) with
    their factors applied, or None when the input had neither map nor factors; `normal` (H, W, 3) the
    tangent-space normal map as stored (glTF's encoding), with `normal_scale` for its x and y, or None.
    """

    base_color: np.ndarray
    metallic: np.ndarray | None = None
    roughness: np.ndarray | None = None
    normal: np.ndarray | None = None
    normal_scale: float = 1.0

    @property
    def pbr(self) -> bool:
        return self.metallic is not None and self.roughness is not None


class TexturedSource:
    """An input surface with UVs and maps, to re-bake onto a new surface that approximates it.

    Each texel of the new surface takes the maps at the closest point of the source surface: the source is
    sampled densely (every face centroid, plus random points on its large faces, each knowing its face) into a
    KD-tree (scipy's; trimesh's proximity queries need rtree, which is not installed); the faces of a texel's
    `SOURCE_CANDIDATES` nearest samples are candidates, the exact closest point on each is computed, and the
    nearest one whose face does not face away from the new surface's normal (the other side of a thin part) wins.
    Its barycentrics give the source UV, where the maps are sampled bilinearly (wrapping, like glTF's default
    sampler). Normal maps are decoded in the source's tangent frame into object space and re-encoded in the new
    surface's frame, so the result keeps the source's normal detail.

    `vertices`, `faces`, `uv` (per vertex, trimesh's convention) describe the source; `normals` (per vertex) are
    only used to decode a normal map, and computed when needed but not given.
    """

    def __init__(
        self,
        vertices: np.ndarray,
        faces: np.ndarray,
        uv: np.ndarray,
        maps: SourceMaps,
        normals: np.ndarray | None = None,
    ):
        self.vertices = np.asarray(vertices, dtype=np.float64)
        self.faces = np.asarray(faces, dtype=np.int64)
        self.uv = np.asarray(uv, dtype=np.float64)
        self.maps = maps
        self.normals = self.tangents = None
        if maps.normal is not None:
            normals = safe_vertex_normals(self.vertices, self.faces) if normals is None else normals
            self.normals = _unit(np.asarray(normals, dtype=np.float64))
            uvmesh = UVMesh(self.vertices, self.faces, self.uv, self.normals, self.faces[:0, 0])
            self.tangents = vertex_tangents(uvmesh)
        corners = self.vertices[self.faces]
        cross = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
        self.face_normals = cross / np.maximum(np.linalg.norm(cross, axis=1, keepdims=True), 1e-30)
        area = 0.5 * np.linalg.norm(cross, axis=1)
        # Faces larger than 1/SOURCE_SAMPLES of the area get extra random points in proportion; on a finely and
        # evenly tessellated surface the centroids alone are enough (and extra points on the same faces would
        # only crowd out other candidate faces).
        extra = np.floor(area * (SOURCE_SAMPLES / max(float(area.sum()), 1e-300))).astype(np.int64)
        chosen = np.repeat(np.arange(len(self.faces)), extra)
        rng = np.random.default_rng(0)
        r1, r2 = np.sqrt(rng.random(len(chosen)))[:, None], rng.random(len(chosen))[:, None]
        c = corners[chosen]
        points = (1 - r1) * c[:, 0] + r1 * (1 - r2) * c[:, 1] + r1 * r2 * c[:, 2]
        self.sample_faces = np.concatenate([np.arange(len(self.faces)), chosen])
        self.tree = cKDTree(np.concatenate([corners.mean(axis=1), points]))
        self.outward = 1.0

    def oriented_like(self, vertices: np.ndarray, faces: np.ndarray) -> TexturedSource:
        """This source, with its face normals flipped if `vertices`/`faces` (the cleaned, possibly re-oriented
        copy of the same surface) enclose their volume with the opposite winding."""
        faces = np.asarray(faces, dtype=np.int64)
        if not is_closed(faces):  # cleaning only re-orients closed meshes
            return self
        mine = signed_volume(self.vertices, self.faces)
        theirs = signed_volume(np.asarray(vertices, dtype=np.float64), faces)
        if mine * theirs >= 0:
            return self
        flipped = copy.copy(self)
        flipped.outward = -self.outward
        return flipped

    def locate(self, points: np.ndarray, normals: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """For each point, the closest source face (preferring faces that face along `normals`) and the
        barycentrics of the closest point on it."""
        points = np.asarray(points, dtype=np.float64)
        faces = np.empty(len(points), dtype=np.int64)
        bary = np.empty((len(points), 3))
        k = min(SOURCE_CANDIDATES, self.tree.n)
        extent = np.ptp(self.vertices, axis=0).max() if len(self.vertices) else 1.0
        penalty = 4.0 * max(float(extent), 1e-9) ** 2
        for start in range(0, len(points), _QUERY_CHUNK):
            p = points[start : start + _QUERY_CHUNK]
            idx = self.tree.query(p, k=k, workers=-1)[1].reshape(len(p), k)
            candidates = self.sample_faces[idx]
            tri = self.vertices[self.faces[candidates]]
            closest, b = closest_on_triangles(p[:, None, :], tri[..., 0, :], tri[..., 1, :], tri[..., 2, :])
            cost = np.einsum("pkc,pkc->pk", closest - p[:, None, :], closest - p[:, None, :])
            if normals is not None:
                facing = np.einsum("pkc,pc->pk", self.face_normals[candidates], normals[start : start + len(p)])
                cost = cost + penalty * (facing * self.outward < 0)
            best = np.argmin(cost, axis=1)
            rows = np.arange(len(p))
            faces[start : start + len(p)] = candidates[rows, best]
            bary[start : start + len(p)] = b[rows, best]
        return faces, bary

    def bake(self, uvmesh: UVMesh, tangents: np.ndarray | None = None, size: int = TEXTURE_SIZE) -> dict:
        """Maps for `uvmesh`: base_color, and metallic, roughness and glTF's packed metallic_roughness when the
        source has them, and normal when it has one and `tangents` (of `uvmesh`) are given."""
        texels = Texels.of(uvmesh, size)
        lo_normal = _unit(texels.interp(uvmesh.normals))
        face, bary = self.locate(texels.interp(uvmesh.vertices), lo_normal)
        corners = self.faces[face]
        uv = np.einsum("pk,pkc->pc", bary, self.uv[corners])
        maps = self.maps
        images = {"base_color": texels.image(bilinear(maps.base_color, uv))}
        if maps.pbr:
            metallic, roughness = bilinear(maps.metallic, uv), bilinear(maps.roughness, uv)
            images["metallic"], images["roughness"] = texels.image(metallic), texels.image(roughness)
            packed = np.column_stack([np.zeros_like(metallic), roughness, metallic])
            images["metallic_roughness"] = texels.image(packed)
        if maps.normal is not None and tangents is not None and self.tangents is not None and self.normals is not None:
            n = _unit(np.einsum("pk,pkc->pc", bary, self.normals[corners]))
            t = np.einsum("pk,pkc->pc", bary, self.tangents[corners, :3])
            t = _unit(t - n * np.einsum("ij,ij->i", t, n)[:, None])
            b = np.cross(n, t) * self.tangents[corners[:, 0], 3:]
            local = bilinear(maps.normal, uv) / 127.5 - 1.0
            local[:, :2] *= maps.normal_scale
            detail = _unit(local[:, :1] * t + local[:, 1:2] * b + local[:, 2:] * n)
            encoded = _tangent_space(detail, lo_normal, texels.interp(tangents[:, :3]))
            encoded[:, 1] *= tangents[texels.corners[:, 0], 3]
            images["normal"] = texels.image((encoded * 0.5 + 0.5) * 255.0)
        return images


def closest_on_triangles(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Closest points to `p` on triangles (a, b, c) (broadcasting, last axis xyz) and their barycentrics
    (Ericson, Real-Time Collision Detection 5.1.5, vectorised: the Voronoi regions are resolved in reverse
    order of his early returns, so the first matching region wins). Degenerate triangles give a corner."""
    ab, ac = b - a, c - a
    ap, bp, cp = p - a, p - b, p - c

    def dot(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.einsum("...c,...c->...", x, y)

    d1, d2, d3, d4, d5, d6 = dot(ab, ap), dot(ac, ap), dot(ab, bp), dot(ac, bp), dot(ab, cp), dot(ac, cp)
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2

    def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        ok = den != 0
        return np.where(ok, num / np.where(ok, den, 1.0), 0.0)

    # Interior: v and w from the signed sub-areas; then each region overrides (u = 1 - v - w throughout).
    total = va + vb + vc
    v, w = ratio(vb, total), ratio(vc, total)
    regions = (
        ((va <= 0) & (d4 >= d3) & (d5 >= d6), lambda: (1.0 - ratio(d4 - d3, (d4 - d3) + (d5 - d6)), None)),  # BC
        ((vb <= 0) & (d2 >= 0) & (d6 <= 0), lambda: (0.0, ratio(d2, d2 - d6))),  # edge AC
        ((d6 >= 0) & (d5 <= d6), lambda: (0.0, 1.0)),  # corner C
        ((vc <= 0) & (d1 >= 0) & (d3 <= 0), lambda: (ratio(d1, d1 - d3), 0.0)),  # edge AB
        ((d3 >= 0) & (d4 <= d3), lambda: (1.0, 0.0)),  # corner B
        ((d1 <= 0) & (d2 <= 0), lambda: (0.0, 0.0)),  # corner A
    )
    for mask, weights in regions:
        if not mask.any():
            continue
        new_v, new_w = weights()
        if new_w is None:  # edge BC: w = 1 - v
            new_w = 1.0 - new_v
        v, w = np.where(mask, new_v, v), np.where(mask, new_w, w)
    bad = ~(np.isfinite(v) & np.isfinite(w))
    v, w = np.where(bad, 0.0, v), np.where(bad, 0.0, w)
    bary = np.stack([1.0 - v - w, v, w], axis=-1)
    points = a + ab * v[..., None] + ac * w[..., None]
    return points, bary


def bilinear(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear lookup of an (H, W) or (H, W, C) array at trimesh-convention UVs (v = 0 is the bottom row),
    wrapping like glTF's REPEAT."""
    h, w = image.shape[:2]
    x = (uv[:, 0] % 1.0) * w - 0.5
    y = (1.0 - uv[:, 1] % 1.0) * h - 0.5
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    fx, fy = x - x0, y - y0
    if image.ndim == 3:
        fx, fy = fx[:, None], fy[:, None]
    x0, x1 = x0 % w, (x0 + 1) % w
    y0, y1 = y0 % h, (y0 + 1) % h
    top = image[y0, x0] * (1.0 - fx) + image[y0, x1] * fx
    bottom = image[y1, x0] * (1.0 - fx) + image[y1, x1] * fx
    return top * (1 - fy) + bottom * fy
