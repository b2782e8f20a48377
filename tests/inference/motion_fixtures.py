"""A small skinned character and hand-made clips for the motion export and preview tests.

The figure is built from capsules, one per bone segment (joint to primary child), over a skeleton in the canonical
T-pose (optionally scaled). A vertex belongs rigidly to its segment's bone, except near either end, where it blends
with the neighbouring bone (the parent at the start, the primary child at the end): two bones sharing one joint, at
most 50/50 exactly at the joint. Texture: a 128x32 image of vertical stripes, one colour per bone (u picks the bone,
v runs along the segment).
"""

from __future__ import annotations

import numpy as np
import trimesh
from PIL import Image
from scipy.spatial.transform import Rotation

from inference.motion.export import Motion, SkinnedCharacter
from inference.motion.skeleton import (
    BONE_COUNT,
    BONES,
    CANONICAL,
    INDEX,
    PARENTS,
    PRIMARY_CHILD,
    Clip,
    Skeleton,
    bone_names,
    rest_rotations,
)

BLEND = 0.25  # fraction of a segment, at each end, that blends with the neighbouring bone
SKIN, SHIRT, TROUSERS, SHOES, HAIR = (224, 172, 140), (40, 110, 200), (60, 60, 70), (150, 60, 30), (70, 40, 20)
RADIUS = {"Hips": 0.13, "Spine": 0.14, "Spine1": 0.15, "Spine2": 0.13, "Neck": 0.05, "Shoulder": 0.05, "Arm": 0.05,
          "ForeArm": 0.042, "Hand": 0.04, "UpLeg": 0.075, "Leg": 0.058, "Foot": 0.05, "ToeBase": 0.04}  # fmt: skip


def _radius(bone: str) -> float:
    return RADIUS.get(bone.replace("Left", "").replace("Right", ""), 0.05)


def _colour(bone: str) -> tuple[int, int, int]:
    if bone in ("Head", "Neck") or bone.endswith("Hand"):
        return SKIN
    if "Leg" in bone:
        return TROUSERS
    if "Foot" in bone or "Toe" in bone:
        return SHOES
    return SHIRT if bone != "Hips" else TROUSERS


def texture_image() -> Image.Image:
    img = np.full((32, 128, 3), 255, np.uint8)
    for b, bone in enumerate(BONES):
        img[:, b * 4 : b * 4 + 4] = _colour(bone)
    img[:4, 5 * 4 : 5 * 4 + 4] = HAIR  # top of the head's stripe (v near 1)
    return Image.fromarray(img)


def build_character(skeleton: Skeleton = CANONICAL, visual: str = "texture", count: int = 10) -> SkinnedCharacter:
    """`visual`: "texture" (TextureVisuals + PBRMaterial), "vertex" (uint8 vertex colours), "face" or "none"."""
    pos = skeleton.positions
    height = pos[:, 1].max() - pos[:, 1].min()
    parts, joints, weights, uvs, colours = [], [], [], [], []
    for b, bone in enumerate(BONES):
        c = PRIMARY_CHILD[b]
        p0 = pos[b]
        if bone == "Head":
            p1 = p0 + np.array([0.0, 0.11, 0.0]) * height / 1.7
            radius = 0.1 * height / 1.7
        elif bone.endswith("Hand"):
            p1 = p0 + (p0 - pos[PARENTS[b]]) / np.linalg.norm(p0 - pos[PARENTS[b]]) * 0.12 * height / 1.7
            radius = _radius(bone) * height / 1.7
        elif c < 0:
            continue
        else:
            p1, radius = pos[c], _radius(bone) * height / 1.7
        axis = p1 - p0
        length = float(np.linalg.norm(axis))
        capsule = trimesh.creation.capsule(height=length, radius=radius, count=[count, count])
        capsule.apply_translation([0, 0, length / 2])
        capsule.apply_transform(trimesh.geometry.align_vectors([0, 0, 1], axis / length))
        capsule.apply_translation(p0)
        v = capsule.vertices
        t = (v - p0) @ axis / length**2
        j = np.zeros((len(v), 4), np.uint16)
        w = np.zeros((len(v), 4), np.float32)
        j[:, 0], w[:, 0] = b, 1.0
        # Blend with the child at the far end, with the parent at the near end: 0.5 exactly at the shared joint.
        end = np.clip((t - (1 - BLEND)) / BLEND, 0, 1) if c >= 0 and bone != "Head" else np.zeros(len(v))
        start = np.clip(1 - t / BLEND, 0, 1) if PARENTS[b] >= 0 else np.zeros(len(v))
        end_w = 0.5 * end * end * (3 - 2 * end)
        start_w = 0.5 * start * start * (3 - 2 * start)
        w[:, 0] = 1.0 - end_w - start_w
        j[:, 1], w[:, 1] = max(c, 0), end_w
        j[:, 2], w[:, 2] = max(PARENTS[b], 0), start_w
        uv = np.stack([np.full(len(v), (b * 4 + 2) / 128), np.clip(t, 0.02, 0.98)], axis=1)
        parts.append(capsule)
        joints.append(j)
        weights.append(w)
        uvs.append(uv)
        colours.append(np.tile([*_colour(bone), 255], (len(v), 1)))
    mesh = trimesh.util.concatenate(parts)
    uv = np.concatenate(uvs)
    if visual == "texture":
        material = trimesh.visual.material.PBRMaterial(baseColorTexture=texture_image(), metallicFactor=0.0,
                                                       roughnessFactor=0.8)  # fmt: skip
        mesh.visual = trimesh.visual.TextureVisuals(uv=uv, material=material)
    elif visual == "vertex":
        mesh.visual = trimesh.visual.ColorVisuals(mesh, vertex_colors=np.concatenate(colours).astype(np.uint8))
    elif visual == "face":
        face_colours = np.concatenate(colours)[mesh.faces[:, 0]].astype(np.uint8)
        face_colours[::7, :3] //= 2  # a few darker faces, so per-face colour matters
        mesh.visual = trimesh.visual.ColorVisuals(mesh, face_colors=face_colours)
    return SkinnedCharacter(mesh, skeleton, np.concatenate(joints), np.concatenate(weights), bone_names())


def _set(rot: np.ndarray, bone: str, seq: str, degrees: np.ndarray) -> None:
    angles = np.asarray(degrees, dtype=np.float64).reshape(len(rot), len(seq))
    rot[:, INDEX[bone]] = Rotation.from_euler(seq, angles, degrees=True).as_quat()


def wave_clip(fps: float = 30.0, seconds: float = 1.0) -> Clip:
    """Right arm raised, forearm waving twice a second; left arm down; the head tilts. In place."""
    n = int(round(seconds * fps)) + 1
    t = np.arange(n) / fps
    rot = rest_rotations(n)
    _set(rot, "RightArm", "z", np.full(n, -60.0))
    _set(rot, "RightForeArm", "z", -45 + 35 * np.sin(2 * np.pi * 2 * t))
    _set(rot, "LeftArm", "z", np.full(n, -75.0))
    _set(rot, "Head", "z", 10 * np.sin(2 * np.pi * t))
    root = np.tile(CANONICAL.positions[0], (n, 1))
    return Clip("wave", fps, rot, root, loop=True)


def walk_clip(fps: float = 30.0, seconds: float = 1.0, speed: float = 1.2) -> Clip:
    """A walking-like cycle: legs and arms swing in opposition, knees bend, the hips move forward (+Z) and bob."""
    n = int(round(seconds * fps)) + 1
    t = np.arange(n) / fps
    phase = 2 * np.pi * t / seconds
    rot = rest_rotations(n)
    swing = 30 * np.sin(phase)
    _set(rot, "LeftUpLeg", "x", -swing)
    _set(rot, "RightUpLeg", "x", swing)
    _set(rot, "LeftLeg", "x", 30 * np.clip(np.sin(phase + 1.2), 0, None))
    _set(rot, "RightLeg", "x", 30 * np.clip(np.sin(phase + 1.2 + np.pi), 0, None))
    _set(rot, "LeftArm", "zx", np.stack([np.full(n, -75.0), swing * 0.7], 1))
    _set(rot, "RightArm", "zx", np.stack([np.full(n, 75.0), -swing * 0.7], 1))
    root = np.tile(CANONICAL.positions[0], (n, 1))
    root[:, 2] += speed * t
    root[:, 1] += 0.02 * np.cos(2 * phase)
    return Clip("walk", fps, rot, root, loop=False)


def motion(clip: Clip, skeleton: Skeleton = CANONICAL) -> Motion:
    return Motion.from_clip(clip, skeleton)


assert len(BONES) == BONE_COUNT
