"""Reading a caller's 3D model (GLB, embedded glTF, OBJ, binary FBX, STL) into one trimesh mesh, safely.

STUB to be hardened: the interface is fixed, the implementation below is the minimal trimesh path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import trimesh

from inference.runners.base import InputRejected

MODEL_FORMATS = ("glb", "gltf", "obj", "fbx", "stl")
MAX_FACES = 300_000


@dataclass
class LoadedModel:
    """One mesh, +Y up as glTF, in the file's units; `mesh.visual` keeps what the file had: a `TextureVisuals` whose
    `material` is a `PBRMaterial` (baseColorTexture, metallicRoughnessTexture, normalTexture as PIL images, factors),
    per-vertex `ColorVisuals`, or nothing. `notes` are plain-words remarks for the caller (e.g. an OBJ's MTL could not
    come along)."""

    mesh: trimesh.Trimesh
    source_format: str
    notes: list[str] = field(default_factory=list)

    @property
    def has_uv(self) -> bool:
        uv = getattr(self.mesh.visual, "uv", None)
        return uv is not None and len(uv) == len(self.mesh.vertices)

    @property
    def base_color(self):  # type: ignore[no-untyped-def]
        """The base-colour texture (PIL image) or None."""
        material = getattr(self.mesh.visual, "material", None)
        return getattr(material, "baseColorTexture", None) or getattr(material, "image", None)


def load_model(path: Path, source_format: str, *, max_faces: int = MAX_FACES) -> LoadedModel:
    """Read `path` (whose real format is `source_format`, one of MODEL_FORMATS) or raise `InputRejected`."""
    try:
        scene = trimesh.load(path, file_type=source_format, force="scene", process=False)
        mesh = scene.to_geometry() if hasattr(scene, "to_geometry") else scene.dump(concatenate=True)
    except Exception as exc:  # noqa: BLE001 (any reader failure is a bad input)
        raise InputRejected("the model file is corrupt or could not be read") from exc
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise InputRejected("the model contains no mesh")
    if len(mesh.faces) > max_faces:
        raise InputRejected(f"the model has {len(mesh.faces)} faces; at most {max_faces} are accepted")
    return LoadedModel(mesh=mesh, source_format=source_format)


def uv_coverage(mesh: trimesh.Trimesh) -> float:
    """The share of the unit UV square the mesh's UV triangles cover (0 without UVs)."""
    uv = getattr(mesh.visual, "uv", None)
    if uv is None:
        return 0.0
    tri = np.asarray(uv)[mesh.faces]
    area = 0.5 * np.abs(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]))
    return float(min(1.0, area.sum()))


@dataclass
class OpResult:
    """What a model operation wrote in its output folder (file names only), as the task's outputs will list them.

    `model_files`: format key -> file name ("glb": "model.glb", "obj"/"mtl", "fbx", "stl", "usdz", "3mf").
    `texture_files`: one dict per material ({"base_color": "texture_0.png", "metallic": ..., ...}) or [].
    `thumbnail` / `alpha_thumbnail`: "preview.png" / "preview_alpha.png" when written.
    `extra`: JSON-able results that are not files (print/analyze's `printability`).
    """

    model_files: dict[str, str]
    texture_files: list[dict[str, str]] = field(default_factory=list)
    thumbnail: str | None = None
    alpha_thumbnail: str | None = None
    extra: dict = field(default_factory=dict)
