"""Mesh segmentation into parts (the CPU reference of PartField-style `mesh-segmentation`): a geometric method.

**Method**: spectral clustering of the face-adjacency (dual) graph with a concavity-aware Laplacian, after Katz &
Tal (2003) and Liu & Zhang (2004), in the generalised form L v = lambda A v:

1. The surface is welded by position (UV and normal seams split vertices, not the surface) and measured on a proxy
   of `PROXY_FACES` faces or fewer: a larger model is simplified with fast_simplification; a model with fewer than
   `MIN_PROXY_FACES` faces is subdivided (1-to-4, no T-junctions) so a coarse CAD-like mesh still has a graph.
2. Two faces sharing an edge are joined with conductance `w = (edge length / centroid distance) *
   exp(-eta * dihedral angle / CONCAVITY_SIGMA)`, eta = 1 on a concave edge and `CONVEX_ETA` on a convex one:
   a concave crease (where one part meets another) is cheap to cut, a convex edge (a box's rim) barely, a smooth
   surface not at all. `L = D - W`; the mass `A` is each face's area (the model scaled to unit area), so the
   eigenvalues are those of a Laplace-Beltrami operator whose flow is throttled at concave creases.
3. Disconnected pieces are natural parts: each piece (welded components holding at least `SMALL_PIECE` of the
   area; smaller crumbs join their nearest piece) is segmented on its own. The smallest eigenvalues of every piece
   (`scipy.sparse.linalg.eigsh`, shift-invert, a fixed start vector so results are deterministic) are pooled: with
   `num_parts` = k, the k smallest pooled eigenvalues decide how many parts each piece gets (exactly what a global
   normalised cut of the disconnected graph would do). With fewer parts than pieces, pieces are grouped by
   proximity (single linkage of their centroids) and no piece is cut.
4. **Automatic** `num_parts` (None): per piece, the eigengap heuristic on the concavity Laplacian: k is the
   `argmax_k lambda_k / lambda_(k-1)` for k in 2..`MAX_AUTO_PARTS`; a piece whose largest gap is below `AUTO_GAP`
   (no crease makes a part nearly separate, e.g. a sphere) stays whole. The total is capped at `MAX_PARTS`.
5. Each piece's faces are embedded by its first k eigenvectors (rows normalised, as Ng-Jordan-Weiss), clustered
   by k-means++ (scipy `kmeans2`, fixed seed, best of `KMEANS_RESTARTS`), then cleaned: every part is made one
   connected patch (stray fragments join the neighbouring part they share most boundary with) and a part that
   vanished is recovered by splitting the largest part along its Fiedler vector.
6. Boundaries are refined by a graph cut (Katz & Tal's fuzzy region): for each pair of adjacent parts, the faces
   within `FUZZY_RINGS` rings of their common boundary are relabelled by a minimum s-t cut
   (`scipy.sparse.csgraph.maximum_flow`) whose capacities are the conductances, so the boundary snaps to the
   cheapest (most concave, shortest) nearby curve.
7. Labels go back to the full mesh: a subdivided proxy by each original face's children (area majority), a
   simplified one by nearest face centroid (`cKDTree`); then a majority filter over edge neighbours and the same
   one-patch-per-part cleanup on the full mesh.

Outputs: `segmented.glb` (one node per part, `part_00`...: a fixed palette colour each, or the model's own
material, UVs and texture when `keep_material`), `part_labels.json`, `part_XX.glb` per part and `preview.png`.
Parts are numbered by decreasing area.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import trimesh
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.cluster.vq import kmeans2
from scipy.linalg import eigh
from scipy.sparse import coo_matrix, csr_matrix, diags
from scipy.sparse.csgraph import breadth_first_order, connected_components, maximum_flow
from scipy.sparse.linalg import eigsh
from scipy.spatial import cKDTree

from inference.pipeline import parts_export
from inference.pipeline.model_input import LoadedModel, OpResult
from inference.runners.base import InputRejected

Progress = Callable[[float], None]

MIN_PARTS, MAX_PARTS = 2, 32
MAX_AUTO_PARTS = 12  # automatic mode looks for at most this many parts per piece
PROXY_FACES = 6_000  # the graph is built on at most this many faces
MIN_PROXY_FACES = 1_500  # coarser models are subdivided up to PROXY_FACES first
CONCAVITY_SIGMA = 0.2  # radians: the dihedral angle over which a concave edge's conductance falls by e
CONVEX_ETA = 0.05  # convex edges count this much of a concave edge's angle
AUTO_GAP = 3.0  # automatic mode splits a piece only when lambda_k / lambda_(k-1) reaches this
CREASE_MODE = 0.5  # ... and lambda_(k-1) is below this share of the piece's plain (concavity-blind) Fiedler value
SMALL_PIECE = 0.01  # of the total area: a smaller disconnected piece joins its nearest piece
KMEANS_RESTARTS = 8
FUZZY_RINGS = 3  # face rings on each side of a boundary that the graph cut may relabel
SMOOTH_PASSES = 2  # majority-filter passes on the full mesh after the transfer
WELD_TOLERANCE = 1e-7  # of the bounding-box diagonal
SEED = 20240611


# --------------------------------------------------------------------------------------------- public entry point


def segment(model: LoadedModel, params: Mapping[str, Any], out_dir: Path, progress: Progress) -> OpResult:
    """Segment `model` into parts. params: num_parts (2..32, or None for automatic), keep_material (bool: parts
    keep the model's material/UVs/texture instead of palette colours). Writes segmented.glb, part_labels.json,
    part_XX.glb and preview.png in `out_dir`."""
    out_dir = Path(out_dir)
    num_parts = _num_parts(params.get("num_parts"))
    keep_material = params.get("keep_material", False)
    if keep_material not in (True, False, None):
        raise InputRejected(f"keep_material must be true or false, not {keep_material!r}")
    progress(0.0)
    vertices = np.asarray(model.mesh.vertices, dtype=np.float64)
    faces = np.asarray(model.mesh.faces, dtype=np.int64)
    labels = segment_faces(vertices, faces, num_parts, progress=lambda f: progress(0.75 * f))
    progress(0.75)
    result = write_segmentation(model, labels, out_dir, keep_material=bool(keep_material))
    progress(1.0)
    return result


def write_segmentation(model: LoadedModel, labels: np.ndarray, out_dir: Path, *, keep_material: bool) -> OpResult:
    """A segmentation's files from per-face labels (this module's, or a learned model's such as PartField's):
    segmented.glb (one node per part), part_XX.glb, part_labels.json and preview.png; `extra["parts"]` is the
    task's `parts` output."""
    vertices = np.asarray(model.mesh.vertices, dtype=np.float64)
    faces = np.asarray(model.mesh.faces, dtype=np.int64)
    parts = parts_export.parts_from_labels(model, labels, keep_material=keep_material)
    written = parts_export.write_parts(parts, out_dir, combined="segmented.glb")
    summary = part_summary(vertices, faces, labels)
    (Path(out_dir) / "part_labels.json").write_text(
        json.dumps({"num_parts": len(summary), "face_labels": np.asarray(labels).tolist(), "parts": summary})
    )
    thumbnail = parts_export.write_preview(parts, out_dir)
    return OpResult(
        model_files={"glb": "segmented.glb"},
        thumbnail=thumbnail,
        extra={
            "parts": {"num_parts": len(summary), "labels": "part_labels.json", "files": written},
            "faces": int(len(faces)),
        },
    )


def segment_faces(
    vertices: np.ndarray, faces: np.ndarray, num_parts: int | None, progress: Progress | None = None
) -> np.ndarray:
    """Per face of (vertices, faces) its part, 0..n-1 (numbered by decreasing area).
    `num_parts` None means automatic. Raises InputRejected for input that cannot be segmented."""
    progress = progress or (lambda _: None)
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    if len(faces) == 0:
        raise InputRejected("the model has no faces to segment")
    if not np.isfinite(vertices).all():
        raise InputRejected("the model has vertices with invalid (infinite or NaN) coordinates")
    wv, wf = _weld(vertices, faces)
    area = _areas(wv, wf)
    if float(area.sum()) <= 0 or np.count_nonzero(area > area.max() * 1e-9) < 2:
        raise InputRejected("the model has no surface to segment (fewer than two faces with an area)")
    good = np.count_nonzero(area > area.max() * 1e-9)
    if num_parts is not None and num_parts > good:
        raise InputRejected(f"num_parts is {num_parts}, but the model has only {good} faces with an area")
    # Unit total area, centred: eigenvalues and thresholds do not depend on the model's size.
    scale = 1.0 / np.sqrt(float(area.sum()))
    wv = (wv - wv.mean(axis=0)) * scale

    proxy = _Proxy.build(wv, wf)
    progress(0.15)
    graph = _Graph.build(proxy.vertices, proxy.faces)
    progress(0.3)
    proxy_labels = _segment_graph(graph, num_parts, progress=lambda f: progress(0.3 + 0.5 * f))
    progress(0.8)
    labels = proxy.transfer(proxy_labels, wv, wf)
    if proxy.kind != "same":
        full = _Graph.build(wv, wf, conductance=False)
        labels = _majority_filter(full, labels, SMOOTH_PASSES)
        labels = _one_patch_per_part(full, labels)
    progress(1.0)
    return _renumber(labels, wv, wf)


def part_summary(vertices: np.ndarray, faces: np.ndarray, labels: np.ndarray) -> list[dict]:
    """`part_labels.json`'s per-part entries: id, name, faces, area, centroid (area-weighted), bbox."""
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    area = _areas(vertices, faces)
    centroid = vertices[faces].mean(axis=1)
    out = []
    for part in range(int(labels.max()) + 1 if len(labels) else 0):
        mask = labels == part
        used = vertices[np.unique(faces[mask])]
        a = float(area[mask].sum())
        centre = (centroid[mask] * area[mask, None]).sum(axis=0) / a if a > 0 else centroid[mask].mean(axis=0)
        out.append(
            {
                "id": part,
                "name": parts_export.part_name(part),
                "faces": int(mask.sum()),
                "area": round(a, 9),
                "centroid": [round(float(c), 6) for c in centre],
                "bbox": {"min": used.min(axis=0).round(6).tolist(), "max": used.max(axis=0).round(6).tolist()},
            }
        )
    return out


# --------------------------------------------------------------------------------------------- parameters


def _num_parts(value: Any) -> int | None:
    if value is None or value == "" or value == "auto":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if isinstance(value, bool) or not np.isfinite(number) or number != int(number):
        raise InputRejected(f"num_parts must be a whole number between {MIN_PARTS} and {MAX_PARTS}, not {value!r}")
    if not MIN_PARTS <= int(number) <= MAX_PARTS:
        raise InputRejected(f"num_parts must be between {MIN_PARTS} and {MAX_PARTS}, not {int(number)}")
    return int(number)


# --------------------------------------------------------------------------------------------- geometry helpers


def _weld(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vertices merged by position (a grid of WELD_TOLERANCE x the diagonal); face order and count kept."""
    used = np.unique(faces)
    lo, hi = vertices[used].min(axis=0), vertices[used].max(axis=0)
    step = max(float(np.linalg.norm(hi - lo)), 1e-12) * WELD_TOLERANCE
    keys = np.round((vertices[used] - lo) / step).astype(np.int64)
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    remap = np.zeros(len(vertices), dtype=np.int64)
    remap[used] = inverse.reshape(-1)
    return vertices[used][first], remap[faces]


def _areas(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    tri = vertices[faces]
    return 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)


def _unit_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    tri = vertices[faces]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-300)


def face_adjacency(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(face a, face b, shared edge as (k, 2) vertex pairs) for faces sharing an edge; an edge with more than two
    faces links them in a chain. Faces on a repeated vertex are skipped."""
    directed = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    lo, hi = directed.min(axis=1), directed.max(axis=1)
    valid = np.repeat((faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 2] != faces[:, 0]), 3)
    n = int(faces.max()) + 1
    key = np.where(valid, lo * n + hi, -1 - np.arange(len(lo)))
    order = np.argsort(key, kind="stable")
    same = (key[order[1:]] == key[order[:-1]]) & (key[order[1:]] >= 0)
    a, b = order[:-1][same], order[1:][same]
    return a // 3, b // 3, np.column_stack([lo[a], hi[a]])


# --------------------------------------------------------------------------------------------- the proxy


@dataclass
class _Proxy:
    """The mesh the graph is built on, and how its labels go back: `kind` "same", "subdivided" (`parent`: each
    proxy face's original face) or "simplified" (nearest face centroid)."""

    vertices: np.ndarray
    faces: np.ndarray
    kind: str
    parent: np.ndarray | None = None

    @classmethod
    def build(cls, vertices: np.ndarray, faces: np.ndarray) -> _Proxy:
        n = len(faces)
        if n > PROXY_FACES:
            import fast_simplification

            pv, pf = fast_simplification.simplify(
                vertices.astype(np.float32), faces.astype(np.int32), target_reduction=1.0 - PROXY_FACES / n
            )
            pv, pf = np.asarray(pv, dtype=np.float64), np.asarray(pf, dtype=np.int64)
            keep = _areas(pv, pf) > 0
            if keep.sum() >= 16:
                return cls(pv, pf[keep], "simplified")
            return cls(vertices, faces, "same")
        if n < MIN_PROXY_FACES:
            rounds = int(np.floor(np.log(PROXY_FACES / n) / np.log(4)))
            if rounds > 0:
                v, f, parent = vertices, faces, np.arange(n)
                for _ in range(rounds):
                    v, f, index = trimesh.remesh.subdivide(v, f, return_index=True)
                    child_parent = np.empty(len(f), dtype=np.int64)
                    for old, new in index.items():  # dict of face -> its 4 children (per round, n small here)
                        child_parent[new] = parent[old]
                    parent = child_parent
                return cls(v, f, "subdivided", parent)
        return cls(vertices, faces, "same")

    def transfer(self, labels: np.ndarray, vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
        """Per original face its label."""
        if self.kind == "same":
            return labels
        if self.kind == "subdivided":
            area = _areas(self.vertices, self.faces) + 1e-30
            k = int(labels.max()) + 1
            votes = coo_matrix((area, (self.parent, labels)), shape=(len(faces), k)).toarray()
            return votes.argmax(axis=1)
        tree = cKDTree(self.vertices[self.faces].mean(axis=1))
        _, nearest = tree.query(vertices[faces].mean(axis=1))
        return labels[nearest]


# --------------------------------------------------------------------------------------------- the dual graph


@dataclass
class _Graph:
    """The dual graph: per face its area; per adjacent pair (a, b) the shared edge's length and conductance."""

    area: np.ndarray
    a: np.ndarray
    b: np.ndarray
    length: np.ndarray
    weight: np.ndarray
    centroid: np.ndarray
    plain: np.ndarray  # the conductance without the concavity factor

    @classmethod
    def build(cls, vertices: np.ndarray, faces: np.ndarray, *, conductance: bool = True) -> _Graph:
        area = _areas(vertices, faces)
        centroid = vertices[faces].mean(axis=1)
        a, b, edge = face_adjacency(faces)
        length = np.linalg.norm(vertices[edge[:, 0]] - vertices[edge[:, 1]], axis=1)
        weight = plain = length
        if conductance:
            normal = _unit_normals(vertices, faces)
            cos = np.clip(np.einsum("ij,ij->i", normal[a], normal[b]), -1.0, 1.0)
            concave = np.einsum("ij,ij->i", centroid[b] - centroid[a], normal[a] - normal[b]) > 1e-12
            eta = np.where(concave, 1.0, CONVEX_ETA)
            distance = np.linalg.norm(centroid[a] - centroid[b], axis=1)
            scale = max(float(np.median(distance)), 1e-12)
            plain = length / np.maximum(distance, 1e-3 * scale)
            angle = np.arccos(cos)
            weight = np.maximum(plain * np.exp(-eta * angle / CONCAVITY_SIGMA), 1e-12)
        return cls(area, a, b, length, weight, centroid, plain)

    @property
    def size(self) -> int:
        return len(self.area)

    def matrix(self, values: np.ndarray, mask: np.ndarray | None = None) -> csr_matrix:
        """Symmetric sparse face x face matrix with `values` on the adjacent pairs (only `mask`ed pairs)."""
        a, b = self.a, self.b
        if mask is not None:
            a, b, values = a[mask], b[mask], values[mask]
        n = self.size
        return coo_matrix(
            (np.concatenate([values, values]), (np.concatenate([a, b]), np.concatenate([b, a]))), (n, n)
        ).tocsr()

    def components(self, labels: np.ndarray | None = None) -> tuple[int, np.ndarray]:
        """Connected patches (of equal label when `labels` is given)."""
        mask = None if labels is None else labels[self.a] == labels[self.b]
        return connected_components(self.matrix(np.ones(len(self.a)), mask), directed=False)


# --------------------------------------------------------------------------------------------- spectral segmentation


def _spectrum(graph: _Graph, faces: np.ndarray, count: int, *, plain: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The `count` smallest eigenpairs of L v = lambda A v on the sub-graph of `faces` (sorted); `plain` uses the
    conductances without the concavity factor (the shape's own Laplacian)."""
    n = len(faces)
    count = max(1, min(count, n - 1))
    index = np.full(graph.size, -1, dtype=np.int64)
    index[faces] = np.arange(n)
    keep = (index[graph.a] >= 0) & (index[graph.b] >= 0)
    a, b = index[graph.a[keep]], index[graph.b[keep]]
    w = (graph.plain if plain else graph.weight)[keep]
    W = coo_matrix((np.concatenate([w, w]), (np.concatenate([a, b]), np.concatenate([b, a]))), (n, n)).tocsr()
    degree = np.asarray(W.sum(axis=1)).ravel()
    area = graph.area[faces]
    mass = np.maximum(area, 1e-9 * max(float(area.mean()), 1e-30))
    L = (diags(degree) - W).tocsc()
    if n <= 400:
        values, vectors = eigh(L.toarray(), np.diag(mass))
        return values[:count], vectors[:, :count]
    v0 = np.cos(np.arange(n) * 0.618) + 1.5  # fixed start vector: ARPACK is otherwise random
    sigma = -1e-3 * float(np.median(degree / mass))
    values, vectors = eigsh(L, k=count, M=diags(mass).tocsc(), sigma=sigma, which="LM", v0=v0)
    order = np.argsort(values)
    return values[order], vectors[:, order]


def _auto_count(values: np.ndarray, fiedler: float) -> int:
    """Eigengap: the largest k (>= 2) with lambda_k / lambda_(k-1) >= AUTO_GAP whose lambda_(k-1) is a crease mode
    (below CREASE_MODE x `fiedler`, the shape's own first non-zero eigenvalue: without that test a symmetric
    shape's repeated eigenvalues make gaps too), or 1 when there is none."""
    if len(values) < 3:
        return 1
    positive = np.maximum(values, 1e-12 * max(float(values[-1]), 1e-30))
    ratios = positive[2:] / positive[1:-1]  # ratios[i] is lambda_(i+2) / lambda_(i+1): the gap for k = i + 2
    good = np.flatnonzero((positive[1:-1] < CREASE_MODE * fiedler) & (ratios >= AUTO_GAP))
    return int(good[-1]) + 2 if len(good) else 1


def _kmeans(embedding: np.ndarray, k: int) -> np.ndarray:
    """k-means++ (fixed seed), best of KMEANS_RESTARTS by distortion."""
    best, best_cost = None, np.inf
    rng = np.random.default_rng(SEED)
    for _ in range(KMEANS_RESTARTS):
        centres, labels = kmeans2(embedding, k, minit="++", rng=rng)
        cost = float(((embedding - centres[labels]) ** 2).sum())
        if len(np.unique(labels)) == k and cost < best_cost - 1e-12:
            best, best_cost = labels, cost
    if best is None:
        best = labels
    return best


def _cluster(vectors: np.ndarray, k: int) -> np.ndarray:
    embedding = vectors[:, :k].copy()
    embedding /= np.maximum(np.linalg.norm(embedding, axis=1, keepdims=True), 1e-30)
    return _kmeans(embedding, k)


def _segment_graph(graph: _Graph, num_parts: int | None, progress: Progress) -> np.ndarray:
    """Per proxy face its part (pieces handled separately, see the module doc)."""
    pieces = _pieces(graph)
    k_total = len(pieces)
    labels = np.zeros(graph.size, dtype=np.int64)
    if num_parts is not None and num_parts <= k_total:
        # Fewer parts than pieces: group whole pieces by proximity.
        centres = np.array([graph.centroid[p].mean(axis=0) for p in pieces])
        groups = (
            fcluster(linkage(centres, "single"), num_parts, criterion="maxclust") - 1
            if num_parts < k_total
            else np.arange(k_total)
        )
        for piece, group in zip(pieces, groups, strict=True):
            labels[piece] = group
        return labels
    wanted = (num_parts or MAX_AUTO_PARTS) + 1
    spectra = [_spectrum(graph, piece, min(wanted, MAX_PARTS + 1)) for piece in pieces]
    progress(0.5)
    if num_parts is None:
        counts = [
            _auto_count(values, float(_spectrum(graph, piece, 2, plain=True)[0][-1]))
            for piece, (values, _) in zip(pieces, spectra, strict=True)
        ]
        while sum(counts) > MAX_PARTS:
            counts[int(np.argmax(counts))] -= 1
    else:
        # The num_parts smallest pooled eigenvalues (each piece's first one is 0: every piece keeps one part).
        pooled = np.concatenate([values for values, _ in spectra])
        owner = np.concatenate([np.full(len(values), i) for i, (values, _) in enumerate(spectra)])
        rank = np.lexsort((owner, pooled))[:num_parts]
        counts = np.bincount(owner[rank], minlength=len(pieces)).tolist()
        counts = [max(1, c) for c in counts]
    next_label = 0
    for piece, (_, vectors), k in zip(pieces, spectra, counts, strict=True):
        k = min(k, len(piece))
        sub = _cluster(vectors, k) if k > 1 else np.zeros(len(piece), dtype=np.int64)
        labels[piece] = sub + next_label
        next_label += k
    labels = _one_patch_per_part(graph, labels)
    labels = _restore_count(graph, labels, pieces, counts)
    labels = _refine(graph, labels)
    return _one_patch_per_part(graph, labels)


def _pieces(graph: _Graph) -> list[np.ndarray]:
    """Connected pieces holding at least SMALL_PIECE of the area (the largest first); smaller crumbs join the
    piece with the nearest face centroid."""
    count, comp = graph.components()
    area = np.bincount(comp, weights=graph.area, minlength=count)
    order = np.argsort(-area, kind="stable")
    big = [c for c in order if area[c] >= SMALL_PIECE * area.sum()] or [order[0]]
    big_set = np.zeros(count, dtype=bool)
    big_set[big] = True
    owner = np.full(count, -1, dtype=np.int64)
    owner[big] = np.arange(len(big))
    small_faces = np.flatnonzero(~big_set[comp])
    if len(small_faces):
        big_faces = np.flatnonzero(big_set[comp])
        _, nearest = cKDTree(graph.centroid[big_faces]).query(graph.centroid[small_faces])
        # each crumb goes whole to the piece nearest to most of its faces
        votes = coo_matrix(
            (np.ones(len(small_faces)), (comp[small_faces], owner[comp[big_faces[nearest]]])), (count, len(big))
        ).toarray()
        small = np.flatnonzero(~big_set)
        owner[small] = votes[small].argmax(axis=1)
    face_owner = owner[comp]
    return [np.flatnonzero(face_owner == i) for i in range(len(big))]


def _one_patch_per_part(graph: _Graph, labels: np.ndarray) -> np.ndarray:
    """Every label one connected patch: a label's smaller fragments join the neighbouring label they share the
    longest boundary with (repeated; an isolated fragment with no neighbour keeps its label)."""
    labels = labels.copy()
    for _ in range(20):
        count, patch = graph.components(labels)
        patch_area = np.bincount(patch, weights=graph.area + 1e-30, minlength=count)
        patch_label = np.zeros(count, dtype=np.int64)
        patch_label[patch] = labels
        # the largest patch of each label is its main one
        order = np.lexsort((-patch_area, patch_label))
        first = np.ones(count, dtype=bool)
        first[1:] = patch_label[order[1:]] != patch_label[order[:-1]]
        main = np.zeros(count, dtype=bool)
        main[order[first]] = True
        if main.all():
            break
        pa, pb = patch[graph.a], patch[graph.b]
        cross = pa != pb
        # boundary length between each stray patch and the neighbouring patches
        rows = np.concatenate([pa[cross], pb[cross]])
        cols = np.concatenate([pb[cross], pa[cross]])
        shared = coo_matrix((np.tile(graph.length[cross] + 1e-30, 2), (rows, cols)), (count, count)).tocsr()
        stray = np.flatnonzero(~main)
        sub = shared[stray]
        best = np.asarray(sub.argmax(axis=1)).ravel()
        has = np.asarray(sub.max(axis=1).toarray()).ravel() > 0
        # all strays move at once, each to the neighbour it shares the longest boundary with
        new_label = patch_label.copy()
        new_label[stray[has]] = patch_label[best[has]]
        moved = bool(has.any())
        labels = new_label[patch]
        if not moved:
            break
    return labels


def _restore_count(graph: _Graph, labels: np.ndarray, pieces: list[np.ndarray], counts: list[int]) -> np.ndarray:
    """Where cleanup left a piece fewer parts than it was given, split its largest part by its Fiedler vector."""
    labels = labels.copy()
    for piece, k in zip(pieces, counts, strict=True):
        for _ in range(k):
            present = np.unique(labels[piece])
            if len(present) >= min(k, len(piece)):
                break
            part_area = np.array([graph.area[piece][labels[piece] == p].sum() for p in present])
            largest = present[int(np.argmax(part_area))]
            faces = piece[labels[piece] == largest]
            if len(faces) < 2:
                break
            _, vectors = _spectrum(graph, faces, 2)
            fiedler = vectors[:, 1]
            split = fiedler > np.median(fiedler)
            if split.all() or not split.any():
                break
            labels[faces[split]] = labels.max() + 1
    return labels


def _refine(graph: _Graph, labels: np.ndarray) -> np.ndarray:
    """Katz & Tal's fuzzy-region graph cut on each pair of adjacent parts (see the module doc)."""
    labels = labels.copy()
    cross = labels[graph.a] != labels[graph.b]
    pairs = np.unique(np.sort(np.column_stack([labels[graph.a[cross]], labels[graph.b[cross]]]), axis=1), axis=0)
    adjacency = graph.matrix(np.ones(len(graph.a))).astype(bool)
    for p, q in pairs.tolist():
        members = (labels == p) | (labels == q)
        boundary_edges = ((labels[graph.a] == p) & (labels[graph.b] == q)) | (
            (labels[graph.a] == q) & (labels[graph.b] == p)
        )
        band = np.zeros(graph.size, dtype=bool)
        band[graph.a[boundary_edges]] = True
        band[graph.b[boundary_edges]] = True
        for _ in range(FUZZY_RINGS - 1):
            band |= np.asarray(adjacency @ band.astype(np.float64)).ravel() > 0
        band &= members
        if band.sum() < 3:
            continue
        labels = _band_cut(graph, labels, band, members, p, q)
    return labels


def _band_cut(graph: _Graph, labels: np.ndarray, band: np.ndarray, members: np.ndarray, p: int, q: int) -> np.ndarray:
    """Relabel the `band` faces between parts p and q by a minimum s-t cut."""
    n = graph.size
    source, sink = n, n + 1
    inside = members[graph.a] & members[graph.b] & (band[graph.a] | band[graph.b])
    a, b, w = graph.a[inside], graph.b[inside], graph.weight[inside]
    # faces outside the band are tied to the terminal of their label with infinite capacity
    fixed_a = ~band[a]
    fixed_b = ~band[b]
    a = np.where(fixed_a, np.where(labels[a] == p, source, sink), a)
    b = np.where(fixed_b, np.where(labels[b] == p, source, sink), b)
    keep = a != b
    a, b, w = a[keep], b[keep], w[keep]
    if len(w) == 0:
        return labels
    scale = 1e6 / max(float(w.max()), 1e-30)
    cap = np.maximum(np.rint(w * scale), 1).astype(np.int32)
    rows = np.concatenate([a, b])
    cols = np.concatenate([b, a])
    caps = np.concatenate([cap, cap])
    graph_cap = csr_matrix((caps, (rows, cols)), shape=(n + 2, n + 2))
    graph_cap.sum_duplicates()
    result = maximum_flow(graph_cap, source, sink)
    residual = graph_cap - result.flow
    residual.data = (residual.data > 0).astype(np.int8)
    residual.eliminate_zeros()
    reached = breadth_first_order(residual, source, directed=True, return_predecessors=False)
    side = np.zeros(n + 2, dtype=bool)
    side[reached] = True
    faces = np.flatnonzero(band)
    new = labels.copy()
    new[faces] = np.where(side[faces], p, q)
    # a cut that swallows a part whole is not a refinement
    if not (new == p).any() or not (new == q).any():
        return labels
    return new


def _majority_filter(graph: _Graph, labels: np.ndarray, passes: int) -> np.ndarray:
    """A face whose edge neighbours mostly (2 of 3) agree on another label takes it."""
    labels = labels.copy()
    k = int(labels.max()) + 1
    n = graph.size
    for _ in range(passes):
        rows = np.concatenate([graph.a, graph.b])
        cols = np.concatenate([labels[graph.b], labels[graph.a]])
        votes = coo_matrix((np.ones(len(rows)), (rows, cols)), (n, k)).tocsr()
        best = np.asarray(votes.argmax(axis=1)).ravel()
        strength = np.asarray(votes.max(axis=1).toarray()).ravel()
        change = (strength >= 2) & (best != labels)
        if not change.any():
            break
        labels[change] = best[change]
    return labels


def _renumber(labels: np.ndarray, vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Labels 0..n-1 by decreasing area (ties: first label first)."""
    area = _areas(vertices, faces) + 1e-30
    present, inverse = np.unique(labels, return_inverse=True)
    total = np.bincount(inverse, weights=area, minlength=len(present))
    order = np.lexsort((np.arange(len(present)), -total))
    rank = np.empty(len(present), dtype=np.int64)
    rank[order] = np.arange(len(present))
    return rank[inverse.reshape(-1)]
