"""The cleaned raw mesh -> the final shape: remeshing to the polycount, quad topology and symmetry.

Order matters for symmetry: the mesh is cut at x = 0 *before* remeshing and only the +x half is remeshed
(to half the target), then mirrored. Decimation keeps the cut boundary exactly on the plane (measured: max
|x| 4e-17 on the boundary after 150k -> 15k), so the halves weld into a closed mesh with the exact target
face count, and remeshing costs half as much.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh

from inference.pipeline.quads import quad_remesh, subdivision_passes
from inference.pipeline.remesh import remesh_to_target
from inference.pipeline.symmetry import mirror, positive_half


@dataclass(frozen=True)
class Shape:
    """Final geometry before UVs: (V, 3) vertices and (F, 3) triangles or (F, 4) quads. Quads still need
    `subdivisions` 1 -> 4 splits (done after unwrapping) to reach the target. `twins` maps each face of a
    mirrored quad mesh to its mirror image."""

    vertices: np.ndarray
    faces: np.ndarray
    subdivisions: int = 0
    twins: np.ndarray | None = None

    @property
    def quads(self) -> bool:
        return self.faces.shape[1] == 4


def _triangles(vertices: np.ndarray, faces: np.ndarray, target: int | None) -> tuple[np.ndarray, np.ndarray]:
    if target is None:
        return vertices, faces
    out = remesh_to_target(trimesh.Trimesh(vertices, faces, process=False), target)
    return np.asarray(out.vertices), np.asarray(out.faces)


def build_shape(vertices: np.ndarray, faces: np.ndarray, *, target: int | None, quads: bool, symmetric: bool) -> Shape:
    """`target` None keeps the face count (should_remesh false: then `quads` is ignored, as Meshy does).

    For quad topology `target` counts quads (each is two triangles in GLB/STL/3MF).
    """
    vertices, faces = np.asarray(vertices, dtype=np.float64), np.asarray(faces, dtype=np.int64)
    if quads and target is not None:
        passes = subdivision_passes(target)
        quad_v, quad_f, twins = quad_remesh(vertices, faces, round(target / 4**passes), symmetric=symmetric)
        return Shape(quad_v, quad_f, passes, twins)
    half = positive_half(vertices, faces) if symmetric else None
    if half is None:
        return Shape(*_triangles(vertices, faces, target))
    half_target = None if target is None else max(target // 2, 2)
    half_v, half_f = _triangles(*half, half_target)
    return Shape(*mirror(half_v, half_f))
