"""BVH (Biovision Hierarchy) writing for clips on the shared 24-bone skeleton.

The file is the common dialect Blender, MotionBuilder, assimp and bvhio read: centimetres, the hips as ROOT with
`OFFSET 0 0 0` and six channels (`Xposition Yposition Zposition Zrotation Xrotation Yrotation`, the hips' world
position), every other joint with three rotation channels in the same Z X Y order (intrinsic: R = Rz * Rx * Ry), an
`End Site` under each leaf joint. Rest frames are world-aligned (identity), so each joint's channels are simply its
local rotation as Euler angles and its OFFSET is its rest translation from the parent.
"""

from __future__ import annotations

import io
import os
from typing import IO

import numpy as np
from scipy.spatial.transform import Rotation

from inference.motion.skeleton import BONE_COUNT, BONES, CANONICAL, PARENTS, Clip, Skeleton, bone_names, retarget

_CM = 100.0
# End Site offsets (metres) for the leaf joints, in the rest frame: the head top, fingertips, toe tips.
_END_SITES = {"Head": (0.0, 0.15, 0.0), "LeftHand": (0.08, 0.0, 0.0), "RightHand": (-0.08, 0.0, 0.0),
              "LeftToe_End": (0.0, 0.0, 0.03), "RightToe_End": (0.0, 0.0, 0.03)}  # fmt: skip


def _children() -> list[list[int]]:
    out: list[list[int]] = [[] for _ in range(BONE_COUNT)]
    for b, p in enumerate(PARENTS):
        if p >= 0:
            out[p].append(b)
    return out


def _end_site(skeleton: Skeleton, bone: int) -> np.ndarray:
    """An End Site offset for a leaf joint, scaled with the skeleton's height."""
    scale = skeleton.hip_height() / CANONICAL.hip_height()
    return np.asarray(_END_SITES.get(BONES[bone], (0.0, 0.05, 0.0))) * scale


def _fmt(v) -> str:
    return " ".join(f"{x:.6f}" for x in v)


def write_bvh(
    path_or_file: str | os.PathLike | IO[str],
    skeleton: Skeleton,
    local_rotations: np.ndarray,
    root: np.ndarray,
    fps: float,
    names: list[str] | None = None,
) -> None:
    """Write frames of local rotations (F, 24, 4; x y z w, relative to world-aligned rest frames) and hips world
    positions (F, 3; metres) on `skeleton` as BVH. `names` are the 24 joint names (default: `mixamorig:` ones)."""
    rotations = np.asarray(local_rotations, dtype=np.float64)
    root = np.asarray(root, dtype=np.float64)
    frames = rotations.shape[0]
    if rotations.shape != (frames, BONE_COUNT, 4) or root.shape != (frames, 3) or frames < 1:
        raise ValueError(
            f"expected rotations (F, {BONE_COUNT}, 4) and root (F, 3), got {rotations.shape}, {root.shape}"
        )
    if fps <= 0:
        raise ValueError("fps must be positive")
    names = list(names) if names is not None else bone_names("mixamo")
    if len(names) != BONE_COUNT or any(not n or any(c.isspace() for c in n) for n in names):
        raise ValueError("names must be 24 non-empty names without whitespace")
    offsets = skeleton.offsets()
    children = _children()

    lines = ["HIERARCHY"]
    order: list[int] = []

    def emit(b: int, depth: int) -> None:
        pad = "  " * depth
        order.append(b)
        if PARENTS[b] < 0:
            lines.append(f"{pad}ROOT {names[b]}")
            lines.append(pad + "{")
            lines.append(f"{pad}  OFFSET 0.000000 0.000000 0.000000")
            lines.append(f"{pad}  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation")
        else:
            lines.append(f"{pad}JOINT {names[b]}")
            lines.append(pad + "{")
            lines.append(f"{pad}  OFFSET {_fmt(offsets[b] * _CM)}")
            lines.append(f"{pad}  CHANNELS 3 Zrotation Xrotation Yrotation")
        for c in children[b]:
            emit(c, depth + 1)
        if not children[b]:
            lines.append(f"{pad}  End Site")
            lines.append(pad + "  {")
            lines.append(f"{pad}    OFFSET {_fmt(_end_site(skeleton, b) * _CM)}")
            lines.append(pad + "  }")
        lines.append(pad + "}")

    emit(0, 0)
    lines += ["MOTION", f"Frames: {frames}", f"Frame Time: {1.0 / fps:.8f}"]

    q = rotations[:, order].reshape(-1, 4)
    euler = Rotation.from_quat(q).as_euler("ZXY", degrees=True).reshape(frames, BONE_COUNT, 3)
    data = np.concatenate([root * _CM, euler.reshape(frames, -1)], axis=1)
    body = "\n".join(" ".join(f"{x:.5f}" for x in row) for row in data)
    text = "\n".join(lines) + "\n" + body + "\n"

    if hasattr(path_or_file, "write"):
        path_or_file.write(text)  # type: ignore[union-attr]
    else:
        with open(path_or_file, "w", encoding="ascii", newline="\n") as f:
            f.write(text)


def clip_to_bvh_bytes(clip: Clip, skeleton: Skeleton | None = None, naming: str = "mixamo") -> bytes:
    """A clip as BVH bytes: on the canonical skeleton, or retargeted onto `skeleton` (a rig's rest pose)."""
    if skeleton is None:
        skeleton, rotations, root = CANONICAL, clip.rotations, clip.root
    else:
        rotations, root = retarget(clip, skeleton)
        # retarget gives rotations relative to the rig's rest directions; the rig's rest frames are still
        # world-aligned, so the BVH OFFSETs are the rig's own rest translations.
    buf = io.StringIO()
    write_bvh(buf, skeleton, rotations, root, clip.fps, bone_names(naming))
    return buf.getvalue().encode("ascii")
