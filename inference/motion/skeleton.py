"""The 24-bone humanoid skeleton every rig, clip and export in MeshFoundry shares.

Conventions (glTF's): metres, +Y up, the character faces +Z, so its left side is at +X. Every joint's rest frame is
world-aligned (identity rotation); a joint's rest local translation is its offset from its parent. Clips are authored
on the canonical T-pose skeleton below (`CANONICAL`, 1.7 m tall) as per-frame local rotations (quaternions, x y z w)
plus the hips' world position; `retarget` maps them onto any rig's rest pose (an A-pose, other proportions) by
turning each bone's rest direction onto the canonical one first, so a clip authored once plays on every character.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.transform import Rotation

# (name, parent index or -1). Order is topological: a parent always comes before its children.
_BONES: tuple[tuple[str, int], ...] = (
    ("Hips", -1),  # 0
    ("Spine", 0),  # 1
    ("Spine1", 1),  # 2
    ("Spine2", 2),  # 3
    ("Neck", 3),  # 4
    ("Head", 4),  # 5
    ("LeftShoulder", 3),  # 6
    ("LeftArm", 6),  # 7
    ("LeftForeArm", 7),  # 8
    ("LeftHand", 8),  # 9
    ("RightShoulder", 3),  # 10
    ("RightArm", 10),  # 11
    ("RightForeArm", 11),  # 12
    ("RightHand", 12),  # 13
    ("LeftUpLeg", 0),  # 14
    ("LeftLeg", 14),  # 15
    ("LeftFoot", 15),  # 16
    ("LeftToeBase", 16),  # 17
    ("LeftToe_End", 17),  # 18
    ("RightUpLeg", 0),  # 19
    ("RightLeg", 19),  # 20
    ("RightFoot", 20),  # 21
    ("RightToeBase", 21),  # 22
    ("RightToe_End", 22),  # 23
)

BONES: tuple[str, ...] = tuple(name for name, _ in _BONES)
PARENTS: tuple[int, ...] = tuple(parent for _, parent in _BONES)
INDEX: dict[str, int] = {name: i for i, name in enumerate(BONES)}
BONE_COUNT = len(BONES)  # 24

MIXAMO_PREFIX = "mixamorig:"
# `bone_naming: "generic"`: lower-case names in the style of Blender's Rigify/VRM humanoids.
GENERIC_NAMES: dict[str, str] = {
    "Hips": "hips", "Spine": "spine", "Spine1": "chest", "Spine2": "upper_chest", "Neck": "neck", "Head": "head",
    "LeftShoulder": "shoulder.L", "LeftArm": "upper_arm.L", "LeftForeArm": "forearm.L", "LeftHand": "hand.L",
    "RightShoulder": "shoulder.R", "RightArm": "upper_arm.R", "RightForeArm": "forearm.R", "RightHand": "hand.R",
    "LeftUpLeg": "thigh.L", "LeftLeg": "shin.L", "LeftFoot": "foot.L", "LeftToeBase": "toe.L",
    "LeftToe_End": "toe_end.L",
    "RightUpLeg": "thigh.R", "RightLeg": "shin.R", "RightFoot": "foot.R", "RightToeBase": "toe.R",
    "RightToe_End": "toe_end.R",
}  # fmt: skip


def bone_names(naming: str = "mixamo") -> list[str]:
    """The 24 names as exported: `mixamorig:Hips`... (default) or the generic ones."""
    if naming == "generic":
        return [GENERIC_NAMES[b] for b in BONES]
    return [MIXAMO_PREFIX + b for b in BONES]


# Each joint's primary child: its bone points from the joint to this child (the direction `retarget` aligns).
PRIMARY_CHILD: tuple[int, ...] = tuple(
    {"Hips": INDEX["Spine"], "Spine2": INDEX["Neck"]}.get(name, next((c for c, p in enumerate(PARENTS) if p == i), -1))
    for i, name in enumerate(BONES)
)

# The canonical T-pose, 1.70 m tall (head top at 1.70, soles at 0), arms level, facing +Z.
_CANONICAL_POSITIONS = {
    "Hips": (0.0, 0.95, 0.0), "Spine": (0.0, 1.05, 0.0), "Spine1": (0.0, 1.17, 0.0), "Spine2": (0.0, 1.30, 0.0),
    "Neck": (0.0, 1.45, 0.0), "Head": (0.0, 1.55, 0.0),
    "LeftShoulder": (0.05, 1.40, 0.0), "LeftArm": (0.17, 1.40, 0.0), "LeftForeArm": (0.45, 1.40, 0.0),
    "LeftHand": (0.70, 1.40, 0.0),
    "LeftUpLeg": (0.09, 0.92, 0.0), "LeftLeg": (0.09, 0.50, 0.0), "LeftFoot": (0.09, 0.08, 0.0),
    "LeftToeBase": (0.09, 0.02, 0.12), "LeftToe_End": (0.09, 0.02, 0.20),
}  # fmt: skip
CANONICAL_HEIGHT = 1.70


def _mirror(name: str) -> str:
    return name.replace("Left", "Right")


def _canonical() -> np.ndarray:
    positions = dict(_CANONICAL_POSITIONS)
    for name, (x, y, z) in _CANONICAL_POSITIONS.items():
        if name.startswith("Left"):
            positions[_mirror(name)] = (-x, y, z)
    return np.array([positions[b] for b in BONES], dtype=np.float64)


@dataclass(frozen=True)
class Skeleton:
    """A skeleton's rest pose: one world position per bone (metres), in `BONES` order."""

    positions: np.ndarray  # (24, 3)

    def offsets(self) -> np.ndarray:
        """Each joint's rest local translation (from its parent; the hips': its world position)."""
        parents = np.array(PARENTS)
        out = self.positions.copy()
        out[1:] -= self.positions[parents[1:]]
        return out

    def hip_height(self) -> float:
        return float(self.positions[INDEX["Hips"], 1] - min(self.positions[:, 1]))


CANONICAL = Skeleton(_canonical())


@dataclass(frozen=True)
class Clip:
    """An animation on the canonical skeleton, sampled at `fps`.

    `rotations` (frames, 24, 4) are local rotations as quaternions (x, y, z, w) relative to the world-aligned rest
    frames; `root` (frames, 3) is the hips' world position in metres (on the 1.7 m canonical skeleton). Frame i is at
    i / fps seconds; a looping clip's last frame equals its first.
    """

    name: str
    fps: float
    rotations: np.ndarray
    root: np.ndarray
    loop: bool = False
    meta: dict = field(default_factory=dict)

    @property
    def frame_count(self) -> int:
        return int(self.rotations.shape[0])

    @property
    def duration(self) -> float:
        return (self.frame_count - 1) / self.fps

    def times(self) -> np.ndarray:
        return np.arange(self.frame_count, dtype=np.float64) / self.fps


def world_pose(skeleton: Skeleton, rotations: np.ndarray, root: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forward kinematics for all frames: world rotations (frames, 24, 4) and joint positions (frames, 24, 3)."""
    frames = rotations.shape[0]
    offsets = skeleton.offsets()
    world_rot: list[Rotation] = [None] * BONE_COUNT  # type: ignore[list-item]
    pos = np.zeros((frames, BONE_COUNT, 3))
    for b in range(BONE_COUNT):
        local = Rotation.from_quat(rotations[:, b])
        p = PARENTS[b]
        if p < 0:
            world_rot[b] = local
            pos[:, b] = root
        else:
            world_rot[b] = world_rot[p] * local
            pos[:, b] = pos[:, p] + world_rot[p].apply(np.tile(offsets[b], (frames, 1)))
    quats = np.stack([r.as_quat() for r in world_rot], axis=1)
    return quats, pos


def _align(src: np.ndarray, dst: np.ndarray) -> Rotation:
    """The smallest rotation turning direction `src` onto `dst`."""
    a, b = src / np.linalg.norm(src), dst / np.linalg.norm(dst)
    axis = np.cross(a, b)
    s, c = np.linalg.norm(axis), float(np.clip(a @ b, -1.0, 1.0))
    if s < 1e-9:
        if c > 0:
            return Rotation.identity()
        ortho = np.cross(a, [1.0, 0.0, 0.0] if abs(a[0]) < 0.9 else [0.0, 1.0, 0.0])
        return Rotation.from_rotvec(np.pi * ortho / np.linalg.norm(ortho))
    return Rotation.from_rotvec(axis / s * np.arctan2(s, c))


def rest_corrections(rig: Skeleton) -> list[Rotation]:
    """Per bone, the rotation taking the rig's rest bone direction onto the canonical one (identity for bones
    already aligned, e.g. every bone of a T-posed rig with canonical proportions)."""
    out = []
    for b in range(BONE_COUNT):
        c = PRIMARY_CHILD[b]
        if c < 0:
            out.append(out[PARENTS[b]] if PARENTS[b] >= 0 else Rotation.identity())
            continue
        d_rig = rig.positions[c] - rig.positions[b]
        d_can = CANONICAL.positions[c] - CANONICAL.positions[b]
        out.append(_align(d_rig, d_can) if np.linalg.norm(d_rig) > 1e-9 else Rotation.identity())
    return out


def retarget(clip: Clip, rig: Skeleton) -> tuple[np.ndarray, np.ndarray]:
    """The clip's local rotations (frames, 24, 4) and hips translation (frames, 3) for `rig`'s rest pose.

    With G_c the clip's world rotation of a bone and A the rest correction, the rig's world rotation is G_c * A: the
    rig's bone, turned by A onto the canonical direction, then moves as the canonical bone does. Root motion is scaled
    by the ratio of hip heights, so a shorter character takes shorter strides.
    """
    world_c, _ = world_pose(CANONICAL, clip.rotations, clip.root)
    corrections = rest_corrections(rig)
    world_r = [Rotation.from_quat(world_c[:, b]) * corrections[b] for b in range(BONE_COUNT)]
    local = np.empty_like(clip.rotations)
    for b in range(BONE_COUNT):
        p = PARENTS[b]
        local[:, b] = (world_r[b] if p < 0 else world_r[p].inv() * world_r[b]).as_quat()
    scale = rig.hip_height() / CANONICAL.hip_height()
    hips = INDEX["Hips"]
    root = rig.positions[hips] + (clip.root - CANONICAL.positions[hips]) * scale
    return local, root


def rest_rotations(frames: int = 1) -> np.ndarray:
    """Identity local rotations for every bone: the rest pose, (frames, 24, 4)."""
    out = np.zeros((frames, BONE_COUNT, 4))
    out[..., 3] = 1.0
    return out
