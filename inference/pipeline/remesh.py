"""Remeshing to Meshy's `target_polycount` (100..300,000 triangles).

Decimation uses fast-simplification (quadric error, 0.2 s for 300k -> 30k and it hits the exact count).
Targets above the source count are reached without changing the surface: whole midpoint-subdivision
passes (4x faces) while they fit, then longest-edge bisection (each split edge turns its 2 faces into 4)
for the remainder. Decimating an over-subdivided mesh back down instead was tried and leaves zero-area
slivers and shading dimples, because the flat midpoint vertices all have zero quadric error.

Quad topology is not produced yet: `topology="quad"` currently yields triangles (glTF and STL can only
hold triangles anyway; a later change adds a quad-dominant OBJ/FBX path).
"""

from __future__ import annotations

import fast_simplification
import numpy as np
import trimesh

MIN_POLYCOUNT, MAX_POLYCOUNT, DEFAULT_POLYCOUNT = 100, 300_000, 30_000


def clamp_polycount(value: object) -> int:
    """Meshy's accepted range; None or junk falls back to the default."""
    try:
        target = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return DEFAULT_POLYCOUNT
    return int(np.clip(target, MIN_POLYCOUNT, MAX_POLYCOUNT))


def decimate(vertices: np.ndarray, faces: np.ndarray, target: int) -> tuple[np.ndarray, np.ndarray]:
    """Quadric decimation to `target` faces (no-op when already at or below it)."""
    if len(faces) <= target:
        return vertices, faces
    v, f = fast_simplification.simplify(
        np.ascontiguousarray(vertices, dtype=np.float64),
        np.ascontiguousarray(faces, dtype=np.int64),
        target_count=int(target),
    )
    return np.asarray(v), np.asarray(f, dtype=np.int64)


def subdivide_until(
    vertices: np.ndarray, faces: np.ndarray, minimum: int, attributes: dict[str, np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Midpoint-subdivide until there are at least `minimum` faces, interpolating per-vertex attributes."""
    attributes = dict(attributes or {})
    while len(faces) < minimum:
        vertices, faces, attributes = trimesh.remesh.subdivide(vertices, faces, vertex_attributes=attributes)
    return vertices, faces, attributes


def split_longest_edges(vertices: np.ndarray, faces: np.ndarray, target: int) -> tuple[np.ndarray, np.ndarray]:
    """Bisect long edges at their midpoints until there are about `target` faces (within one or two).

    Each round splits edges that are the longest edge of every face around them; no face then has two
    split edges, so every split face becomes exactly two, and the splits improve triangle shape.
    """
    vertices, faces = np.asarray(vertices, dtype=np.float64), np.asarray(faces, dtype=np.int64)
    while len(faces) < target:
        corner_pairs = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
        lo, hi = corner_pairs.min(axis=1), corner_pairs.max(axis=1)
        unique_keys, edge_of = np.unique(lo * len(vertices) + hi, return_inverse=True)
        ends = np.stack(np.divmod(unique_keys, len(vertices)), axis=1)
        length = np.linalg.norm(vertices[ends[:, 0]] - vertices[ends[:, 1]], axis=1)
        face_edges = edge_of.reshape(-1, 3)
        local = np.argmax(length[face_edges], axis=1)
        longest = face_edges[np.arange(len(faces)), local]
        adjacent = np.bincount(edge_of, minlength=len(ends))
        chosen = np.bincount(longest, minlength=len(ends))
        candidates = np.nonzero((adjacent == chosen) & (adjacent > 0))[0]
        candidates = candidates[np.argsort(-length[candidates], kind="stable")]
        gained = np.cumsum(adjacent[candidates])
        take = candidates[: int(np.searchsorted(gained, target - len(faces))) + 1]
        if len(take) == 0:
            break
        new_index = np.full(len(ends), -1, dtype=np.int64)
        new_index[take] = len(vertices) + np.arange(len(take))
        vertices = np.vstack([vertices, vertices[ends[take]].mean(axis=1)])
        split = new_index[longest] >= 0
        rows = np.nonzero(split)[0]
        # Rotate each split face so the split edge is (p0, p1); halves keep the original winding.
        rot = (local[rows, None] + np.arange(3)) % 3
        p = faces[rows[:, None], rot]
        mid = new_index[longest[rows]]
        halves = np.concatenate([np.stack([p[:, 0], mid, p[:, 2]], 1), np.stack([mid, p[:, 1], p[:, 2]], 1)])
        faces = np.concatenate([faces[~split], halves])
    return vertices, faces


def remesh_to_target(mesh: trimesh.Trimesh, target: int) -> trimesh.Trimesh:
    """A new mesh with `target` faces (within a few faces), without colours; the input is not modified."""
    vertices, faces = np.asarray(mesh.vertices), np.asarray(mesh.faces)
    if len(faces) < target:
        vertices, faces, _ = subdivide_until(vertices, faces, target // 4 + 1)
        vertices, faces = split_longest_edges(vertices, faces, target)
    vertices, faces = decimate(vertices, faces, target)
    out = trimesh.Trimesh(vertices, faces, process=False)
    # Collapses can leave unused vertices or, rarely, zero-area slivers; drop them before normals.
    out.update_faces(out.nondegenerate_faces())
    out.remove_unreferenced_vertices()
    return out
