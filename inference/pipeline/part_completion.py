"""Part completion (the CPU reference of HoloPart-style `part-completion`): every part of a multi-part model made a
whole, closed solid.

**Input contract** (`complete_parts(model_or_parts, params, out_dir, progress)`):

- a list of `parts_export.Part` (what `read_parts` returns for a GLB/glTF whose nodes are the parts: one part per
  node that carries triangles, its transform applied, its node name kept; the segmentation's `segmented.glb`
  works as is), or
- a `LoadedModel` with `params["face_labels"]`: one label per face of the loaded mesh, as a list or as the whole
  `part_labels.json` object of a segmentation task (same model, same face order); or
- a `LoadedModel` without labels: its connected pieces (vertices welded by position) are the parts.

Parts keep their names (`part_00`... when they have none); output files are numbered by position.

**Method**, per part:

1. Weld by position, drop degenerate and duplicate faces, make the winding consistent (majority per piece, as
   `printing` does); a part with non-manifold edges goes to the fallback.
2. Every boundary loop (a cut) is filled by a patch: the loop is projected on its best-fit plane; when that
   projection is a simple polygon, the patch is a Delaunay triangulation of the polygon with interior points on a
   hexagonal grid at the loop's edge length (triangles outside the polygon dropped, the loop's own edges checked
   present), or ear clipping when that check fails. The interior vertices are then placed by **harmonic fairing**:
   the discrete Laplace equation (cotangent weights of the planar layout) with the loop fixed, so a planar cut gets
   its exact flat cap and a curved cut (a loop on a cylinder, a saddle) a smooth minimal-like membrane.
3. The closed part is checked with trimesh (watertight, consistent winding, positive volume; turned outward if its
   volume is negative). A loop whose projection folds over itself, or any part that fails the checks, goes to the
   **fallback**: its loops closed by a fan around their centroid, the result voxelised (`resolution` cells along
   its longest side), filled, and re-surfaced by marching cubes (PyMCubes, at the 0.5 level of a Gaussian-smoothed
   occupancy), which is watertight by construction; its convex hull is the last resort.

Outputs: `completed.glb` (one node per part, same names, palette colours), `part_XX_completed.glb` and
`preview.png`; `extra["parts"]` lists the per-part file names, whether each came out watertight and which
method closed it ("closed" already, "patch", "voxel" or "hull").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import trimesh
from scipy.ndimage import gaussian_filter
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.sparse.linalg import spsolve
from scipy.spatial import Delaunay

from inference.pipeline import parts_export
from inference.pipeline.model_input import MAX_FACES, VERTICES_PER_FACE, LoadedModel, OpResult, load_model
from inference.pipeline.parts_export import Part
from inference.pipeline.printing import _boundary_loops, _Edges, _orientation_flips, _weld
from inference.runners.base import InputRejected

Progress = Callable[[float], None]

MAX_INPUT_PARTS = 64
DEFAULT_RESOLUTION, RESOLUTION_RANGE = 96, (32, 256)
INTERIOR_CLEARANCE = 0.6  # interior patch points keep this many edge lengths away from the loop
MAX_PATCH_POINTS = 20_000  # interior points per loop at most (the grid spacing grows to fit)
MAX_LOOP = 4_000  # longer loops go to the fallback
SMOOTH_VOXELS = 0.8  # Gaussian smoothing (voxels) of the fallback's occupancy before marching cubes


@dataclass(frozen=True)
class Completed:
    """One completed part: a closed, outward triangle mesh and how it was closed."""

    name: str
    vertices: np.ndarray
    faces: np.ndarray
    method: str
    watertight: bool


# --------------------------------------------------------------------------------------------- public entry points


def complete_parts(
    model_or_parts: LoadedModel | Sequence[Part], params: Mapping[str, Any], out_dir: Path, progress: Progress
) -> OpResult:
    """Complete every part (see the module doc for the input contract). params: face_labels (with a LoadedModel),
    resolution (the fallback's voxels along the longest side, 32..256, default 96)."""
    out_dir = Path(out_dir)
    resolution = _resolution(params.get("resolution"))
    if isinstance(model_or_parts, LoadedModel):
        parts = parts_of_model(model_or_parts, params.get("face_labels"))
    else:
        parts = list(model_or_parts)
    if not parts:
        raise InputRejected("the model has no parts to complete")
    if len(parts) > MAX_INPUT_PARTS:
        raise InputRejected(f"the model has {len(parts)} parts; at most {MAX_INPUT_PARTS} can be completed at once")
    progress(0.0)
    done: list[Completed] = []
    for index, part in enumerate(parts):
        done.append(complete_part(part.vertices, part.faces, part.name, resolution))
        progress(0.8 * (index + 1) / len(parts))
    written = [Part.plain(i, c.vertices, c.faces, name=c.name) for i, c in enumerate(done)]
    files = parts_export.write_parts(written, out_dir, combined="completed.glb", suffix="_completed")
    thumbnail = parts_export.write_preview(written, out_dir)
    progress(1.0)
    return OpResult(
        model_files={"glb": "completed.glb"},
        thumbnail=thumbnail,
        extra={
            "parts": {
                "num_parts": len(done),
                "files": files,
                "names": [c.name for c in done],
                "watertight": [c.watertight for c in done],
                "methods": [c.method for c in done],
            }
        },
    )


def read_parts(
    path: Path, source_format: str, *, max_faces: int = MAX_FACES, model: LoadedModel | None = None
) -> list[Part]:
    """The parts of a model file: one per glTF node with triangles (GLB/glTF), else the connected pieces. The file
    is first read by `load_model` (every safety check; pass `model` when the caller has read it already); only then
    are glTF nodes read apart, by the same checked reader."""
    from inference.pipeline.model_input import _Limits, _load_gltf, _parse_json, _split_glb

    if model is None:
        model = load_model(Path(path), source_format, max_faces=max_faces)
    if source_format not in ("glb", "gltf"):
        return parts_of_model(model, None)
    data = Path(path).read_bytes()
    binary = source_format == "glb"
    scene = _load_gltf(data, binary=binary, limits=_Limits(max_faces, VERTICES_PER_FACE * max_faces), notes=[])
    # the file's node order (trimesh's graph does not keep it): parts are numbered as the file lists them
    header = _split_glb(data)[0] if binary else _parse_json(data)
    declared = [str(n.get("name", "")) for n in header.get("nodes", []) if isinstance(n, dict)]
    rank = {name: i for i, name in reversed(list(enumerate(declared)))}
    nodes = sorted(scene.graph.nodes_geometry, key=lambda node: (rank.get(str(node), len(rank)), str(node)))
    parts: list[Part] = []
    for node in nodes:
        transform, geometry_name = scene.graph[node]
        geometry = scene.geometry.get(geometry_name)
        if not isinstance(geometry, trimesh.Trimesh) or len(geometry.faces) == 0:
            continue
        vertices = np.asarray(geometry.vertices, dtype=np.float64)
        faces = np.asarray(geometry.faces, dtype=np.int64)
        transform = np.asarray(transform, dtype=np.float64)
        vertices = vertices @ transform[:3, :3].T + transform[:3, 3]
        if np.linalg.det(transform[:3, :3]) < 0:
            faces = faces[:, ::-1]
        parts.append(Part.plain(len(parts), vertices, faces, name=_clean_name(str(node), len(parts))))
    if len(parts) == 1:
        return parts_of_model(model, None)
    return parts


def parts_of_model(model: LoadedModel, face_labels: Any) -> list[Part]:
    """Parts of a loaded model by `face_labels` (a list, or a part_labels.json object), or by connected piece."""
    vertices = np.asarray(model.mesh.vertices, dtype=np.float64)
    faces = np.asarray(model.mesh.faces, dtype=np.int64)
    if face_labels is None:
        wv, wf = _weld(vertices, faces)
        a = np.concatenate([wf[:, 0], wf[:, 1], wf[:, 2]])
        b = np.concatenate([wf[:, 1], wf[:, 2], wf[:, 0]])
        graph = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(len(wv), len(wv)))
        _, piece = connected_components(graph, directed=False)
        labels = piece[wf[:, 0]]
    else:
        labels = _labels(face_labels, len(faces))
    present, labels = np.unique(labels, return_inverse=True)
    parts = []
    for index in range(len(present)):
        sub = faces[labels == index]
        used, local = np.unique(sub, return_inverse=True)
        parts.append(Part.plain(index, vertices[used], local.reshape(-1, 3)))
    if len(parts) > MAX_INPUT_PARTS:
        raise InputRejected(f"the model has {len(parts)} parts; at most {MAX_INPUT_PARTS} can be completed at once")
    return parts


def complete_part(
    vertices: np.ndarray, faces: np.ndarray, name: str = "part", resolution: int = DEFAULT_RESOLUTION
) -> Completed:
    """One part made a closed, consistently wound, outward solid (see the module doc)."""
    vertices, faces = _tidy(np.asarray(vertices, dtype=np.float64), np.asarray(faces, dtype=np.int64))
    if len(faces) == 0:
        raise InputRejected(f"part {name!r} has no surface (every face is degenerate)")
    edges = _Edges(faces)
    if np.any(edges.count > 2):
        return _fallback(vertices, faces, name, resolution)
    flips = _orientation_flips(faces, edges)
    faces = np.where(flips[:, None], faces[:, ::-1], faces)
    faces = _trim_ears(faces)
    loops = [piece for loop in _boundary_loops(faces, _Edges(faces)) for piece in _split_pinches(loop)]
    method = "patch" if loops else "closed"
    new_vertices, new_faces = [vertices], [faces]
    count = len(vertices)
    existing = _edge_keys(faces, len(vertices))
    for loop in loops:
        patch = fill_loop(vertices, loop, existing)
        if patch is None:
            return _fallback(vertices, faces, name, resolution)
        extra, tri = patch
        tri = np.where(tri < len(loop), loop[np.minimum(tri, len(loop) - 1)], tri - len(loop) + count)
        new_vertices.append(extra)
        new_faces.append(tri)
        count += len(extra)
    v, f = np.concatenate(new_vertices), np.concatenate(new_faces)
    closed = _outward(v, f)
    if closed is None:
        return _fallback(vertices, faces, name, resolution)
    used, local = np.unique(closed[1], return_inverse=True)
    return Completed(name, closed[0][used], local.reshape(-1, 3), method, True)


# --------------------------------------------------------------------------------------------- loop patches


def _trim_ears(faces: np.ndarray) -> np.ndarray:
    """Faces with two or three boundary edges (the teeth of a jagged cut) removed, repeatedly: the patch covers
    them instead, and the loop no longer has chords that the part already uses."""
    for _ in range(8):
        edges = _Edges(faces)
        open_per_face = (edges.count[edges.slot_edge] == 1).reshape(-1, 3).sum(axis=1)
        ears = open_per_face >= 2
        if not ears.any() or ears.all():
            break
        faces = faces[~ears]
    return faces


def _split_pinches(loop: np.ndarray) -> list[np.ndarray]:
    """A loop that passes a vertex twice (the boundary touches itself there) as simple loops, split at it."""
    out, stack = [], [loop]
    while stack:
        current = stack.pop()
        _, first, counts = np.unique(current, return_index=True, return_counts=True)
        if np.all(counts == 1):
            if len(current) >= 3:
                out.append(current)
            continue
        vertex_at = int(np.sort(first[counts > 1])[0])
        again = vertex_at + 1 + int(np.flatnonzero(current[vertex_at + 1 :] == current[vertex_at])[0])
        stack.append(current[vertex_at:again])
        stack.append(np.concatenate([current[again:], current[:vertex_at]]))
    return out


def _edge_keys(faces: np.ndarray, n: int) -> np.ndarray:
    """Sorted keys lo * n + hi of the mesh's undirected edges."""
    pairs = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    return np.unique(pairs[:, 0] * n + pairs[:, 1])


def fill_loop(
    vertices: np.ndarray, loop: np.ndarray, existing: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray] | None:
    """A patch closing `loop` (vertex indices in the direction of their faces' edges): (new interior vertices,
    triangles) where index i < len(loop) means loop[i] and len(loop) + j the j-th new vertex; wound opposite to the
    loop's faces. `existing`: the part's edge keys (`_edge_keys`); the patch never repeats one of those edges
    between two loop vertices (a chord the part already has), it puts a vertex on it instead. None when the loop's
    projection on its plane is not a simple polygon."""
    n = len(loop)
    points = vertices[loop]
    if n == 3:
        return np.zeros((0, 3)), np.array([[0, 2, 1]])
    if n > MAX_LOOP:
        return None
    centre = points.mean(axis=0)
    _, _, basis = np.linalg.svd(points - centre, full_matrices=False)
    flat = (points - centre) @ basis[:2].T
    if not _simple(flat):
        return None
    area = _polygon_area(flat)
    if abs(area) <= 1e-14 * max(float(np.ptp(flat, axis=0).max()), 1e-30) ** 2:
        return None
    edge = float(np.median(np.linalg.norm(np.roll(flat, -1, axis=0) - flat, axis=1)))
    inner = _interior_points(flat, edge, abs(area))
    chords = _chords(loop, existing, len(vertices))
    tri = None
    for _ in range(4):
        tri = _delaunay_patch(flat, inner)
        if tri is None:
            break
        bad = _forbidden(tri, n, chords)
        if not len(bad):
            break
        # a vertex just inside the middle of each forbidden chord, and triangulate again
        middle = flat[bad].mean(axis=1)
        inward = _inward_offset(flat, bad, 0.05 * edge, area)
        inner = np.concatenate([inner, middle + inward])
        tri = None
    if tri is None:
        inner = np.zeros((0, 2))
        tri = _ear_clip(flat)
        if tri is None or len(_forbidden(tri, n, chords)):
            return None
    layout = np.concatenate([flat, inner])
    signed = _signed_areas(layout, tri)
    tri = np.where((signed < 0)[:, None], tri[:, ::-1], tri)
    if area > 0:  # a CCW loop: CCW triangles run along its edges like the part's faces do, so turn them over
        tri = tri[:, ::-1]
    extra = _harmonic(layout, tri, points) if len(inner) else np.zeros((0, 3))
    return extra, tri


def _chords(loop: np.ndarray, existing: np.ndarray | None, n_vertices: int) -> np.ndarray:
    """(k, 2) pairs of loop positions whose vertices the part already joins by an edge that is not a loop edge."""
    if existing is None or len(loop) < 4:
        return np.zeros((0, 2), dtype=np.int64)
    position = {int(v): i for i, v in enumerate(loop)}
    lo, hi = existing // n_vertices, existing % n_vertices
    on_loop = np.isin(lo, loop) & np.isin(hi, loop)
    pairs = np.array([(position[int(a)], position[int(b)]) for a, b in zip(lo[on_loop], hi[on_loop], strict=True)])
    if len(pairs) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    pairs = np.sort(pairs, axis=1)
    n = len(loop)
    loop_edge = (pairs[:, 1] - pairs[:, 0] == 1) | ((pairs[:, 0] == 0) & (pairs[:, 1] == n - 1))
    return pairs[~loop_edge]


def _forbidden(tri: np.ndarray, n: int, chords: np.ndarray) -> np.ndarray:
    """The chords (pairs of loop positions) that the patch `tri` uses as edges."""
    if len(chords) == 0:
        return chords
    edges = np.sort(tri[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    edges = edges[(edges < n).all(axis=1)]
    used = np.isin(chords[:, 0] * n + chords[:, 1], edges[:, 0] * n + edges[:, 1])
    return chords[used]


def _inward_offset(flat: np.ndarray, pairs: np.ndarray, distance: float, area: float) -> np.ndarray:
    """A small step from each chord's middle into the polygon (perpendicular to the chord, towards the side
    where the polygon lies: tested by point-in-polygon)."""
    d = flat[pairs[:, 1]] - flat[pairs[:, 0]]
    normal = np.column_stack([-d[:, 1], d[:, 0]])
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-300)
    middle = flat[pairs].mean(axis=1)
    step = normal * distance
    return np.where(_inside(middle + step, flat)[:, None], step, -step)


def _polygon_area(flat: np.ndarray) -> float:
    x, y = flat[:, 0], flat[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def _signed_areas(layout: np.ndarray, tri: np.ndarray) -> np.ndarray:
    a, b, c = layout[tri[:, 0]], layout[tri[:, 1]], layout[tri[:, 2]]
    return 0.5 * ((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0]))


def _simple(flat: np.ndarray, block: int = 256) -> bool:
    """Whether the closed polygon has no two non-adjacent edges that cross (or touch)."""
    n = len(flat)
    p, q = flat, np.roll(flat, -1, axis=0)
    if np.any(np.linalg.norm(q - p, axis=1) <= 0):
        return False
    scale = float(np.ptp(flat, axis=0).max())
    tol = 1e-12 * scale
    for start in range(0, n, block):
        i = np.arange(start, min(start + block, n))[:, None]
        j = np.arange(n)[None, :]
        pi, qi, pj, qj = p[i], q[i], p[j], q[j]

        def cross(o: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
            return (a[..., 0] - o[..., 0]) * (b[..., 1] - o[..., 1]) - (a[..., 1] - o[..., 1]) * (b[..., 0] - o[..., 0])

        def within(o: np.ndarray, a: np.ndarray, x: np.ndarray) -> np.ndarray:  # x in the box of segment o-a
            lo, hi = np.minimum(o, a), np.maximum(o, a)
            return np.all((x >= lo - tol) & (x <= hi + tol), axis=-1)

        d1, d2 = cross(pj, qj, pi), cross(pj, qj, qi)
        d3, d4 = cross(pi, qi, pj), cross(pi, qi, qj)
        zero = tol * scale
        hit = (d1 * d2 < 0) & (d3 * d4 < 0)
        hit |= (np.abs(d1) <= zero) & within(pj, qj, pi)
        hit |= (np.abs(d2) <= zero) & within(pj, qj, qi)
        hit |= (np.abs(d3) <= zero) & within(pi, qi, pj)
        hit |= (np.abs(d4) <= zero) & within(pi, qi, qj)
        adjacent = (i == j) | ((i + 1) % n == j) | ((j + 1) % n == i)
        if np.any(hit & ~adjacent):
            return False
    return True


def _inside(points: np.ndarray, flat: np.ndarray, block: int = 4096) -> np.ndarray:
    """Crossing-number point-in-polygon test."""
    p, q = flat, np.roll(flat, -1, axis=0)
    out = np.zeros(len(points), dtype=bool)
    for start in range(0, len(points), block):
        x = points[start : start + block, 0][:, None]
        y = points[start : start + block, 1][:, None]
        straddle = (p[None, :, 1] > y) != (q[None, :, 1] > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            cross_x = p[None, :, 0] + (y - p[None, :, 1]) * (q[None, :, 0] - p[None, :, 0]) / (
                q[None, :, 1] - p[None, :, 1]
            )
        out[start : start + block] = (np.count_nonzero(straddle & (x < cross_x), axis=1) % 2) == 1
    return out


def _distance_to_polygon(points: np.ndarray, flat: np.ndarray, block: int = 2048) -> np.ndarray:
    p, q = flat, np.roll(flat, -1, axis=0)
    d = q - p
    length2 = np.maximum(np.einsum("ij,ij->i", d, d), 1e-300)
    out = np.empty(len(points))
    for start in range(0, len(points), block):
        x = points[start : start + block, None, :]
        t = np.clip(np.einsum("pkj,kj->pk", x - p[None], d) / length2, 0.0, 1.0)
        closest = p[None] + t[..., None] * d[None]
        out[start : start + block] = np.sqrt(((x - closest) ** 2).sum(axis=2).min(axis=1))
    return out


def _interior_points(flat: np.ndarray, edge: float, area: float) -> np.ndarray:
    """Hexagonal-grid points inside the polygon, INTERIOR_CLEARANCE edges away from it."""
    spacing = max(edge, np.sqrt(2.0 * area / (np.sqrt(3.0) * MAX_PATCH_POINTS)))
    lo, hi = flat.min(axis=0), flat.max(axis=0)
    rows = np.arange(lo[1], hi[1] + spacing, spacing * np.sqrt(3.0) / 2.0)
    cols = np.arange(lo[0], hi[0] + spacing, spacing)
    gx, gy = np.meshgrid(cols, rows)
    gx = gx + (np.arange(len(rows)) % 2)[:, None] * spacing / 2.0
    grid = np.column_stack([gx.ravel(), gy.ravel()])
    grid = grid[_inside(grid, flat)]
    if len(grid) == 0:
        return grid
    return grid[_distance_to_polygon(grid, flat) >= INTERIOR_CLEARANCE * spacing]


def _delaunay_patch(flat: np.ndarray, inner: np.ndarray) -> np.ndarray | None:
    """Delaunay triangles inside the polygon, or None unless they form a disk bounded by exactly the loop."""
    n = len(flat)
    layout = np.concatenate([flat, inner])
    try:
        tri = Delaunay(layout).simplices.astype(np.int64)
    except Exception:  # noqa: BLE001 (qhull refuses degenerate input: the caller ear-clips instead)
        return None
    tri = tri[_inside(layout[tri].mean(axis=1), flat)]
    if len(tri) == 0:
        return None
    directed = tri[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    key = np.sort(directed, axis=1)
    keys, counts = np.unique(key[:, 0] * (len(layout) + 1) + key[:, 1], return_counts=True)
    if np.any(counts > 2):
        return None
    loop_edges = np.sort(np.column_stack([np.arange(n), (np.arange(n) + 1) % n]), axis=1)
    loop_keys = np.sort(loop_edges[:, 0] * (len(layout) + 1) + loop_edges[:, 1])
    open_keys = keys[counts == 1]
    if len(open_keys) != n or not np.array_equal(open_keys, loop_keys):
        return None
    if len(np.unique(tri)) != len(layout):  # an interior point left out: it would float free
        return None
    return tri


def _ear_clip(flat: np.ndarray) -> np.ndarray | None:
    """Ear clipping of a simple polygon (any orientation): n - 2 triangles over its vertices."""
    order = list(range(len(flat)))
    sign = 1.0 if _polygon_area(flat) > 0 else -1.0
    out = []
    guard = 0
    while len(order) > 3 and guard < 4 * len(flat):
        guard += 1
        idx = np.array(order)
        prev, nxt = np.roll(idx, 1), np.roll(idx, -1)
        a, b, c = flat[prev], flat[idx], flat[nxt]
        convex = sign * ((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])) > 0
        clipped = False
        for k in np.flatnonzero(convex):
            others = np.setdiff1d(idx, [prev[k], idx[k], nxt[k]])
            if len(others) and _in_triangle(flat[others], a[k], b[k], c[k]).any():
                continue
            out.append((prev[k], idx[k], nxt[k]))
            order.remove(int(idx[k]))
            clipped = True
            break
        if not clipped:
            return None
    if len(order) == 3:
        out.append(tuple(order))
    return np.array(out, dtype=np.int64) if out else None


def _in_triangle(points: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    def side(p: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return (v[0] - u[0]) * (p[:, 1] - u[1]) - (v[1] - u[1]) * (p[:, 0] - u[0])

    s1, s2, s3 = side(points, a, b), side(points, b, c), side(points, c, a)
    return ((s1 >= 0) & (s2 >= 0) & (s3 >= 0)) | ((s1 <= 0) & (s2 <= 0) & (s3 <= 0))


def _harmonic(layout: np.ndarray, tri: np.ndarray, boundary: np.ndarray) -> np.ndarray:
    """3D positions of the interior vertices (indices >= len(boundary)) solving the Laplace equation with the
    cotangent weights of the planar `layout` and the loop fixed at its 3D `boundary` positions."""
    n_b, n = len(boundary), len(layout)
    rows, cols, weights = [], [], []
    for k in range(3):
        i, j, o = tri[:, k], tri[:, (k + 1) % 3], tri[:, (k + 2) % 3]
        u, v = layout[i] - layout[o], layout[j] - layout[o]
        cot = (u * v).sum(axis=1) / np.maximum(np.abs(u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0]), 1e-300)
        w = np.maximum(0.5 * cot, 1e-6)  # clamped positive: the solve stays a convex combination
        rows += [i, j]
        cols += [j, i]
        weights += [w, w]
    W = coo_matrix((np.concatenate(weights), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)).tocsr()
    degree = np.asarray(W.sum(axis=1)).ravel()
    L = (coo_matrix((degree, (np.arange(n), np.arange(n))), shape=(n, n)).tocsr() - W).tocsr()
    interior = np.arange(n_b, n)
    A = L[interior][:, interior].tocsc()
    B = L[interior][:, :n_b]
    rhs = -(B @ boundary)
    solution = spsolve(A, rhs)
    return np.asarray(solution, dtype=np.float64).reshape(len(interior), 3)


# --------------------------------------------------------------------------------------------- checks and fallback


def _tidy(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Welded, without faces on a repeated vertex, zero-area faces or duplicates, unreferenced vertices dropped."""
    if len(faces) == 0:
        return vertices, faces
    if not np.isfinite(vertices).all():
        raise InputRejected("a part has vertices with invalid (infinite or NaN) coordinates")
    v, f = _weld(vertices, faces)
    f = f[(f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 2] != f[:, 0])]
    tri = v[f]
    twice = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    f = f[twice > 1e-14 * max(float(twice.max(initial=0.0)), 1e-300)]
    _, first = np.unique(np.sort(f, axis=1), axis=0, return_index=True)
    f = f[np.sort(first)]
    used, local = np.unique(f, return_inverse=True)
    return v[used], local.reshape(-1, 3)


def _outward(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(vertices, faces) turned outward when the mesh is watertight with consistent winding, else None."""
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    if not (mesh.is_watertight and mesh.is_winding_consistent):
        return None
    volume = float(mesh.volume)
    if abs(volume) <= 0:
        return None
    if volume < 0:
        faces = faces[:, ::-1]
    return vertices, faces


def is_solid(vertices: np.ndarray, faces: np.ndarray) -> bool:
    """Watertight, consistently wound and enclosing a positive volume (trimesh's checks)."""
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    return bool(mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0)


def _fan_closed(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each boundary loop closed by a fan around its centroid (crude, but enough to voxelise)."""
    loops = _boundary_loops(faces, _Edges(faces)) if len(faces) else []
    v, f = [vertices], [faces]
    count = len(vertices)
    for loop in loops:
        v.append(vertices[loop].mean(axis=0)[None])
        f.append(np.column_stack([np.roll(loop, -1), loop, np.full(len(loop), count)]))
        count += 1
    return np.concatenate(v), np.concatenate(f)


def _fallback(vertices: np.ndarray, faces: np.ndarray, name: str, resolution: int) -> Completed:
    """Voxel remesh of the fan-closed part, or its convex hull."""
    import mcubes

    v, f = _fan_closed(vertices, faces)
    extent = float(np.ptp(v, axis=0).max())
    if extent > 0:
        pitch = extent / resolution
        try:
            grid = trimesh.Trimesh(v, f, process=False).voxelized(pitch).fill()
            occupancy = np.pad(grid.matrix, 2)
            if occupancy.sum() >= 8:
                field = gaussian_filter(occupancy.astype(np.float32), SMOOTH_VOXELS)
                mv, mf = mcubes.marching_cubes(field, 0.5)
                mv = (np.asarray(mv) - 2.0) @ grid.transform[:3, :3].T + grid.transform[:3, 3]
                closed = _outward(*_tidy(mv, np.asarray(mf, dtype=np.int64)))
                if closed is not None:
                    return Completed(name, closed[0], closed[1], "voxel", True)
        except (ValueError, IndexError, MemoryError):
            pass
    hull = trimesh.Trimesh(vertices, faces, process=False).convex_hull
    ok = is_solid(np.asarray(hull.vertices), np.asarray(hull.faces))
    return Completed(
        name, np.asarray(hull.vertices, dtype=np.float64), np.asarray(hull.faces, dtype=np.int64), "hull", ok
    )


# --------------------------------------------------------------------------------------------- parameters


def _resolution(value: Any) -> int:
    if value is None:
        return DEFAULT_RESOLUTION
    low, high = RESOLUTION_RANGE
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value) or not low <= value <= high:
        raise InputRejected(f"resolution must be a whole number between {low} and {high}, not {value!r}")
    return int(value)


def _labels(value: Any, face_count: int) -> np.ndarray:
    """face_labels as an int array, from a list or a part_labels.json object."""
    if isinstance(value, Mapping):
        value = value.get("face_labels")
    try:
        labels = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise InputRejected("face_labels must be a list of whole numbers, one per face") from None
    if not np.isfinite(labels).all() or np.any(labels != np.round(labels)) or np.any(labels < 0):
        raise InputRejected("face_labels must be a list of whole numbers (0 or more), one per face")
    if len(labels) != face_count:
        raise InputRejected(f"face_labels has {len(labels)} entries but the model has {face_count} faces")
    return labels.astype(np.int64)


def _clean_name(name: str, index: int) -> str:
    """A node name kept when it is plain (letters, digits, _ - . and spaces, at most 64), else part_XX."""
    plain = name.strip()
    if 0 < len(plain) <= 64 and all(ch.isalnum() or ch in "_-. " for ch in plain):
        return plain
    return parts_export.part_name(index)
