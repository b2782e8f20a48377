"""The export-ready mesh (`Surface`) and its look (`Material`), shared by every format writer."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# The untextured (preview) look: a light clay grey, matte.
CLAY_RGBA = (204, 199, 191, 255)
CLAY_METALLIC, CLAY_ROUGHNESS = 0.0, 0.9
# Textured results: no material model yet, so metallic and roughness are constants (maps or factors).
METALLIC, ROUGHNESS = 0.0, 0.8
MATERIAL_NAME = "material_0"


@dataclass(frozen=True)
class Surface:
    """Per-vertex arrays (split along UV seams when textured) plus two face lists over the same vertices.

    `triangles` (T, 3) feed the triangle-only formats (GLB, STL, 3MF) and the thumbnail; `face_counts` /
    `face_indices` (USD-style: a size per polygon, then all corners) feed the polygon formats (OBJ, FBX,
    USDZ) so quad topology keeps its quads there. `uv` uses trimesh's convention (v = 0 is the bottom image
    row, like OBJ and USD); the GLB writer flips it. `tangents` (V, 4) are glTF's TANGENT (xyz, handedness w),
    matching the tangent frame the normal map was baked in.
    """

    vertices: np.ndarray
    normals: np.ndarray
    triangles: np.ndarray
    face_counts: np.ndarray
    face_indices: np.ndarray
    uv: np.ndarray | None = None
    tangents: np.ndarray | None = None

    @classmethod
    def from_triangles(cls, vertices: np.ndarray, normals: np.ndarray, triangles: np.ndarray, **extra) -> Surface:
        triangles = np.asarray(triangles, dtype=np.int64)
        counts = np.full(len(triangles), 3, dtype=np.int64)
        return cls(vertices, normals, triangles, counts, triangles.reshape(-1), **extra)

    @property
    def polygon_count(self) -> int:
        return int(len(self.face_counts))

    @property
    def quad_count(self) -> int:
        return int(np.count_nonzero(self.face_counts == 4))


@dataclass(frozen=True)
class Material:
    """Textures written to the output folder, or nothing (the clay look).

    `files` maps Meshy's texture keys (base_color, metallic, roughness, normal) to file names in the output
    folder; `png` holds the encoded bytes of the same maps plus glTF's packed "metallic_roughness" image,
    encoded once and reused by every writer.
    """

    files: dict[str, str] = field(default_factory=dict)
    png: dict[str, bytes] = field(default_factory=dict)

    @property
    def textured(self) -> bool:
        return "base_color" in self.files
