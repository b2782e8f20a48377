"""Quad-dominant topology (`topology: "quad"`) with Instant Meshes, and the quad <-> triangle bookkeeping.

pynanoinstantmeshes gives flow-aligned, closed, pure-quad meshes and always ends with Instant Meshes'
"subdivide into pure quads" step, so asking for `vertex_count = n` returns about 4n quads (within ~1 %
at 1k..100k). Its cost grows with the input size, so the input is first decimated to a few times the
wanted quad count (more input adds no detail at that resolution).

glTF, STL and 3MF only hold triangles, and xatlas only unwraps triangles, so every quad is split along its
shorter diagonal into two consecutive triangles. After unwrapping, `pair_triangles` turns each pair back
into one quad when both triangles landed in the same UV chart (they then share the diagonal's split
vertices); a pair cut by a chart seam stays two triangles. Measured on a 30k-quad mesh: 99 % stay quads.

Above `DIRECT_QUADS` quads, Instant Meshes runs at a quarter (a sixteenth...) of the target and the result
is split 1 -> 4 afterwards by `subdivide_polygons` (after unwrapping, so xatlas also works on the small
mesh): Instant Meshes took 13 s for 100k quads and xatlas grows superlinearly, while a split pass is cheap.
The split turns the seam triangles into quads too (3 each), so subdivided results are pure quads.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator

import numpy as np
import pynanoinstantmeshes

from inference.pipeline.remesh import decimate
from inference.pipeline.symmetry import mirror, positive_half

# Instant Meshes input: this many triangles per wanted quad (floor MIN_INPUT): 120k in for 30k out took
# 2.2 s against 2.9 s for the whole 300k, with the same quad count and no visible loss.
INPUT_PER_QUAD, MIN_INPUT = 4, 20_000
# A second run with a corrected vertex count when the first misses the target by more than this.
RETRY_TOLERANCE = 0.05
DIRECT_QUADS = 30_000
_STDOUT_LOCK = threading.Lock()


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Send file descriptor 1 to /dev/null: Instant Meshes prints progress from C++ with printf.

    This is process-wide, so the lock keeps two concurrent calls from restoring each other's descriptor.
    """
    with _STDOUT_LOCK:
        sys.stdout.flush()
        saved = os.dup(1)
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 1)
            yield
        finally:
            os.dup2(saved, 1)
            os.close(saved)
            os.close(devnull)


def instant_meshes(vertices: np.ndarray, faces: np.ndarray, quads: int) -> tuple[np.ndarray, np.ndarray]:
    """About `quads` pure quads ((V, 3) float64, (Q, 4) int64) remeshed from a triangle mesh."""
    v32 = np.ascontiguousarray(vertices, dtype=np.float32)
    f32 = np.ascontiguousarray(faces, dtype=np.uint32)
    vertex_count = max(quads // 4, 4)
    best: tuple[np.ndarray, np.ndarray] | None = None
    for _ in range(2):
        with _quiet_stdout():
            # deterministic: the same request gives the same mesh (the default solver is racy).
            # align_to_boundaries keeps open boundaries (the symmetry cut) on the input's boundary: without
            # it the cut drifted up to two edge lengths off the plane and the mirrored halves did not meet.
            out_v, out_q = pynanoinstantmeshes.remesh(
                v32, f32, vertex_count=vertex_count, deterministic=True, align_to_boundaries=True
            )
        result = np.asarray(out_v, dtype=np.float64), np.asarray(out_q, dtype=np.int64)
        if best is None or abs(len(result[1]) - quads) < abs(len(best[1]) - quads):
            best = result
        if len(result[1]) and abs(len(result[1]) / quads - 1) <= RETRY_TOLERANCE:
            break
        vertex_count = max(round(vertex_count * quads / max(len(result[1]), 1)), 4)
    assert best is not None
    if len(best[1]) == 0:
        raise ValueError("quad remeshing produced no faces")
    return best


def quad_remesh(
    vertices: np.ndarray, faces: np.ndarray, target: int, symmetric: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """A quad mesh with about `target` quads (the polycount counts quads, not triangles, for quad topology).

    With `symmetric`, only the x >= 0 half is remeshed (to target / 2) and then mirrored; the third value
    then maps each quad to its mirror image (None otherwise).
    """
    wanted = target
    half = positive_half(vertices, faces) if symmetric else None
    if half is not None:
        vertices, faces = half
        wanted = max(target // 2, 2)
    vertices, faces = decimate(vertices, faces, max(INPUT_PER_QUAD * wanted, MIN_INPUT))
    quad_v, quad_f = instant_meshes(vertices, faces, wanted)
    if half is None:
        return quad_v, quad_f, None
    count = len(quad_f)
    quad_v, quad_f = mirror(quad_v, quad_f)
    # `mirror` appends the mirrored faces in the same order.
    return quad_v, quad_f, np.concatenate([np.arange(count) + count, np.arange(count)])


def subdivision_passes(target: int) -> int:
    """How many 1 -> 4 splits follow Instant Meshes for a `target` quad count."""
    passes = 0
    while target / 4**passes > DIRECT_QUADS:
        passes += 1
    return passes


def subdivide_polygons(
    vertices: np.ndarray, counts: np.ndarray, flat: np.ndarray, uv: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Split every polygon into quads at its edge midpoints and centroid: a quad gives 4, a triangle 3.

    Returns (vertices, uv, (Q, 4) quads); positions and UVs are interpolated linearly. Midpoints are shared
    by the faces on both sides of an edge of the *given* indices, so UV seams (split vertices) stay split.
    Each new quad keeps its parent's winding.
    """
    counts = np.asarray(counts, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    n = len(vertices)
    corner_sets, edge_a, edge_b = [], [], []
    for size in (4, 3):
        rows = starts[counts == size]
        corners = np.asarray(flat)[rows[:, None] + np.arange(size)]
        corner_sets.append(corners)
        edge_a.append(corners.reshape(-1))
        edge_b.append(np.roll(corners, -1, axis=1).reshape(-1))
    a, b = np.concatenate(edge_a), np.concatenate(edge_b)
    keys = np.minimum(a, b) * n + np.maximum(a, b)
    unique_keys, edge_of = np.unique(keys, return_inverse=True)
    ends = np.stack(np.divmod(unique_keys, n), axis=1)
    midpoint = n + edge_of
    centre_base = n + len(unique_keys)
    parts = [vertices, vertices[ends].mean(axis=1)]
    uv_parts = None if uv is None else [uv, uv[ends].mean(axis=1)]
    quads, used_edges, used_faces = [], 0, 0
    for corners in corner_sets:
        size = corners.shape[1]
        mids = midpoint[used_edges : used_edges + corners.size].reshape(-1, size)
        used_edges += corners.size
        centre = centre_base + used_faces + np.arange(len(corners))
        used_faces += len(corners)
        parts.append(vertices[corners].mean(axis=1))
        if uv_parts is not None:
            uv_parts.append(uv[corners].mean(axis=1))
        # Corner i gets (c_i, mid(c_i, c_i+1), centre, mid(c_i-1, c_i)).
        for i in range(size):
            quads.append(np.stack([corners[:, i], mids[:, i], centre, mids[:, i - 1]], axis=1))
    new_uv = None if uv_parts is None else np.vstack(uv_parts)
    return np.vstack(parts), new_uv, np.concatenate(quads)


def quads_to_triangles(vertices: np.ndarray, quads: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split each quad along its shorter diagonal: (T, 3) triangles and (T,) owning quad index.

    A quad's two triangles are consecutive and start at the same corner, (a, b, c) and (a, c, d), which is
    what `pair_triangles` relies on. Degenerate halves (a quad with a repeated corner) are dropped.
    """
    quads = np.asarray(quads, dtype=np.int64)
    d02 = np.linalg.norm(vertices[quads[:, 0]] - vertices[quads[:, 2]], axis=1)
    d13 = np.linalg.norm(vertices[quads[:, 1]] - vertices[quads[:, 3]], axis=1)
    shift = (d13 < d02).astype(np.int64)
    rotated = np.take_along_axis(quads, (np.arange(4)[None, :] + shift[:, None]) % 4, axis=1)
    tris = np.stack([rotated[:, [0, 1, 2]], rotated[:, [0, 2, 3]]], axis=1).reshape(-1, 3)
    owner = np.repeat(np.arange(len(quads)), 2)
    keep = (tris[:, 0] != tris[:, 1]) & (tris[:, 1] != tris[:, 2]) & (tris[:, 2] != tris[:, 0])
    return tris[keep], owner[keep]


def _pairs(tris: np.ndarray, owner: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First-triangle rows of the quads that kept both triangles, and whether each pair still shares its
    diagonal (same corner indices, i.e. not cut apart by a UV seam)."""
    first = np.ones(len(owner), dtype=bool)
    first[1:] = owner[1:] != owner[:-1]
    has_pair = first.copy()
    has_pair[:-1] &= ~first[1:]
    has_pair[-1] = False
    a = np.nonzero(has_pair)[0]
    t0, t1 = tris[a], tris[a + 1]
    return a, (t1[:, 0] == t0[:, 0]) & (t1[:, 1] == t0[:, 2])


def unpaired_quads(tris: np.ndarray, owner: np.ndarray, count: int) -> np.ndarray:
    """(count,) bool: quads that `pair_triangles` would leave as triangles."""
    a, joined = _pairs(np.asarray(tris, dtype=np.int64), owner)
    paired = np.zeros(count, dtype=bool)
    paired[owner[a[joined]]] = True
    return ~paired


def pair_triangles(
    tris: np.ndarray, owner: np.ndarray, keep_apart: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Polygons (counts, flat indices) from triangles made by `quads_to_triangles` and then re-indexed.

    `tris` may use different vertex indices than the quads they came from (UV seams split vertices). Two
    triangles of one quad that still share their diagonal become that quad again, unless `keep_apart`
    (bool per quad) says otherwise; all else stays triangles. Quads come first, then triangles.
    """
    tris = np.asarray(tris, dtype=np.int64)
    a, joined = _pairs(tris, owner)
    if keep_apart is not None:
        joined &= ~keep_apart[owner[a]]
    quads = np.column_stack([tris[a[joined]], tris[a[joined] + 1, 2]])
    in_quad = np.zeros(len(tris), dtype=bool)
    in_quad[a[joined]] = True
    in_quad[a[joined] + 1] = True
    rest = tris[~in_quad]
    counts = np.concatenate([np.full(len(quads), 4), np.full(len(rest), 3)]).astype(np.int64)
    return counts, np.concatenate([quads.reshape(-1), rest.reshape(-1)])
