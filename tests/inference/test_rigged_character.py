"""The auto-rigger's real output, end to end without the API: the rigged and walking GLBs of each reference figure
pass the Khronos validator, and under the walking clip every vertex stays attached to its bones.

Attachment bound: for each vertex, its distance to the segment of its dominant bone (joint to primary child, as
animated) may change by at most ATTACH_BOUND_M from the rest pose in any frame. Linear blend skinning of a vertex
shared between bones moves it off a rigid bone frame by design (candy-wrapper at a bent knee), so the bound is not
zero; a vertex weighted to the wrong limb (a hand bound to the hip) moves by tens of centimetres and fails it. Measured
at 1.75 m (max / 99.9th percentile): textured A-pose 0.089 / 0.069 m, grey A-pose 0.083 / 0.068 m (both BlazePose),
robot T-pose 0.044 / 0.035 m, blocky T-pose 0.027 / 0.027 m (both the geometric fit). The run is deterministic.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference.motion import library
from inference.motion.export import Motion, SkinnedCharacter, write_glb
from inference.motion.preview import skin_vertices
from inference.motion.reference_character import build_character
from inference.motion.rigging import rig_character
from inference.motion.skeleton import PRIMARY_CHILD, bone_names, world_pose

pytestmark = pytest.mark.timeout(900)  # the validator's first install from npm can take minutes
ATTACH_BOUND_M = 0.10


def _segment_distance(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = b - a
    t = np.clip(np.einsum("ij,ij->i", points - a, ab) / np.maximum(np.einsum("ij,ij->i", ab, ab), 1e-12), 0, 1)
    return np.linalg.norm(points - (a + t[:, None] * ab), axis=1)


@pytest.fixture(scope="module", params=[("A", "textured"), ("T", "robot")], ids=["A-textured", "T-robot"])
def rigged(request: pytest.FixtureRequest) -> SkinnedCharacter:
    pose, style = request.param
    mesh, _ = build_character(pose=pose, style=style)
    result = rig_character(mesh, height_meters=1.75)
    return SkinnedCharacter(result.mesh, result.skeleton, result.joints, result.weights, bone_names("mixamo"))


def test_rigged_and_walking_glbs_pass_the_validator(rigged: SkinnedCharacter, validate, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    walk = Motion.from_clip(library.get_clip(library.WALKING_ID), rigged.skeleton)
    for name, motions in (("rigged.glb", []), ("walking.glb", [walk])):
        path = write_glb(tmp_path / name, rigged.skeleton, rigged.names, character=rigged, motions=motions)
        issues = validate(path)
        assert (issues["numErrors"], issues["numWarnings"]) == (0, 0), (name, issues["messages"][:5])


def test_walking_keeps_every_vertex_attached(rigged: SkinnedCharacter) -> None:
    clip = library.get_clip(library.WALKING_ID)
    motion = Motion.from_clip(clip, rigged.skeleton)
    dominant = np.asarray(rigged.joints)[np.arange(len(rigged.weights)), np.argmax(rigged.weights, axis=1)]
    child = np.array(PRIMARY_CHILD)[dominant]
    end = np.where(child >= 0, child, dominant)  # end joints (head, hands, toe tips): the distance to the joint
    _, joints = world_pose(rigged.skeleton, motion.local_rotations, motion.root)
    rest = np.asarray(rigged.mesh.vertices)
    base = _segment_distance(rest, rigged.skeleton.positions[dominant], rigged.skeleton.positions[end])
    drift = []
    for frame in range(0, motion.frame_count, 3):
        posed = skin_vertices(rigged, motion, frame)
        now = _segment_distance(posed, joints[frame, dominant], joints[frame, end])
        drift.append(np.abs(now - base))
    drift = np.concatenate(drift)
    assert drift.max() < ATTACH_BOUND_M, f"max {drift.max():.3f} m, 99.9% {np.quantile(drift, 0.999):.3f} m"
    # And the clip really moves the character: the feet travel forward.
    assert motion.root[-1, 2] - motion.root[0, 2] > 0.5
