"""3D printing: printability analysis, watertight repair and multi-colour 3MF (Meshy's `print/*` endpoints).

Every measure works on the surface, not on the file's vertex list: vertices are first merged by position (UV and
normal seams split vertices but not the surface), within 1e-7 of the bounding-box diagonal.

**Analyze** counts, on that welded mesh: faces on a repeated vertex or of zero area (degenerate, left out of the
topology), edges with one face (boundary; their loops are the holes), edges with more than two faces
(non-manifold), and makes the winding consistent per connected piece by majority (a 2-colouring of the face graph,
one sparse connected-components call), counting the faces it had to flip. The volume is the signed volume of that
consistently wound surface; a closed shell with negative volume is inverted unless it lies inside another shell
(generalised winding number), in which case it is a cavity.

**Repair** library choice. MeshFix (pymeshfix) and MeshLab (pymeshlab) are GPL-3.0: importing them from the worker
would put the distributed image under the GPL, which an Apache-2.0 project should not impose on its users, so they
are out. trimesh's own repair closes only triangle and quad holes, and its winding fix walks a networkx graph
(slow at 100k faces). manifold3d (Apache-2.0) guarantees a manifold result from Boolean operations but accepts only
input that is already an oriented 2-manifold: it cannot close a hole or split a non-manifold edge. So the topology
repair is done here, each step vectorised with numpy and scipy.sparse graph components:

1. weld; drop faces on a repeated vertex; keep one of each duplicate face (an oppositely wound pair cancels: it is
   an internal double wall);
2. zero-area faces: a needle (one very short edge) is collapsed, a cap (a vertex on the long edge) splits the
   neighbour across that edge at the vertex (a T-junction), then the sliver goes;
3. winding made consistent by majority per piece;
4. every vertex is split into its fans (faces joined through edges with exactly two oppositely wound faces):
   non-manifold edges and pinched vertices come apart, and each piece becomes an oriented manifold with boundary;
5. open pieces with under 0.2 % of the area (faces left hanging by a vertex at a hole's rim) are dropped, and the
   boundary loops closed (a triangle, or a fan around the loop's centroid); where a piece touches itself (two
   holes that met at a vertex), the vertex copies move 1 % into their own fans so the piece does not pinch;
6. each closed piece is turned outward (positive volume) unless it is a cavity inside another; flat leftovers
   (a flap closed on itself) have no volume and go; a model with nothing enclosing a volume (a flat sheet) is
   refused (InputRejected) rather than "repaired" into a flat, unprintable shell;
7. several pieces are united with manifold3d (cavities subtracted), which also resolves overlapping shells; pieces
   that still touch only along an edge or at a vertex are fused with a small convex joint (0.2 % of the model's
   size) so the result is one manifold shell rather than two that share an edge.

The result is checked with analyze at the precision the file stores (float32, or 6 decimals in OBJ) and repaired
once more if storing it merged anything. Self-intersections inside one shell are not resolved (no cheap exact test
exists without a GPL library); slicers tolerate them. The result is written in the input's format (GLB for glTF
and FBX input: Meshy's repair takes glb/obj/stl only, FBX would need the assimp subprocess for a format no slicer
reads, and GLB is lossless), without textures, as Meshy does.

**Multi-colour**: colours come from the base-colour texture (nearest texel: a filament has one colour, so blending
neighbouring texels would only invent border colours), vertex colours or face colours. A palette of at most
`max_colors` is found by k-means in CIELAB (k-means++ with a fixed seed) on 40k area-weighted surface samples;
near-identical clusters (ΔE < 6) are merged. Faces whose ten lattice samples disagree on the palette colour are
subdivided (red-green refinement, so no T-junction opens the surface) up to `max_depth` times within a face
budget, then each face takes its samples' majority colour. The 3MF carries the colours twice: per the Materials
extension (one `m:colorgroup` per colour, `pid`/`p1` on every triangle: what lib3mf, Printables and Bambu Studio's
colour import read) and as each triangle's painting state, the TriangleSelector code that the slicers load as
filament slots (palette colour k is filament k + 1): `paint_color` (Bambu Studio, OrcaSlicer; not namespaced, so
lib3mf reports one warning per triangle and reads on) and `slic3rpe:mmu_segmentation` (PrusaSlicer).
"""

from __future__ import annotations

import functools
import io
import time
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from inference.pipeline.export import _rows, export_obj, export_stl
from inference.pipeline.export_glb import export_glb
from inference.pipeline.model_input import LoadedModel, OpResult
from inference.pipeline.surface import Material, Surface
from inference.pipeline.thumbnail import render, write_thumbnails
from inference.runners.base import InputRejected

Progress = Callable[[float], None]

WELD_TOLERANCE = 1e-7  # of the bounding-box diagonal
SLIVER = 1e-6  # a face is degenerate when twice its area is below SLIVER x (longest edge)^2
NEEDLE = 1e-2  # a degenerate face whose shortest edge is below NEEDLE x its longest is collapsed, else split
FLAT_VOLUME = 1e-10  # of the diagonal cubed: a closed piece with less volume is a flat leftover
JOINT_RADIUS = 2e-3  # of the diagonal: the joint that fuses pieces touching along an edge or at a vertex
THIN = 0.01  # mean thickness (2 V / A) below this share of the largest dimension is a "thin" warning
DEBRIS = 0.002  # an open piece with less than this share of the area is debris (repair drops it)
SMALL_PART = 1e-3  # a body with less than this share of the volume is "small"

MAX_COLORS_RANGE, MAX_DEPTH_RANGE = (1, 16), (3, 6)
MAX_3MF_FACES = 400_000
PALETTE_SAMPLES = 40_000
MERGE_DELTA_E = 6.0
MATERIALS_NS = "http://schemas.microsoft.com/3dmanufacturing/material/2015/02"
SLIC3RPE_NS = "http://schemas.slic3r.org/3mf/2017/06"


# --------------------------------------------------------------------------------------------- topology helpers


def _diagonal(vertices: np.ndarray) -> float:
    if len(vertices) == 0:
        return 1.0
    return max(float(np.linalg.norm(vertices.max(axis=0) - vertices.min(axis=0))), 1e-12)


def _weld(vertices: np.ndarray, faces: np.ndarray, tolerance: float = WELD_TOLERANCE) -> tuple[np.ndarray, np.ndarray]:
    """Merge vertices by position (a grid of `tolerance` x the diagonal); unreferenced vertices go too."""
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    if len(faces) == 0:
        return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64)
    used = np.unique(faces)
    step = _diagonal(vertices[used]) * tolerance
    keys = np.round((vertices[used] - vertices[used].min(axis=0)) / step).astype(np.int64)
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    remap = np.full(len(vertices), -1, dtype=np.int64)
    remap[used] = inverse.reshape(-1)
    return vertices[used][first], remap[faces]


def _finite(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Which faces have only finite corner positions (NaN or infinite positions have no place on a surface)."""
    finite = np.isfinite(np.asarray(vertices, dtype=np.float64)).all(axis=1)
    return finite[np.asarray(faces, dtype=np.int64)].all(axis=1)


def _compact(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop unreferenced vertices."""
    used, inverse = np.unique(faces, return_inverse=True)
    return vertices[used], inverse.reshape(-1, 3).astype(np.int64)


class _Edges:
    """Edge incidence of a triangle list: slot 3f+k is face f's directed edge (corner k -> corner k+1)."""

    def __init__(self, faces: np.ndarray) -> None:
        self.faces = faces
        self.directed = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
        lo, hi = self.directed.min(axis=1), self.directed.max(axis=1)
        n = int(faces.max()) + 1 if len(faces) else 1
        self.keys, self.slot_edge, self.count = np.unique(lo * n + hi, return_inverse=True, return_counts=True)
        self.slot_edge = self.slot_edge.reshape(-1)
        self.n = n

    def pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Slots (a, b) of the edges with exactly two faces, and whether the pair is oppositely wound."""
        slots = np.flatnonzero(self.count[self.slot_edge] == 2)
        slots = slots[np.argsort(self.slot_edge[slots], kind="stable")]
        a, b = slots[0::2], slots[1::2]
        return a, b, self.directed[a, 0] == self.directed[b, 1]

    def boundary_slots(self) -> np.ndarray:
        return np.flatnonzero(self.count[self.slot_edge] == 1)

    def edge_vertices(self, edge_ids: np.ndarray) -> np.ndarray:
        keys = self.keys[edge_ids]
        return np.column_stack([keys // self.n, keys % self.n])


def _face_geometry(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Twice the area, and the shortest and longest edge length, of each face."""
    tri = vertices[faces]
    double_area = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    lengths = np.linalg.norm(tri[:, [1, 2, 0]] - tri, axis=2)
    return double_area, lengths.min(axis=1), lengths.max(axis=1)


def _repeated(faces: np.ndarray) -> np.ndarray:
    return (faces[:, 0] == faces[:, 1]) | (faces[:, 1] == faces[:, 2]) | (faces[:, 2] == faces[:, 0])


def _slivers(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    double_area, _, longest = _face_geometry(vertices, faces)
    return double_area <= SLIVER * longest**2


def _orientation_flips(faces: np.ndarray, edges: _Edges) -> np.ndarray:
    """Faces to flip so every two-face edge is oppositely wound, keeping each piece's majority orientation.

    Face f is two nodes (f kept, f flipped); an oppositely wound pair links equal states, a same-wound pair links
    opposite states. Each piece gives two mirror components; the one holding more "kept" nodes wins. A
    non-orientable piece (both states of a face in one component) keeps its faces as they are.
    """
    n = len(faces)
    a, b, opposite = edges.pairs()
    fa, fb = a // 3, b // 3
    cols0 = np.where(opposite, fb, fb + n)
    cols1 = np.where(opposite, fb + n, fb)
    rows = np.concatenate([fa, fa + n])
    cols = np.concatenate([cols0, cols1])
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(2 * n, 2 * n))
    count, labels = connected_components(graph, directed=False)
    l0, l1 = labels[:n], labels[n:]
    kept = np.bincount(l0, minlength=count)
    keep = (kept[l0] > kept[l1]) | ((kept[l0] == kept[l1]) & (l0 <= l1))
    return ~keep


def _fans(faces: np.ndarray, edges: _Edges) -> tuple[np.ndarray, np.ndarray]:
    """Split every vertex into its fans: corners joined through oppositely wound two-face edges share a vertex.

    Returns the new faces and, per new vertex, the vertex it came from.
    """
    n = len(faces)
    a, b, opposite = edges.pairs()
    a, b = a[opposite], b[opposite]
    fa, ka = np.divmod(a, 3)
    fb, kb = np.divmod(b, 3)
    # Slot a runs u -> v in face fa; slot b runs v -> u in face fb.
    u_a, v_a = 3 * fa + ka, 3 * fa + (ka + 1) % 3
    v_b, u_b = 3 * fb + kb, 3 * fb + (kb + 1) % 3
    rows = np.concatenate([u_a, v_a])
    cols = np.concatenate([u_b, v_b])
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(3 * n, 3 * n))
    count, labels = connected_components(graph, directed=False)
    source = np.empty(count, dtype=np.int64)
    source[labels] = faces.reshape(-1)
    return labels.reshape(-1, 3).astype(np.int64), source


def _face_components(faces: np.ndarray, edges: _Edges) -> tuple[int, np.ndarray]:
    """Connected pieces of faces joined through shared edges; returns the count and each face's piece."""
    order = np.argsort(edges.slot_edge, kind="stable")
    same = edges.slot_edge[order[1:]] == edges.slot_edge[order[:-1]]
    rows, cols = order[:-1][same] // 3, order[1:][same] // 3
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(len(faces), len(faces)))
    return connected_components(graph, directed=False)


def _signed_volumes(vertices: np.ndarray, faces: np.ndarray, origin: np.ndarray) -> np.ndarray:
    tri = vertices[faces] - origin
    return np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])) / 6.0


def _winding_number(point: np.ndarray, triangles: np.ndarray) -> float:
    """Generalised winding number of `point` with respect to triangles (T, 3, 3) (Van Oosterom-Strackee)."""
    if len(triangles) == 0:
        return 0.0
    a, b, c = (triangles[:, i] - point for i in range(3))
    la, lb, lc = (np.linalg.norm(x, axis=1) for x in (a, b, c))
    ab, ac, bc = (np.einsum("ij,ij->i", x, y) for x, y in ((a, b), (a, c), (b, c)))
    numerator = np.einsum("ij,ij->i", a, np.cross(b, c))
    denominator = la * lb * lc + ab * lc + ac * lb + bc * la
    return float(np.sum(2.0 * np.arctan2(numerator, denominator)) / (4.0 * np.pi))


def _boundary_loops(faces: np.ndarray, edges: _Edges) -> list[np.ndarray]:
    """Closed loops of boundary vertices, each in the direction of its faces' edges (u -> v)."""
    directed = edges.directed[edges.boundary_slots()]
    if len(directed) == 0:
        return []
    successor: dict[int, list[int]] = {}
    for u, v in directed.tolist():
        successor.setdefault(u, []).append(v)
    loops = []
    for start in list(successor):
        while successor.get(start):
            loop, current = [start], successor[start].pop()
            while current != start and successor.get(current):
                loop.append(current)
                current = successor[current].pop()
            if current == start and len(loop) >= 3:
                loops.append(np.array(loop, dtype=np.int64))
    return loops


# --------------------------------------------------------------------------------------------- analysis


def _shells(vertices: np.ndarray, faces: np.ndarray, edges: _Edges) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per face its piece; per piece its signed volume and whether it is a cavity (inside another piece)."""
    count, piece = _face_components(faces, edges)
    origin = vertices.mean(axis=0) if len(vertices) else np.zeros(3)
    volume = np.bincount(piece, weights=_signed_volumes(vertices, faces, origin), minlength=count)
    cavity = np.zeros(count, dtype=bool)
    flat = FLAT_VOLUME * _diagonal(vertices) ** 3
    negative = np.flatnonzero(volume < -flat)
    if len(negative) and count > 1:
        for p in negative[:64]:
            others = faces[(piece != p) & (volume[piece] > flat)]
            probe = vertices[faces[piece == p][0, 0]]
            cavity[p] = _winding_number(probe, vertices[others]) > 0.5
    return piece, volume, cavity


def _printability(vertices: np.ndarray, faces: np.ndarray, face_count: int | None = None) -> dict:
    """Meshy's `printability` object (plus our own metrics and issue list) for a triangle list."""
    raw_faces = len(faces)
    finite = _finite(vertices, faces)
    vertices, faces = _weld(vertices, np.asarray(faces)[finite])
    repeated = _repeated(faces) if len(faces) else np.zeros(0, dtype=bool)
    faces = faces[~repeated]
    degenerate = int(repeated.sum()) + int(np.count_nonzero(~finite))
    metrics: dict = {
        "is_watertight": False,
        "volume": 0.0,
        "non_manifold_edges": 0,
        "degenerate_faces": degenerate,
        "holes": 0,
        "face_count": int(face_count if face_count is not None else raw_faces),
        "vertex_count": int(len(np.unique(faces))) if len(faces) else 0,
    }
    issues: list[dict] = []
    if len(faces) == 0:
        issues.append(_issue("empty", "error", "the model has no surface", 1))
        return _result(metrics, issues)

    degenerate += int(_slivers(vertices, faces).sum())
    metrics["degenerate_faces"] = degenerate
    edges = _Edges(faces)
    boundary = edges.count == 1
    non_manifold = int(np.count_nonzero(edges.count > 2))
    # Holes: connected groups of boundary edges.
    holes = 0
    if boundary.any():
        ends = edges.edge_vertices(np.flatnonzero(boundary))
        graph = coo_matrix(
            (np.ones(len(ends), dtype=np.int8), (ends[:, 0], ends[:, 1])), shape=(edges.n, edges.n)
        ).tocsr()
        _, labels = connected_components(graph, directed=False)
        holes = len(np.unique(labels[np.unique(ends)]))
    flips = _orientation_flips(faces, edges)
    oriented = np.where(flips[:, None], faces[:, ::-1], faces)
    oriented_edges = _Edges(oriented)
    _, _, opposite = oriented_edges.pairs()
    non_orientable_edges = int(np.count_nonzero(~opposite))
    watertight = bool(np.all(edges.count == 2))
    piece, volumes, cavity = _shells(vertices, oriented, oriented_edges)
    flat = FLAT_VOLUME * _diagonal(vertices) ** 3
    bodies = volumes[(volumes > flat) | ((volumes < -flat) & ~cavity)]
    inverted = int(np.count_nonzero((volumes < -flat) & ~cavity))
    volume = float(volumes.sum())
    tri = vertices[oriented]
    area = float(np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1).sum() / 2)
    extent = vertices[np.unique(faces)].max(axis=0) - vertices[np.unique(faces)].min(axis=0)

    # Pinched vertices: more than one fan at a vertex that is on no boundary or non-manifold edge.
    _, source = _fans(oriented, oriented_edges)
    fans_per_vertex = np.bincount(source, minlength=len(vertices))
    irregular = np.zeros(len(vertices), dtype=bool)
    bad_edges = np.flatnonzero(edges.count != 2)
    irregular[edges.edge_vertices(bad_edges).reshape(-1)] = True
    pinched = int(np.count_nonzero((fans_per_vertex > 1) & ~irregular))

    metrics.update(
        {
            "is_watertight": watertight,
            "volume": volume,
            "non_manifold_edges": non_manifold,
            "holes": int(holes),
            "vertex_count": int(len(np.unique(faces))),
            "boundary_edges": int(np.count_nonzero(boundary)),
            "non_manifold_vertices": pinched,
            "flipped_faces": int(np.count_nonzero(flips)),
            "winding_consistent": bool(not flips.any() and non_orientable_edges == 0),
            "shells": int(len(volumes)),
            "bodies": int(len(bodies)),
            "cavities": int(np.count_nonzero(cavity)),
            "inverted_shells": inverted,
            "surface_area": area,
            "dimensions": [float(x) for x in extent],
        }
    )
    if not len(bodies):
        issues.append(_issue("no_volume", "error", "the model encloses no volume", 1))
    if holes:
        issues.append(_issue("holes", "error", f"{holes} hole(s) in the surface: the model is not watertight", holes))
    if non_manifold:
        issues.append(
            _issue("non_manifold_edges", "error", f"{non_manifold} edge(s) shared by more than two faces", non_manifold)
        )
    if inverted:
        issues.append(_issue("inverted", "error", "the surface is inside out (negative volume)", inverted))
    if non_orientable_edges:
        issues.append(
            _issue("non_orientable", "error", "the surface cannot be consistently oriented", non_orientable_edges)
        )
    if degenerate:
        issues.append(_issue("degenerate_faces", "warning", f"{degenerate} face(s) have no area", degenerate))
    if flips.any():
        n = int(np.count_nonzero(flips))
        issues.append(_issue("inconsistent_winding", "warning", f"{n} face(s) face the wrong way", n))
    if len(bodies) > 1:
        small = int(np.count_nonzero(np.abs(bodies) < SMALL_PART * np.abs(bodies).sum()))
        text = f"{len(bodies)} disconnected parts" + (f", {small} of them very small" if small else "")
        issues.append(_issue("multiple_shells", "warning", text, int(len(bodies))))
    if pinched:
        issues.append(_issue("non_manifold_vertices", "warning", f"{pinched} vertex(es) where parts touch", pinched))
    if watertight and volume > 0 and area > 0:
        # Mean thickness 2 V / A of each body against its own largest dimension (a slab of thickness t has
        # V = t A / 2); cavities are left out, so a hollow body is judged by its outside.
        face_area = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1) / 2
        piece_area = np.bincount(piece, weights=face_area, minlength=len(volumes))
        low = np.full((len(volumes), 3), np.inf)
        high = np.full((len(volumes), 3), -np.inf)
        np.minimum.at(low, piece, tri.min(axis=1))
        np.maximum.at(high, piece, tri.max(axis=1))
        solid = np.flatnonzero(volumes > flat)
        thickness = 2.0 * volumes[solid] / np.maximum(piece_area[solid], 1e-30)
        metrics["mean_thickness"] = 2.0 * volume / area
        thin = int(np.count_nonzero(thickness < THIN * (high[solid] - low[solid]).max(axis=1)))
        if thin:
            issues.append(_issue("thin", "warning", "the model is very thin for its size; thin parts may fail", thin))
    return _result(metrics, issues)


def _issue(code: str, severity: str, message: str, count: int) -> dict:
    return {"code": code, "severity": severity, "message": message, "count": int(count)}


def _result(metrics: dict, issues: list[dict]) -> dict:
    errors = sum(1 for i in issues if i["severity"] == "error")
    warnings = sum(1 for i in issues if i["severity"] == "warning")
    return {
        "_version": 1,
        "status": "error" if errors else "warning" if warnings else "healthy",
        "issue_count": len(issues),
        "error_count": errors,
        "warning_count": warnings,
        "metrics": metrics,
        "issues": issues,
        "evaluated_at": int(time.time() * 1000),
    }


def analyze(model: LoadedModel, out_dir: Path, progress: Progress) -> OpResult:
    """Printability of the model (Meshy's `printability` object); writes nothing."""
    progress(0.0)
    mesh = model.mesh
    report = _printability(np.asarray(mesh.vertices), np.asarray(mesh.faces), face_count=len(mesh.faces))
    progress(1.0)
    return OpResult(model_files={}, extra={"printability": report})


# --------------------------------------------------------------------------------------------- repair


def _dedupe(faces: np.ndarray) -> np.ndarray:
    """One face per vertex triple; an oppositely wound pair of the same triple cancels (an internal wall)."""
    if len(faces) == 0:
        return faces
    order = np.argsort(faces, axis=1)
    sorted_faces = np.take_along_axis(faces, order, axis=1)
    # Even permutations of the sorted triple keep the winding.
    parity = np.isin(order[:, 0] * 9 + order[:, 1] * 3 + order[:, 2], [0 * 9 + 1 * 3 + 2, 1 * 9 + 2 * 3, 2 * 9 + 1])
    _, group = np.unique(sorted_faces, axis=0, return_inverse=True)
    group = group.reshape(-1)
    balance = np.bincount(group, weights=np.where(parity, 1.0, -1.0))
    first_pos = np.full(len(balance), -1, dtype=np.int64)
    first_neg = np.full(len(balance), -1, dtype=np.int64)
    idx = np.arange(len(faces))
    first_pos[group[parity][::-1]] = idx[parity][::-1]
    first_neg[group[~parity][::-1]] = idx[~parity][::-1]
    keep = np.concatenate([first_pos[balance > 0], first_neg[balance < 0]])
    return faces[np.sort(keep)]


def _fix_slivers(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Remove zero-area faces without opening the surface: collapse needles, split the neighbour of caps."""
    for _ in range(8):
        faces = faces[~_repeated(faces)]
        sliver = np.flatnonzero(_slivers(vertices, faces))
        if len(sliver) == 0:
            return vertices, faces
        _, shortest, longest = _face_geometry(vertices, faces[sliver])
        needles = sliver[shortest < NEEDLE * longest]
        if len(needles):
            tri = vertices[faces[needles]]
            lengths = np.linalg.norm(tri[:, [1, 2, 0]] - tri, axis=2)
            k = lengths.argmin(axis=1)
            a = faces[needles, k]
            b = faces[needles, (k + 1) % 3]
            graph = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(len(vertices), len(vertices)))
            _, labels = connected_components(graph, directed=False)
            # Collapse each group onto its lowest vertex index.
            target = np.full(labels.max() + 1, len(vertices), dtype=np.int64)
            np.minimum.at(target, labels, np.arange(len(vertices)))
            faces = target[labels][faces]
            continue
        edges = _Edges(faces)
        touched = np.zeros(len(faces), dtype=bool)
        replaced: dict[int, np.ndarray] = {}
        added: list[np.ndarray] = []
        drop: list[int] = []
        slot_order = np.argsort(edges.slot_edge, kind="stable")
        starts = np.searchsorted(edges.slot_edge[slot_order], np.arange(len(edges.count)))
        for f in sliver.tolist():
            if touched[f]:
                continue
            tri = vertices[faces[f]]
            opposite = np.linalg.norm(tri[[2, 0, 1]] - tri[[1, 2, 0]], axis=1)  # edge opposite each corner
            k = int(opposite.argmax())
            m = int(faces[f, k])
            edge = int(edges.slot_edge[3 * f + (k + 1) % 3])
            slots = slot_order[starts[edge] : starts[edge] + edges.count[edge]]
            neighbours = [int(s) for s in slots if s // 3 != f]
            if any(touched[s // 3] for s in neighbours):
                continue
            touched[f] = True
            drop.append(f)
            for s in neighbours:
                g, j = divmod(s, 3)
                touched[g] = True
                s_v, t_v, x_v = faces[g, j], faces[g, (j + 1) % 3], faces[g, (j + 2) % 3]
                replaced[g] = np.array([s_v, m, x_v])
                added.append(np.array([m, t_v, x_v]))
        faces = faces.copy()
        for g, row in replaced.items():
            faces[g] = row
        keep = np.ones(len(faces), dtype=bool)
        keep[drop] = False
        faces = np.concatenate([faces[keep], np.array(added, dtype=np.int64).reshape(-1, 3)])
    faces = faces[~_repeated(faces)]
    return vertices, faces[~_slivers(vertices, faces)]


def _close(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Orient, split into manifold fans and close every boundary loop; the result is closed and oriented.
    Also returns, per vertex, the input vertex it is a copy of (a new index for each loop's centre)."""
    origin = np.arange(len(vertices))
    for attempt in range(4):
        edges = _Edges(faces)
        flips = _orientation_flips(faces, edges)
        faces = np.where(flips[:, None], faces[:, ::-1], faces)
        edges = _Edges(faces)
        faces, source = _fans(faces, edges)
        vertices, origin = vertices[source], origin[source]
        edges = _Edges(faces)
        _, _, opposite = edges.pairs()
        if np.all(edges.count <= 2) and opposite.all():
            break
        if attempt == 3:
            # Left only by a non-orientable piece: drop the faces on its bad edges; their loops are closed below.
            bad = np.zeros(len(edges.count), dtype=bool)
            a, _, _ = edges.pairs()
            bad[edges.slot_edge[a[~opposite]]] = True
            bad |= edges.count > 2
            faces = faces[~bad[edges.slot_edge].reshape(-1, 3).any(axis=1)]
            faces, source = _fans(faces, _Edges(faces))
            vertices, origin = vertices[source], origin[source]
    faces = _drop_debris(vertices, faces)
    loops = _boundary_loops(faces, _Edges(faces))
    new_vertices, new_faces = [vertices], [faces]
    next_index = len(vertices)
    for loop in loops:
        if len(loop) == 3:
            new_faces.append(loop[[0, 2, 1]][None])
            continue
        centre = vertices[loop].mean(axis=0)
        new_vertices.append(centre[None])
        following = np.roll(loop, -1)
        new_faces.append(np.column_stack([following, loop, np.full(len(loop), next_index)]))
        next_index += 1
    origin = np.concatenate([origin, origin.max(initial=-1) + 1 + np.arange(next_index - len(vertices))])
    return np.concatenate(new_vertices), np.concatenate(new_faces).astype(np.int64), origin


def _drop_debris(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Drop open pieces with under DEBRIS of the surface's area (faces left hanging by a vertex at the rim of a
    hole, torn strips): closed on themselves they would only be slivers overlapping the filled hole."""
    edges = _Edges(faces)
    count, piece = _face_components(faces, edges)
    if count < 2:
        return faces
    double_area, _, _ = _face_geometry(vertices, faces)
    piece_area = np.bincount(piece, weights=double_area, minlength=count)
    open_piece = np.zeros(count, dtype=bool)
    open_piece[piece[edges.boundary_slots() // 3]] = True
    debris = open_piece & (piece_area < DEBRIS * piece_area.sum())
    if debris.all():
        return faces
    return faces[~debris[piece]]


def _separate_self_contacts(vertices: np.ndarray, faces: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """Where a piece touches itself (copies of one input vertex in the same piece, e.g. two holes that met at a
    vertex), move each copy a little into its own fan, so the closed piece does not pinch. Contacts between
    different pieces are left to `_unite`, which fuses them."""
    count, piece = _face_components(faces, _Edges(faces))
    vertex_piece = np.zeros(len(vertices), dtype=np.int64)
    vertex_piece[faces.reshape(-1)] = np.repeat(piece, 3)
    _, group, size = np.unique(origin * count + vertex_piece, return_inverse=True, return_counts=True)
    moving = size[group.reshape(-1)] > 1
    if not moving.any():
        return vertices
    centroid = vertices[faces].mean(axis=1)
    total = np.zeros_like(vertices)
    np.add.at(total, faces.reshape(-1), np.repeat(centroid, 3, axis=0))
    fan_centre = total / np.maximum(np.bincount(faces.reshape(-1), minlength=len(vertices)), 1)[:, None]
    vertices = vertices.copy()
    vertices[moving] += 0.01 * (fan_centre[moving] - vertices[moving])
    return vertices


def _pieces(vertices: np.ndarray, faces: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Closed pieces as face lists: solids (turned outward) and cavities (turned outward too, to subtract)."""
    edges = _Edges(faces)
    piece, volumes, cavity = _shells(vertices, faces, edges)
    flat = FLAT_VOLUME * _diagonal(vertices) ** 3
    order = np.argsort(piece, kind="stable")
    bounds = np.searchsorted(piece[order], np.arange(len(volumes) + 1))
    solids, cavities = [], []
    for p in np.flatnonzero(np.abs(volumes) > flat).tolist():
        own = faces[order[bounds[p] : bounds[p + 1]]]
        if volumes[p] < 0:
            own = own[:, ::-1]
        (cavities if cavity[p] else solids).append(own)
    if not solids:
        raise InputRejected("the model encloses no volume (it is flat), so it cannot be made printable")
    return solids, cavities


def _to_manifold(vertices: np.ndarray, faces: np.ndarray):  # type: ignore[no-untyped-def]
    import manifold3d

    v, f = _compact(vertices, faces)
    mesh = manifold3d.Mesh64(
        vert_properties=np.ascontiguousarray(v, dtype=np.float64), tri_verts=np.ascontiguousarray(f, dtype=np.uint64)
    )
    result = manifold3d.Manifold(mesh)
    if result.status() != manifold3d.Error.NoError or result.is_empty():
        return None
    return result


def _from_manifold(solid) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    mesh = solid.to_mesh64()
    return np.asarray(mesh.vert_properties)[:, :3].astype(np.float64), np.asarray(mesh.tri_verts).astype(np.int64)


def _joints(vertices: np.ndarray, faces: np.ndarray, radius: float) -> list[np.ndarray]:
    """Point sets whose hulls fuse parts that touch along an edge or at a vertex (after welding)."""
    welded_v, welded_f = _weld(vertices, faces)
    remap = np.zeros(len(vertices), dtype=np.int64)
    remap[faces.reshape(-1)] = welded_f.reshape(-1)
    pinched = np.bincount(remap[np.unique(faces)], minlength=len(welded_v)) > 1
    if not pinched.any():
        return []
    edges = _Edges(welded_f)
    shared = edges.edge_vertices(np.flatnonzero(edges.count > 2))
    offsets = radius * np.concatenate([np.eye(3), -np.eye(3)])
    groups = [welded_v[pair] for pair in shared]
    on_edge = np.zeros(len(welded_v), dtype=bool)
    on_edge[shared.reshape(-1)] = True
    groups += [welded_v[[v]] for v in np.flatnonzero(pinched & ~on_edge)]
    return [(points[:, None, :] + offsets[None]).reshape(-1, 3) for points in groups]


def _unite(vertices: np.ndarray, solids: list[np.ndarray], cavities: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """One manifold from the closed pieces: union of the solids minus the cavities, parts that touch fused."""
    radius = JOINT_RADIUS * _diagonal(vertices)
    if len(solids) == 1 and not cavities:
        v, f = _compact(vertices, solids[0])
        if not _joints(v, f, radius):
            return v, f
    import manifold3d  # Apache-2.0; only needed when pieces must be united

    parts = [(f, _to_manifold(vertices, f)) for f in solids]
    holes = [(f, _to_manifold(vertices, f)) for f in cavities]
    good = [m for _, m in parts if m is not None]
    leftovers = [f for f, m in parts if m is None]
    if not good:
        return _compact(vertices, np.concatenate(solids + [c[:, ::-1] for c in cavities]))
    solid = manifold3d.Manifold.batch_boolean(good, manifold3d.OpType.Add)
    cut = [m for _, m in holes if m is not None]
    if cut:
        solid = manifold3d.Manifold.batch_boolean([solid, *cut], manifold3d.OpType.Subtract)
    for _ in range(2):
        v, f = _from_manifold(solid)
        joints = [manifold3d.Manifold.hull_points(points) for points in _joints(v, f, radius)]
        joints = [j for j in joints if not j.is_empty()]
        if not joints:
            break
        solid = manifold3d.Manifold.batch_boolean([solid, *joints], manifold3d.OpType.Add)
    v, f = _from_manifold(solid)
    for extra in leftovers:
        ev, ef = _compact(vertices, extra)
        f = np.concatenate([f, ef + len(v)])
        v = np.concatenate([v, ev])
    return v, f


def _repair_arrays(vertices: np.ndarray, faces: np.ndarray, progress: Progress) -> tuple[np.ndarray, np.ndarray]:
    vertices, faces = _weld(vertices, np.asarray(faces)[_finite(vertices, faces)])
    faces = _dedupe(faces[~_repeated(faces)])
    progress(0.15)
    vertices, faces = _fix_slivers(vertices, faces)
    faces = _dedupe(faces)
    if len(faces) == 0:
        raise InputRejected("the model has no surface to repair")
    progress(0.3)
    vertices, faces, origin = _close(vertices, faces)
    vertices = _separate_self_contacts(vertices, faces, origin)
    progress(0.5)
    solids, cavities = _pieces(vertices, faces)
    progress(0.6)
    vertices, faces = _unite(vertices, solids, cavities)
    vertices, faces = _weld(vertices, faces, tolerance=1e-9)
    return vertices, faces[~_repeated(faces)]


def _output_precision(vertices: np.ndarray, fmt: str) -> np.ndarray:
    """The positions as the writer will store them: float32 (GLB, STL) or 6 decimals (OBJ)."""
    if fmt == "obj":
        return np.round(vertices, 6)
    return vertices.astype(np.float32).astype(np.float64)


def repair_mesh(
    vertices: np.ndarray, faces: np.ndarray, fmt: str = "glb", progress: Progress | None = None
) -> tuple[np.ndarray, np.ndarray, dict]:
    """(vertices, faces, printability) of a closed, manifold, outward mesh at the precision `fmt` stores (see the
    module doc). Raises InputRejected when nothing encloses a volume."""
    progress = progress or (lambda _: None)
    v, f = _repair_arrays(vertices, faces, progress)
    v = _output_precision(v, fmt)
    report = _printability(v, f)
    if report["error_count"]:
        # Storing the positions merged or flattened something: repair once more at the stored precision.
        v, f = _repair_arrays(v, f, lambda _: None)
        v = _output_precision(v, fmt)
        report = _printability(v, f)
    return v, f, report


def repair(model: LoadedModel, out_dir: Path, progress: Progress) -> OpResult:
    """A watertight, manifold, outward-oriented copy of the model in its own format (glTF/FBX -> GLB), no
    textures, with `preview.png`; `extra["printability"]` is the analysis of the result."""
    out_dir = Path(out_dir)
    progress(0.0)
    fmt = model.source_format if model.source_format in ("glb", "obj", "stl") else "glb"
    vertices, faces, report = repair_mesh(np.asarray(model.mesh.vertices), np.asarray(model.mesh.faces), fmt, progress)
    progress(0.8)
    normals = trimesh.Trimesh(vertices, faces, process=False).vertex_normals
    surface = Surface.from_triangles(vertices, np.asarray(normals), faces)
    if fmt == "obj":
        obj, mtl = export_obj(out_dir, surface, {})
        files = {"obj": obj, "mtl": mtl}
    elif fmt == "stl":
        export_stl(out_dir / "model.stl", surface)
        files = {"stl": "model.stl"}
    else:
        export_glb(out_dir / "model.glb", surface, Material())
        files = {"glb": "model.glb"}
    rgb, alpha = render(vertices, faces, np.asarray(normals), closed=True)
    thumbnail, _ = write_thumbnails(rgb, alpha, out_dir, with_alpha=False)
    progress(1.0)
    return OpResult(model_files=files, thumbnail=thumbnail, extra={"printability": report})


# --------------------------------------------------------------------------------------------- colour


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of sRGB colours given as 0..255 (any shape (..., 3))."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = linear @ _RGB_TO_XYZ.T / _WHITE
    d = 6.0 / 29.0
    f = np.where(xyz > d**3, np.cbrt(xyz), xyz / (3 * d * d) + 4.0 / 29.0)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def lab_to_srgb(lab: np.ndarray) -> np.ndarray:
    """sRGB 0..255 (uint8) of CIELAB colours."""
    lab = np.asarray(lab, dtype=np.float64)
    fy = (lab[..., 0] + 16) / 116
    f = np.stack([fy + lab[..., 1] / 500, fy, fy - lab[..., 2] / 200], axis=-1)
    d = 6.0 / 29.0
    xyz = np.where(f > d, f**3, 3 * d * d * (f - 4.0 / 29.0)) * _WHITE
    linear = np.clip(xyz @ np.linalg.inv(_RGB_TO_XYZ).T, 0, 1)
    c = np.where(linear <= 0.0031308, linear * 12.92, 1.055 * linear ** (1 / 2.4) - 0.055)
    return np.clip(np.rint(c * 255), 0, 255).astype(np.uint8)


_RGB_TO_XYZ = np.array(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]]
)
_WHITE = np.array([0.95047, 1.0, 1.08883])


def kmeans_lab(points: np.ndarray, weights: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Weighted k-means (k-means++ seeding with a fixed seed, 40 Lloyd steps); fewer centres when the points have
    fewer distinct values. Deterministic for the same input."""
    rng = np.random.default_rng(seed)
    weights = np.asarray(weights, dtype=np.float64)
    centres = [points[int(np.argmax(weights))]]
    nearest = np.sum((points - centres[0]) ** 2, axis=1)
    while len(centres) < k:
        p = nearest * weights
        if p.sum() <= 1e-9:
            break
        centres.append(points[rng.choice(len(points), p=p / p.sum())])
        nearest = np.minimum(nearest, np.sum((points - centres[-1]) ** 2, axis=1))
    centres = np.array(centres)
    for _ in range(40):
        label = np.argmin(((points[:, None, :] - centres[None]) ** 2).sum(axis=2), axis=1)
        mass = np.bincount(label, weights=weights, minlength=len(centres))
        moved = np.stack(
            [np.bincount(label, weights=weights * points[:, i], minlength=len(centres)) for i in range(3)], axis=1
        )
        alive = mass > 0
        updated = centres.copy()
        updated[alive] = moved[alive] / mass[alive, None]
        done = np.allclose(updated, centres, atol=1e-4)
        centres = updated[alive]
        if done:
            break
    return centres


def _merge_close(centres: np.ndarray, weights: np.ndarray, limit: float) -> np.ndarray:
    """Merge centres closer than `limit` (ΔE76), closest pair first, weighted."""
    centres, weights = centres.copy(), weights.copy()
    while len(centres) > 1:
        d = np.linalg.norm(centres[:, None] - centres[None], axis=2)
        np.fill_diagonal(d, np.inf)
        i, j = np.unravel_index(np.argmin(d), d.shape)
        if d[i, j] >= limit:
            break
        total = weights[i] + weights[j]
        centres[i] = (centres[i] * weights[i] + centres[j] * weights[j]) / max(total, 1e-12)
        weights[i] = total
        centres, weights = np.delete(centres, j, axis=0), np.delete(weights, j)
    return centres


class _ColourSource:
    """sRGB (uint8) colour at points of the model's faces, given as a parent face and barycentric weights."""

    def __init__(self, mesh: trimesh.Trimesh, base_color: Image.Image | None) -> None:
        visual = mesh.visual
        faces = np.asarray(mesh.faces)
        self.kind = None
        uv = getattr(visual, "uv", None)
        if base_color is not None and uv is not None and len(uv) == len(mesh.vertices):
            image = base_color.convert("RGB") if base_color.mode != "RGB" else base_color
            texture = np.asarray(image, dtype=np.uint8)
            factor = getattr(getattr(visual, "material", None), "baseColorFactor", None)
            if factor is not None:
                scale = np.asarray(factor, dtype=np.float64)[:3]
                scale = scale / 255.0 if scale.max() > 1.0 else scale
                if not np.allclose(scale, 1.0):
                    texture = np.clip(np.rint(texture * scale), 0, 255).astype(np.uint8)
            self.kind, self.texture = "texture", texture
            self.corners = np.asarray(uv, dtype=np.float64)[faces]  # (F, 3, 2)
            return
        if getattr(visual, "kind", None) == "vertex":
            colours = np.asarray(visual.vertex_colors)[:, :3].astype(np.float64)
            self.kind, self.corners = "vertex", colours[faces]  # (F, 3, 3)
        elif getattr(visual, "kind", None) == "face":
            self.kind, self.face_colours = "face", np.asarray(visual.face_colors)[:, :3].astype(np.uint8)

    def __call__(self, parent: np.ndarray, bary: np.ndarray) -> np.ndarray:
        if self.kind == "face":
            return self.face_colours[parent]
        if self.kind == "vertex":
            return np.clip(np.rint(np.einsum("nk,nkc->nc", bary, self.corners[parent])), 0, 255).astype(np.uint8)
        uv = np.einsum("nk,nkc->nc", bary, self.corners[parent])
        h, w = self.texture.shape[:2]
        x = np.floor((uv[:, 0] % 1.0) * w).astype(np.int64) % w
        y = np.floor((1.0 - uv[:, 1] % 1.0) * h).astype(np.int64) % h
        return self.texture[y, x]


# Barycentric lattice with 10 points (i + j + k = 3): corners, two points on each edge, the centroid.
_LATTICE = np.array([(i, j, 3 - i - j) for i in range(4) for j in range(4 - i)], dtype=np.float64) / 3.0
_CENTROID = int(np.flatnonzero(np.all(np.isclose(_LATTICE, 1 / 3), axis=1))[0])
# Inset the lattice a little so samples on a shared edge belong to this face's texels, not the neighbour's.
_SAMPLES = 0.9 * _LATTICE + 0.1 / 3.0


def _paint_code(filament: int) -> str:
    """PrusaSlicer / Bambu Studio TriangleSelector code of an unsplit triangle painted with `filament` (1-based):
    states 1-2 are stored as 2 bits, 3 and up as the escape "11" plus 4 bits of state - 3; nibbles as hex, reversed."""
    if filament <= 0:
        return ""
    if filament < 3:
        return format(filament << 2, "X")
    return format(filament - 3, "X") + "C"


def _params(params: Mapping) -> tuple[int, int]:
    out = []
    for key, default, (low, high) in (("max_colors", 4, MAX_COLORS_RANGE), ("max_depth", 4, MAX_DEPTH_RANGE)):
        value = params.get(key)
        value = default if value is None else value
        if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
            raise InputRejected(f"{key} must be an integer from {low} to {high}")
        if not low <= int(value) <= high:
            raise InputRejected(f"{key} must be from {low} to {high}")
        out.append(int(value))
    return out[0], out[1]


def _palette(source: _ColourSource, vertices: np.ndarray, faces: np.ndarray, k: int) -> np.ndarray:
    """Lab palette (at most k colours) from area-weighted surface samples."""
    rng = np.random.default_rng(0)
    double_area, _, _ = _face_geometry(vertices, faces)
    total = double_area.sum()
    probabilities = double_area / total if total > 0 else None
    parent = rng.choice(len(faces), size=PALETTE_SAMPLES, p=probabilities)
    r = rng.random((PALETTE_SAMPLES, 2))
    flip = r.sum(axis=1) > 1
    r[flip] = 1 - r[flip]
    bary = np.column_stack([1 - r.sum(axis=1), r])
    # 6 bits per channel: enough for a filament palette, and the histogram stays small.
    colours = source(parent, bary) >> 2
    unique, counts = np.unique(colours, axis=0, return_counts=True)
    lab = srgb_to_lab(unique.astype(np.float64) * 4 + 2)
    centres = kmeans_lab(lab, counts.astype(np.float64), k)
    label = np.argmin(((lab[:, None] - centres[None]) ** 2).sum(axis=2), axis=1)
    weights = np.bincount(label, weights=counts, minlength=len(centres))
    centres = _merge_close(centres, weights, MERGE_DELTA_E)
    # Most-used colour first: it becomes the object's default colour and filament 1.
    label = np.argmin(((lab[:, None] - centres[None]) ** 2).sum(axis=2), axis=1)
    weights = np.bincount(label, weights=counts, minlength=len(centres))
    return centres[np.argsort(-weights, kind="stable")]


@functools.cache
def _grid_lab() -> np.ndarray:
    """CIELAB of the centre of every 6-bit-per-channel sRGB cell, (64^3, 3)."""
    grid = np.stack(np.meshgrid(*[np.arange(64)] * 3, indexing="ij"), axis=-1).reshape(-1, 3) * 4 + 2
    return srgb_to_lab(grid.astype(np.float64))


def _classifier(palette: np.ndarray) -> np.ndarray:
    """Palette index for every 6-bit-per-channel sRGB colour (a 64^3 lookup table)."""
    lab = _grid_lab()
    table = np.empty(len(lab), dtype=np.int16)
    for start in range(0, len(lab), 65536):
        chunk = lab[start : start + 65536]
        table[start : start + 65536] = np.argmin(((chunk[:, None] - palette[None]) ** 2).sum(axis=2), axis=1)
    return table.reshape(64, 64, 64)


def _face_labels(source: _ColourSource, table: np.ndarray, parent: np.ndarray, bary: np.ndarray) -> np.ndarray:
    """Palette index of each lattice sample of each face: (F, 10)."""
    points = np.einsum("sk,fkc->fsc", _SAMPLES, bary).reshape(-1, 3)
    colours = source(np.repeat(parent, len(_SAMPLES)), points) >> 2
    return table[colours[:, 0], colours[:, 1], colours[:, 2]].reshape(len(parent), len(_SAMPLES))


def _refine(
    positions: np.ndarray, faces: np.ndarray, parent: np.ndarray, bary: np.ndarray, red: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One red-green refinement step: `red` faces split in four, neighbours closed without T-junctions (a face
    with two split edges is split in four too, one with a single split edge in two)."""
    edges = _Edges(faces)
    face_edges = edges.slot_edge.reshape(-1, 3)
    split = np.zeros(len(edges.count), dtype=bool)
    red = red.copy()
    while True:
        split[face_edges[red]] = True
        n_split = split[face_edges].sum(axis=1)
        promote = (n_split >= 2) & ~red
        if not promote.any():
            break
        red |= promote
    n_split = split[face_edges].sum(axis=1)
    mid_index = np.full(len(split), -1, dtype=np.int64)
    mid_index[split] = len(positions) + np.arange(int(split.sum()))
    ends = edges.edge_vertices(np.flatnonzero(split))
    positions = np.concatenate([positions, positions[ends].mean(axis=1)])

    keep = n_split == 0
    out_faces, out_parent, out_bary = [faces[keep]], [parent[keep]], [bary[keep]]
    r = np.flatnonzero(red)
    if len(r):
        v, b = faces[r], bary[r]
        m = mid_index[face_edges[r]]  # midpoints of edges (0-1), (1-2), (2-0)
        mb = (b[:, [0, 1, 2]] + b[:, [1, 2, 0]]) / 2
        children = [
            (np.column_stack([v[:, 0], m[:, 0], m[:, 2]]), np.stack([b[:, 0], mb[:, 0], mb[:, 2]], axis=1)),
            (np.column_stack([m[:, 0], v[:, 1], m[:, 1]]), np.stack([mb[:, 0], b[:, 1], mb[:, 1]], axis=1)),
            (np.column_stack([m[:, 2], m[:, 1], v[:, 2]]), np.stack([mb[:, 2], mb[:, 1], b[:, 2]], axis=1)),
            (np.column_stack([m[:, 0], m[:, 1], m[:, 2]]), np.stack([mb[:, 0], mb[:, 1], mb[:, 2]], axis=1)),
        ]
        for f, bb in children:
            out_faces.append(f)
            out_parent.append(parent[r])
            out_bary.append(bb)
    g = np.flatnonzero((n_split == 1) & ~red)
    if len(g):
        k = np.argmax(split[face_edges[g]], axis=1)
        rows = np.arange(len(g))[:, None]
        order = (k[:, None] + np.arange(3)[None]) % 3
        v = faces[g][rows, order]
        b = bary[g][rows, order]
        m = mid_index[face_edges[g][np.arange(len(g)), k]]
        mb = (b[:, 0] + b[:, 1]) / 2
        out_faces += [np.column_stack([v[:, 0], m, v[:, 2]]), np.column_stack([m, v[:, 1], v[:, 2]])]
        out_bary += [np.stack([b[:, 0], mb, b[:, 2]], axis=1), np.stack([mb, b[:, 1], b[:, 2]], axis=1)]
        out_parent += [parent[g], parent[g]]
    return positions, np.concatenate(out_faces), np.concatenate(out_parent), np.concatenate(out_bary)


def _majority(labels: np.ndarray, colours: int) -> np.ndarray:
    rows = np.repeat(np.arange(len(labels)), labels.shape[1])
    votes = np.bincount(rows * colours + labels.reshape(-1), minlength=len(labels) * colours).astype(np.float64)
    votes = votes.reshape(len(labels), colours)
    votes[np.arange(len(labels)), labels[:, _CENTROID]] += 0.5  # ties go to the centre's colour
    return np.argmax(votes, axis=1)


def colour_faces(
    mesh: trimesh.Trimesh,
    base_color: Image.Image | None,
    max_colors: int,
    max_depth: int,
    max_faces: int = MAX_3MF_FACES,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(positions, faces, per-face palette index, palette sRGB uint8 (K, 3)) of the welded, refined surface."""
    source = _ColourSource(mesh, base_color)
    if source.kind is None:
        raise InputRejected("multi-color printing needs a textured model")
    original = np.asarray(mesh.faces, dtype=np.int64)
    parent = np.flatnonzero(_finite(mesh.vertices, original))
    positions, faces = _weld(np.asarray(mesh.vertices), original[parent])
    keep = ~_repeated(faces)
    faces, parent = faces[keep], parent[keep]
    if len(faces) == 0:
        raise InputRejected("the model has no surface")
    palette = _palette(source, positions, faces, max_colors)
    table = _classifier(palette)
    bary = np.broadcast_to(np.eye(3), (len(faces), 3, 3)).copy()
    labels = _face_labels(source, table, parent, bary)
    for _ in range(max_depth):
        mixed = np.any(labels != labels[:, :1], axis=1)
        room = (max_faces - len(faces)) // 5  # a red face adds 3 faces, its green neighbours up to 2 more
        if not mixed.any() or room <= 0:
            break
        candidates = np.flatnonzero(mixed)
        if len(candidates) > room:
            double_area, _, _ = _face_geometry(positions, faces[candidates])
            candidates = candidates[np.argsort(-double_area, kind="stable")[:room]]
        red = np.zeros(len(faces), dtype=bool)
        red[candidates] = True
        refined = _refine(positions, faces, parent, bary, red)
        if len(refined[1]) > max_faces:
            break
        positions, faces, parent, bary = refined
        labels = _face_labels(source, table, parent, bary)
    colour = _majority(labels, len(palette))
    return positions, faces, colour, lab_to_srgb(palette)


def _hex(colour: np.ndarray) -> str:
    r, g, b = (int(x) for x in colour[:3])
    return f"#{r:02X}{g:02X}{b:02X}"


def write_3mf(
    path: Path,
    positions: np.ndarray,
    faces: np.ndarray,
    colour: np.ndarray,
    palette: np.ndarray,
    thumbnail: bytes | None = None,
) -> None:
    """3MF core + Materials extension: one colour group per palette colour, `pid`/`p1` and the slicers' painting
    state (`paint_color`, `slic3rpe:mmu_segmentation`) on every triangle. Metres, like the pipeline's other 3MF
    writer, with the Y-up model rotated to 3MF's Z-up."""
    v = np.asarray(positions, dtype=np.float64)
    z_up = np.column_stack([v[:, 0], -v[:, 2], v[:, 1]])
    hexes = [_hex(c) for c in palette]
    object_id = len(palette) + 1
    groups = "".join(f'<m:colorgroup id="{i + 1}"><m:color color="{h}"/></m:colorgroup>' for i, h in enumerate(hexes))
    counts = np.bincount(colour, minlength=len(palette))
    default = int(np.argmax(counts))
    codes = np.array([_paint_code(i + 1) for i in range(len(palette))])
    tri = np.asarray(faces, dtype=np.int64)
    rows = []
    for start in range(0, len(tri), 100_000):
        chunk, cc = tri[start : start + 100_000], colour[start : start + 100_000]
        rows.append(
            "".join(
                f'<triangle v1="{a}" v2="{b}" v3="{c}" pid="{p + 1}" p1="0" '
                f'paint_color="{code}" slic3rpe:mmu_segmentation="{code}"/>'
                for (a, b, c), p, code in zip(chunk.tolist(), cc.tolist(), codes[cc].tolist(), strict=True)
            )
        )
    model = "".join(
        [
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<model unit="meter" xml:lang="en-US" xmlns="http://schemas.microsoft.com/3dmanufacturing/core/2015/02" '
            f'xmlns:m="{MATERIALS_NS}" xmlns:slic3rpe="{SLIC3RPE_NS}">'
            '<metadata name="Application">MeshFoundry</metadata>'
            '<metadata name="slic3rpe:MmPaintingVersion">1</metadata><resources>',
            groups,
            f'<object id="{object_id}" type="model" pid="{default + 1}" pindex="0"><mesh><vertices>',
            _rows('<vertex x="%.6f" y="%.6f" z="%.6f"/>', z_up),
            "</vertices><triangles>",
            *rows,
            f'</triangles></mesh></object></resources><build><item objectid="{object_id}"/></build></model>',
        ]
    )
    types = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="model" ContentType="application/vnd.ms-package.3dmanufacturing-3dmodel+xml"/>'
        '<Default Extension="png" ContentType="image/png"/>'
        "</Types>"
    )
    thumb_rel = (
        '<Relationship Target="/Metadata/thumbnail.png" Id="rel1" '
        'Type="http://schemas.openxmlformats.org/package/2006/relationships/metadata/thumbnail"/>'
        if thumbnail
        else ""
    )
    rels = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Target="/3D/3dmodel.model" Id="rel0" '
        f'Type="http://schemas.microsoft.com/3dmanufacturing/2013/01/3dmodel"/>{thumb_rel}</Relationships>'
    )
    with zipfile.ZipFile(Path(path), "w", compression=zipfile.ZIP_DEFLATED, compresslevel=3) as zf:
        zf.writestr("[Content_Types].xml", types)
        zf.writestr("_rels/.rels", rels)
        zf.writestr("3D/3dmodel.model", model)
        if thumbnail:
            zf.writestr("Metadata/thumbnail.png", thumbnail)


def multi_color(model: LoadedModel, params: Mapping, out_dir: Path, progress: Progress) -> OpResult:
    """`model.3mf` with at most `max_colors` per-triangle colours taken from the model's texture (or vertex
    colours), borders refined `max_depth` times, and `preview.png`; `extra["colors"]` lists the palette (hex)."""
    out_dir = Path(out_dir)
    max_colors, max_depth = _params(params)
    progress(0.0)
    positions, faces, colour, palette = colour_faces(model.mesh, model.base_color, max_colors, max_depth)
    progress(0.6)
    corners = positions[faces].reshape(-1, 3)
    tri = positions[faces]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)
    rgb, alpha = render(
        corners,
        np.arange(len(corners)).reshape(-1, 3),
        np.repeat(normal, 3, axis=0),
        colors=np.repeat(palette[colour].astype(np.float64) / 255.0, 3, axis=0),
    )
    thumbnail, _ = write_thumbnails(rgb, alpha, out_dir, with_alpha=False)
    small = io.BytesIO()
    Image.open(out_dir / thumbnail).resize((256, 256), Image.Resampling.LANCZOS).save(small, format="PNG")
    progress(0.8)
    write_3mf(out_dir / "model.3mf", positions, faces, colour, palette, thumbnail=small.getvalue())
    hexes = [_hex(c) for c in palette]
    progress(1.0)
    return OpResult(
        model_files={"3mf": "model.3mf"},
        thumbnail=thumbnail,
        extra={"colors": hexes, "face_count": int(len(faces))},
    )
