"""`symmetry_mode: "on"`: make a mesh mirror-symmetric across the x = 0 plane (keep +x, mirror it to -x).

No mesh library has a "symmetrize" filter, so it is done in two steps around whatever remeshing runs in
between: `positive_half` cuts the mesh at x = 0 (trimesh's `slice_faces_plane`; `slice_mesh_plane` would
need shapely), then the caller remeshes that half (decimation and Instant Meshes both keep the open cut
boundary on or very near the plane), and `mirror` snaps the cut boundary onto the plane, adds the mirrored
copy and shares the boundary vertices, so a closed input gives a closed, exactly symmetric result. Remeshing
one half also halves the remeshing work.
"""

from __future__ import annotations

import numpy as np
import trimesh

PLANE_NORMAL = np.array([1.0, 0.0, 0.0])


def weld(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge vertices with identical coordinates (rounded to 1e-9 of the mesh size) and drop unused ones."""
    scale = max(float(np.ptp(vertices, axis=0).max()), 1e-12)
    keys = np.round(vertices / (scale * 1e-9)).astype(np.int64)
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    faces = inverse.reshape(-1)[faces]
    # Collapsed faces (two corners welded together) would be degenerate.
    sorted_faces = np.sort(faces, axis=1)
    faces = faces[np.all(sorted_faces[:, 1:] != sorted_faces[:, :-1], axis=1)]
    used, compact = np.unique(faces, return_inverse=True)
    return vertices[first][used], compact.reshape(faces.shape)


def positive_half(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The part of a triangle mesh with x >= 0, welded along the cut; faces lying in the plane are dropped.

    None when no face reaches x > 0 (there is nothing to mirror from; callers then leave the mesh as is).
    """
    vertices, faces = np.asarray(vertices, dtype=np.float64), np.asarray(faces, dtype=np.int64)
    if vertices[faces, 0].max() <= _plane_tolerance(vertices):
        return None
    new_v, new_f, _ = trimesh.intersections.slice_faces_plane(vertices, faces, PLANE_NORMAL, np.zeros(3))
    new_v, new_f = weld(np.asarray(new_v, dtype=np.float64), np.asarray(new_f, dtype=np.int64))
    # Faces inside the plane would become a double-sided sheet once mirrored.
    in_plane = np.all(np.abs(new_v[new_f, 0]) <= _plane_tolerance(new_v), axis=1)
    return weld(new_v, new_f[~in_plane])


def _plane_tolerance(vertices: np.ndarray) -> float:
    return 1e-9 * max(float(np.ptp(vertices, axis=0).max()), 1e-12)


def boundary_vertices(faces: np.ndarray) -> np.ndarray:
    """Indices of vertices on open edges (edges used by one face) of a polygon mesh given as (F, k)."""
    edges = np.stack([faces, np.roll(faces, -1, axis=1)], axis=2).reshape(-1, 2)
    edges = np.sort(edges, axis=1)
    unique, counts = np.unique(edges, axis=0, return_counts=True)
    return np.unique(unique[counts == 1])


def mirror(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Add the mirror image (x -> -x) of a +x half mesh with (F, k) faces; returns (vertices, faces).

    Open-boundary vertices within a mean edge length of the plane are the cut: they are snapped to
    x = 0 and shared by both halves. Other vertices are kept at x > 0 (a remesher can leave a few just
    across the plane) so no interior vertex coincides with its own mirror image.
    """
    vertices = np.array(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    edge_len = np.linalg.norm(vertices[faces] - vertices[np.roll(faces, -1, axis=1)], axis=2).mean()
    boundary = boundary_vertices(faces)
    cut = boundary[np.abs(vertices[boundary, 0]) <= edge_len]
    on_cut = np.zeros(len(vertices), dtype=bool)
    on_cut[cut] = True
    tiny = 1e-6 * max(float(np.ptp(vertices, axis=0).max()), 1e-12)
    vertices[:, 0] = np.where(on_cut, 0.0, np.maximum(vertices[:, 0], tiny))
    # Mirrored copies of every vertex except the cut, which both halves share.
    twin = np.arange(len(vertices))
    others = np.nonzero(~on_cut)[0]
    twin[others] = len(vertices) + np.arange(len(others))
    mirrored = vertices[others] * np.array([-1.0, 1.0, 1.0])
    # Mirroring flips orientation, so reverse each face's winding to keep normals outward.
    mirrored_faces = twin[faces[:, ::-1]]
    return np.vstack([vertices, mirrored]), np.vstack([faces, mirrored_faces])
