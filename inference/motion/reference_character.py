"""Procedural humanoid characters with known joint centres, for rigging tests, benches and animation previews.

`build_character(pose, style, height, faces_target)` assembles a figure from closed primitives (tapered limbs,
ellipsoids, boxes, cylinders), vectorised with numpy (no per-face loops). Conventions are the skeleton's: metres,
+Y up, facing +Z, the character's left at +X, soles at y = 0, centred on the y axis. The parts are separate closed
shells that overlap at the joints, as kit-bashed or primitive-built game characters often are.

Styles:
- "textured": clothes, skin, hair and a simple face, coloured through a real base-colour texture (a palette atlas
  with UVs), so the texture path of a renderer is exercised;
- "grey": the same body, faceless, flat grey vertex colours;
- "blocky": boxes only (a Minecraft-like low-poly figure), vertex colours, a painted-on face;
- "robot": boxes and cylinders with ball joints in metal colours, no face.

The returned joints are the true joint centres of the primitives, keyed by `skeleton.BONES` names (the ones the
figure defines: the spine chain, neck, head, arms, legs and toes; the clavicles are left out).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import trimesh
from PIL import Image
from trimesh.visual.material import PBRMaterial
from trimesh.visual.texture import TextureVisuals

Pose = Literal["T", "A"]
Style = Literal["textured", "grey", "blocky", "robot"]

POSES: tuple[str, ...] = ("T", "A")
STYLES: tuple[str, ...] = ("textured", "grey", "blocky", "robot")
BASE_HEIGHT = 1.75  # the figure is designed at this height, then scaled
A_POSE_DEG = 40.0  # arms below horizontal in the A-pose

_SKIN = (224, 172, 140)
_SHIRT = (40, 90, 170)
_TROUSERS = (50, 50, 60)
_SHOES = (30, 25, 20)
_HAIR = (60, 40, 25)
_DARK = (20, 20, 20)
_WHITE = (245, 245, 245)
_LIPS = (150, 60, 60)
_GREY = (170, 170, 170)
_MC_SKIN = (198, 150, 110)
_MC_SHIRT = (0, 170, 170)
_MC_TROUSERS = (60, 60, 160)
_MC_HAIR = (70, 45, 25)
_STEEL = (150, 156, 166)
_GUNMETAL = (80, 86, 96)
_BRASS = (190, 150, 70)


@dataclass
class _Parts:
    """Closed shells collected as arrays, each with one colour."""

    vertices: list[np.ndarray] = field(default_factory=list)
    faces: list[np.ndarray] = field(default_factory=list)
    colors: list[tuple[int, int, int]] = field(default_factory=list)

    def add(self, vertices: np.ndarray, faces: np.ndarray, color: tuple[int, int, int]) -> None:
        self.vertices.append(np.asarray(vertices, dtype=np.float64))
        self.faces.append(np.asarray(faces, dtype=np.int64))
        self.colors.append(color)

    def add_mesh(self, mesh: trimesh.Trimesh, color: tuple[int, int, int]) -> None:
        self.add(mesh.vertices, mesh.faces, color)

    def concatenate(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        offsets = np.cumsum([0] + [len(v) for v in self.vertices[:-1]])
        faces = np.concatenate([f + o for f, o in zip(self.faces, offsets, strict=True)])
        part = np.repeat(np.arange(len(self.vertices)), [len(v) for v in self.vertices])
        return np.concatenate(self.vertices), faces, part


def _frame(direction: np.ndarray) -> np.ndarray:
    """A rotation matrix whose third column is `direction` (normalised)."""
    d = direction / np.linalg.norm(direction)
    return trimesh.geometry.align_vectors([0.0, 0.0, 1.0], d)[:3, :3]


def _frustum(p0: np.ndarray, p1: np.ndarray, r0: float, r1: float, sections: int) -> tuple[np.ndarray, np.ndarray]:
    """A closed cone frustum from p0 (radius r0) to p1 (radius r1), capped at both ends."""
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    angle = np.linspace(0.0, 2.0 * np.pi, sections, endpoint=False)
    ring = np.stack([np.cos(angle), np.sin(angle)], axis=1)
    length = float(np.linalg.norm(p1 - p0))
    local = np.vstack(
        [np.c_[ring * r0, np.zeros(sections)], np.c_[ring * r1, np.full(sections, length)], [[0, 0, 0], [0, 0, length]]]
    )
    i = np.arange(sections)
    j = (i + 1) % sections
    side = np.concatenate([np.stack([i, j, sections + j], 1), np.stack([i, sections + j, sections + i], 1)])
    bottom = np.stack([np.full(sections, 2 * sections), j, i], 1)
    top = np.stack([np.full(sections, 2 * sections + 1), sections + i, sections + j], 1)
    vertices = local @ _frame(p1 - p0).T + p0
    return vertices, np.concatenate([side, bottom, top])


def _ellipsoid(center: np.ndarray, radii: tuple[float, float, float], subdivisions: int = 3) -> trimesh.Trimesh:
    sphere = trimesh.creation.icosphere(subdivisions, 1.0)
    return trimesh.Trimesh(sphere.vertices * np.asarray(radii) + np.asarray(center), sphere.faces, process=False)


def _oriented_box(p0: np.ndarray, p1: np.ndarray, width: float, depth: float, pad: float = 0.0) -> trimesh.Trimesh:
    """A box whose long axis runs from p0 to p1 (extended by `pad` at each end), `width` across in x/y, `depth` in z."""
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    axis = (p1 - p0) / np.linalg.norm(p1 - p0)
    length = float(np.linalg.norm(p1 - p0)) + 2 * pad
    # Long axis, then the in-plane perpendicular (x/y plane), then z: boxes stay facing the camera.
    across = np.cross([0.0, 0.0, 1.0], axis)
    across = across / np.linalg.norm(across) if np.linalg.norm(across) > 1e-9 else np.array([1.0, 0.0, 0.0])
    transform = np.eye(4)
    transform[:3, :3] = np.stack([across, axis, np.cross(across, axis)], axis=1)
    transform[:3, 3] = (p0 + p1) / 2
    return trimesh.creation.box(extents=(width, length, depth), transform=transform)


def _box(center: tuple[float, float, float] | np.ndarray, extents: tuple[float, float, float]) -> trimesh.Trimesh:
    transform = np.eye(4)
    transform[:3, 3] = center
    return trimesh.creation.box(extents=extents, transform=transform)


def _joints(arm_deg: float) -> dict[str, np.ndarray]:
    """True joint centres of the 1.75 m figure, before the soles are put at y = 0."""
    j = {
        "Hips": (0.0, 0.95, 0.0), "Spine": (0.0, 1.05, 0.0), "Spine1": (0.0, 1.17, 0.0), "Spine2": (0.0, 1.30, 0.0),
        "Neck": (0.0, 1.47, 0.0), "Head": (0.0, 1.56, 0.0),
        "LeftArm": (0.19, 1.42, 0.0), "LeftUpLeg": (0.10, 0.92, 0.0), "LeftLeg": (0.12, 0.50, 0.01),
        "LeftFoot": (0.13, 0.08, 0.0), "LeftToeBase": (0.13, 0.02, 0.10), "LeftToe_End": (0.13, 0.02, 0.17),
    }  # fmt: skip
    out = {k: np.array(v, dtype=np.float64) for k, v in j.items()}
    a = np.radians(arm_deg)
    down = np.array([np.cos(a), -np.sin(a), 0.0])
    out["LeftForeArm"] = out["LeftArm"] + 0.29 * down
    out["LeftHand"] = out["LeftForeArm"] + 0.26 * down
    for name in [k for k in out if k.startswith("Left")]:
        out[name.replace("Left", "Right")] = out[name] * np.array([-1.0, 1.0, 1.0])
    return out


def _sides(_j: dict[str, np.ndarray]) -> list[tuple[str, float]]:
    return [("Left", 1.0), ("Right", -1.0)]


def _organic(parts: _Parts, j: dict[str, np.ndarray], arm_dir: np.ndarray, colored: bool, face: bool) -> None:
    col = (lambda c: c) if colored else (lambda c: _GREY)
    parts.add_mesh(_ellipsoid(j["Spine1"] + [0, 0.10, 0], (0.20, 0.24, 0.12)), col(_SHIRT))
    parts.add_mesh(_ellipsoid(j["Hips"] + [0, 0.03, 0], (0.18, 0.12, 0.11)), col(_TROUSERS))
    parts.add(*_frustum(j["Neck"] - [0, 0.05, 0], j["Neck"] + [0, 0.06, 0], 0.055, 0.05, 24), col(_SKIN))
    head = j["Head"] + [0.0, 0.06, 0.0]
    parts.add_mesh(_ellipsoid(head, (0.085, 0.115, 0.10)), col(_SKIN))
    if colored:
        parts.add_mesh(_ellipsoid(head + [0, 0.035, -0.012], (0.09, 0.09, 0.097)), _HAIR)
    if face:
        for sx in (-1.0, 1.0):
            parts.add_mesh(_ellipsoid(head + [sx * 0.032, 0.012, 0.088], (0.018, 0.011, 0.01), 2), _WHITE)
            parts.add_mesh(_ellipsoid(head + [sx * 0.032, 0.012, 0.097], (0.008, 0.008, 0.004), 2), _DARK)
            parts.add_mesh(_ellipsoid(head + [sx * 0.032, 0.034, 0.092], (0.02, 0.004, 0.006), 2), _HAIR)
            parts.add_mesh(_ellipsoid(head + [sx * 0.088, 0.0, 0.0], (0.012, 0.025, 0.015), 2), _SKIN)
        parts.add_mesh(_ellipsoid(head + [0, -0.015, 0.1], (0.012, 0.022, 0.018), 2), _SKIN)
        parts.add_mesh(_ellipsoid(head + [0, -0.055, 0.085], (0.028, 0.007, 0.008), 2), _LIPS)
    for side, sign in _sides(j):
        arm, fore, hand = j[side + "Arm"], j[side + "ForeArm"], j[side + "Hand"]
        d = arm_dir * np.array([sign, 1.0, 1.0])
        for a, b, r0, r1, c in (
            (arm, fore, 0.055, 0.045, _SHIRT), (fore, hand, 0.042, 0.033, _SKIN),
            (j[side + "UpLeg"], j[side + "Leg"], 0.085, 0.06, _TROUSERS),
            (j[side + "Leg"], j[side + "Foot"], 0.058, 0.04, _TROUSERS),
        ):  # fmt: skip
            parts.add(*_frustum(a, b, r0, r1, 24), col(c))
            parts.add_mesh(_ellipsoid(a, (r0, r0, r0), 2), col(c))
            parts.add_mesh(_ellipsoid(b, (r1, r1, r1), 2), col(c))
        palm = _ellipsoid((0, 0, 0), (0.045, 0.022, 0.05), 2)
        # the palm's long axis along the forearm, flat side facing the camera
        rot = np.stack([np.cross([0.0, 0.0, 1.0], d) / np.linalg.norm(np.cross([0.0, 0.0, 1.0], d)), [0, 0, 1.0], d], 1)
        parts.add(palm.vertices @ rot.T + hand + 0.08 * d, palm.faces, col(_SKIN))
        ankle = j[side + "Foot"]
        parts.add_mesh(_ellipsoid(ankle + [0, -0.045, 0.05], (0.05, 0.04, 0.12), 2), col(_SHOES))


def _blocky(parts: _Parts, j: dict[str, np.ndarray], arm_dir: np.ndarray) -> None:
    parts.add_mesh(_box((0, 1.20, 0), (0.40, 0.48, 0.20)), _MC_SHIRT)
    parts.add_mesh(_box((0, 1.61, 0), (0.30, 0.30, 0.30)), _MC_SKIN)
    parts.add_mesh(_box((0, 1.74, -0.01), (0.31, 0.06, 0.31)), _MC_HAIR)
    for sx in (-1.0, 1.0):  # a painted-on face: eyes and mouth as thin plates on the front of the head
        parts.add_mesh(_box((sx * 0.065, 1.63, 0.152), (0.06, 0.035, 0.01)), _WHITE)
        parts.add_mesh(_box((sx * 0.05, 1.63, 0.156), (0.03, 0.035, 0.01)), _DARK)
    parts.add_mesh(_box((0, 1.545, 0.152), (0.10, 0.025, 0.01)), _MC_HAIR)
    for side, sign in _sides(j):
        d = arm_dir * np.array([sign, 1.0, 1.0])
        parts.add_mesh(_oriented_box(j[side + "Arm"], j[side + "ForeArm"], 0.12, 0.12, pad=0.05), _MC_SHIRT)
        parts.add_mesh(_oriented_box(j[side + "ForeArm"], j[side + "Hand"], 0.11, 0.11), _MC_SKIN)
        parts.add_mesh(_oriented_box(j[side + "Hand"], j[side + "Hand"] + 0.13 * d, 0.10, 0.08), _MC_SKIN)
        x = sign * 0.10
        parts.add_mesh(_box((x, 0.71, 0), (0.19, 0.56, 0.19)), _MC_TROUSERS)  # thigh: hip 0.98 down to the knee
        parts.add_mesh(_box((x, 0.24, 0.0), (0.18, 0.40, 0.18)), _MC_TROUSERS)
        parts.add_mesh(_box((x, 0.04, 0.05), (0.19, 0.08, 0.28)), _SHOES)


def _robot(parts: _Parts, j: dict[str, np.ndarray], arm_dir: np.ndarray) -> None:
    parts.add_mesh(_box((0, 1.25, 0), (0.38, 0.34, 0.22)), _STEEL)
    parts.add_mesh(_box((0, 1.02, 0), (0.24, 0.16, 0.16)), _GUNMETAL)
    parts.add_mesh(_box((0, 0.93, 0), (0.34, 0.12, 0.20)), _STEEL)
    parts.add(*_frustum(j["Neck"] - [0, 0.06, 0], j["Neck"] + [0, 0.07, 0], 0.05, 0.05, 16), _GUNMETAL)
    parts.add_mesh(_box((0, 1.625, 0), (0.24, 0.26, 0.24)), _STEEL)
    parts.add_mesh(_box((0, 1.62, 0.12), (0.18, 0.05, 0.02)), _GUNMETAL)  # visor band, no face
    parts.add(*_frustum((0, 1.755, 0), (0, 1.80, 0), 0.012, 0.008, 8), _BRASS)  # antenna
    for side, sign in _sides(j):
        for a, b, r in (
            (j[side + "Arm"], j[side + "ForeArm"], 0.05), (j[side + "ForeArm"], j[side + "Hand"], 0.042),
            (j[side + "UpLeg"], j[side + "Leg"], 0.07), (j[side + "Leg"], j[side + "Foot"], 0.055),
        ):  # fmt: skip
            parts.add(*_frustum(a, b, r, r, 16), _GUNMETAL)
        for name, r in (("Arm", 0.07), ("ForeArm", 0.055), ("UpLeg", 0.075), ("Leg", 0.07), ("Foot", 0.05)):
            parts.add_mesh(_ellipsoid(j[side + name], (r, r, r), 2), _BRASS if name != "Arm" else _STEEL)
        d = arm_dir * np.array([sign, 1.0, 1.0])
        parts.add_mesh(_oriented_box(j[side + "Hand"], j[side + "Hand"] + 0.14 * d, 0.09, 0.05), _STEEL)
        parts.add_mesh(_box(j[side + "Foot"] * [1, 0, 1] + [0, 0.035, 0.05], (0.13, 0.07, 0.27)), _STEEL)


def _palette_texture(part: np.ndarray, colors: list[tuple[int, int, int]]) -> TextureVisuals:
    """UVs into a palette atlas: one 4x4 cell per distinct colour, each vertex at its part's cell centre."""
    unique, index = np.unique(np.array(colors, dtype=np.uint8), axis=0, return_inverse=True)
    cell = 4
    image = np.repeat(np.repeat(unique[None, :, :], cell, axis=0), cell, axis=1)
    u = (index[part] * cell + cell / 2) / image.shape[1]
    uv = np.stack([u, np.full_like(u, 0.5)], axis=1)
    material = PBRMaterial(baseColorTexture=Image.fromarray(image, "RGB"), metallicFactor=0.0, roughnessFactor=0.9)
    return TextureVisuals(uv=uv, material=material)


def _subdivide_to(
    vertices: np.ndarray, faces: np.ndarray, part: np.ndarray, faces_target: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split the largest faces (each into four) until there are at least `faces_target` faces."""
    while len(faces) < faces_target:
        areas = trimesh.triangles.area(vertices[faces])
        count = min(len(faces), int(np.ceil((faces_target - len(faces)) / 3)))
        chosen = np.argsort(-areas)[:count]
        vertices, faces, attrs = trimesh.remesh.subdivide(
            vertices, faces, face_index=chosen, vertex_attributes={"part": part.astype(np.float64)[:, None]}
        )
        part = np.rint(attrs["part"][:, 0]).astype(np.int64)
    return vertices, faces, part


def build_character(
    pose: Pose = "A", style: Style = "textured", height: float = 1.75, faces_target: int | None = None
) -> tuple[trimesh.Trimesh, dict[str, np.ndarray]]:
    """A humanoid figure and its true joint centres (skeleton bone names -> (3,) metres).

    `pose` "T" holds the arms level, "A" 40 degrees below. `faces_target` subdivides the largest faces until the mesh
    has at least that many faces (e.g. 30_000 for a bench); the shape is unchanged.
    """
    if pose not in POSES:
        raise ValueError(f"pose must be one of {POSES}")
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}")
    arm_deg = 0.0 if pose == "T" else A_POSE_DEG
    j = _joints(arm_deg)
    a = np.radians(arm_deg)
    arm_dir = np.array([np.cos(a), -np.sin(a), 0.0])
    parts = _Parts()
    if style == "blocky":
        _blocky(parts, j, arm_dir)
    elif style == "robot":
        _robot(parts, j, arm_dir)
    else:
        _organic(parts, j, arm_dir, colored=style == "textured", face=style == "textured")
    vertices, faces, part = parts.concatenate()
    if faces_target is not None and faces_target > len(faces):
        vertices, faces, part = _subdivide_to(vertices, faces, part, int(faces_target))
    floor = vertices[:, 1].min()
    scale = height / (vertices[:, 1].max() - floor)
    vertices = (vertices - [0.0, floor, 0.0]) * scale
    joints = {name: (p - [0.0, floor, 0.0]) * scale for name, p in j.items()}
    if style == "textured":
        visual: trimesh.visual.base.Visuals = _palette_texture(part, parts.colors)
    else:
        rgba = np.c_[np.array(parts.colors, dtype=np.uint8)[part], np.full(len(part), 255, np.uint8)]
        visual = trimesh.visual.ColorVisuals(vertex_colors=rgba)
    mesh = trimesh.Trimesh(vertices, faces, visual=visual, process=False)
    return mesh, joints
