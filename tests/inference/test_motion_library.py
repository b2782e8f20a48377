"""The animation library, BVH writing and the CPU text-to-motion reference (inference/motion)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from inference.motion import library
from inference.motion.bvh import clip_to_bvh_bytes, write_bvh
from inference.motion.skeleton import BONES, CANONICAL, INDEX, bone_names, world_pose

# Meshy's catalogue (mesh-toolkit 0.1.0, mesh_toolkit/animations.py): id -> (name, category, sub-category).
CATALOGUE = {
    0: ("Idle", "DailyActions", "Idle"),
    1: ("Walking_Woman", "WalkAndRun", "Walking"),
    14: ("Run_02", "WalkAndRun", "Running"),
    16: ("RunFast", "WalkAndRun", "Running"),
    22: ("FunnyDancing_01", "Dancing", "Dancing"),
    28: ("Big_Wave_Hello", "DailyActions", "Interacting"),
    30: ("Casual_Walk", "WalkAndRun", "Walking"),
    33: ("Chair_Sit_Idle_M", "DailyActions", "Idle"),
    57: ("Stand_to_Sit_Transition_M", "DailyActions", "Transitioning"),
    92: ("Double_Combo_Attack", "Fighting", "AttackingwithWeapon"),
    103: ("Simple_Kick", "Fighting", "AttackingwithWeapon"),
    191: ("Left_Jab_from_Guard", "Fighting", "Punching"),
    207: ("Roundhouse_Kick", "Fighting", "Punching"),
    290: ("Wave_One_Hand", "DailyActions", "Interacting"),
    466: ("Regular_Jump", "BodyMovements", "Jumping"),
    591: ("Hip_Hop_Dance", "Dancing", "Dancing"),
    596: ("ymca_dance", "Dancing", "Dancing"),
}
REQUIRED = {"idle": 0, "walk": 30, "run": 14, "jump": 466, "wave": 28, "sit": 57, "punch": 191, "kick": 103,
            "dance": 591}  # fmt: skip

SOLE = {"Foot": (0.0, -0.08, -0.04), "ToeBase": (0.0, -0.02, 0.0)}


def _soles(clip):
    """(F, 2 feet, 3 points, 3): heel, ball and toe tip of each foot, from our own forward kinematics."""
    wrot, pos = world_pose(CANONICAL, clip.rotations, clip.root)
    out = np.zeros((clip.frame_count, 2, 3, 3))
    for f, side in enumerate(("Left", "Right")):
        for k, (bone, off) in enumerate((("Foot", SOLE["Foot"]), ("ToeBase", SOLE["ToeBase"]),
                                         ("ToeBase", (0.0, -0.02, 0.08)))):  # fmt: skip
            b = INDEX[side + bone]
            out[:, f, k] = pos[:, b] + Rotation.from_quat(wrot[:, b]).apply(off)
    return out


@pytest.fixture(scope="module")
def clips():
    return {aid: library.get_clip(aid) for aid in library.ACTIONS}


def test_catalogue_coverage():
    assert len(library.ACTIONS) >= 40
    assert {a.category for a in library.ACTIONS.values()} == set(library.CATEGORIES)
    for aid, (name, cat, sub) in CATALOGUE.items():
        a = library.ACTIONS[aid]
        assert (a.action_id, a.name, a.category, a.sub_category) == (aid, name, cat, sub)
    for what, aid in REQUIRED.items():
        assert aid in library.ACTIONS, what
    keys = [a.key for a in library.ACTIONS.values()]
    assert len(set(keys)) == len(keys)
    assert all(k == k.lower() and " " not in k for k in keys)
    assert library.is_valid_action(library.WALKING_ID) and library.is_valid_action(library.RUNNING_ID)
    assert library.ACTIONS[library.RUNNING_ID].sub_category == "Running"
    assert not library.is_valid_action(99999) and not library.is_valid_action("0") and not library.is_valid_action(True)
    assert [a.action_id for a in library.search("wave", "DailyActions")] == [28, 290, 291]
    assert all(a.category == "Fighting" for a in library.search("KICK", "fighting"))
    assert {1, 30} <= {a.action_id for a in library.search("walk")}
    assert library.get_clip(0) is library.get_clip(0)


def test_every_clip_is_well_formed(clips):
    for aid, clip in clips.items():
        a = library.ACTIONS[aid]
        assert clip.fps == 30.0 and clip.frame_count == round(a.duration * 30) + 1, a.name
        assert np.isfinite(clip.rotations).all() and np.isfinite(clip.root).all(), a.name
        np.testing.assert_allclose(np.linalg.norm(clip.rotations, axis=-1), 1.0, atol=1e-6, err_msg=a.name)
        assert clip.loop == a.loop
        if a.loop:  # first frame == last frame (rotations up to sign; height; in-place clips also x/z)
            dots = np.abs(np.sum(clip.rotations[0] * clip.rotations[-1], axis=-1))
            assert dots.min() > 1 - 1e-9, a.name
            assert abs(clip.root[0, 1] - clip.root[-1, 1]) < 1e-6, a.name
        # Continuous: no pose pops between frames.
        step = np.abs(np.sum(clip.rotations[1:] * clip.rotations[:-1], axis=-1)).min()
        assert step > np.cos(np.radians(40) / 2), a.name


def test_feet_and_joint_limits(clips):
    for aid, clip in clips.items():
        a = library.ACTIONS[aid]
        soles = _soles(clip)
        lowest = soles[..., 1].min(axis=(1, 2))
        assert lowest.min() > -0.02, f"{a.name}: a foot {lowest.min():.3f} m below the floor"
        # Knees bend one way: the shin never swings forward of the thigh (hyper-extension).
        for side in ("Left", "Right"):
            shin = Rotation.from_quat(clip.rotations[:, INDEX[side + "Leg"]]).apply([0.0, -1.0, 0.0])
            assert shin[:, 2].max() < 0.02, f"{a.name}: {side} knee hyper-extends"
            sign = 1.0 if side == "Left" else -1.0
            fore = Rotation.from_quat(clip.rotations[:, INDEX[side + "ForeArm"]]).apply([sign, 0.0, 0.0])
            assert fore[:, 2].min() > -0.02, f"{a.name}: {side} elbow bends backwards"
        if a.category == "WalkAndRun" and a.sub_category in ("Walking", "CrouchWalking"):
            assert np.abs(lowest).max() < 0.01, f"{a.name}: lowest foot off the floor"
        if a.sub_category == "Running":
            assert (lowest < 0.01).mean() > 0.3 and lowest.max() < 0.15, a.name


def test_gaits_move_forward_without_sliding(clips):
    walk = clips[library.WALKING_ID]
    assert walk.root[-1, 2] - walk.root[0, 2] > 1.5  # 2 cycles of a casual walk
    assert abs(walk.root[-1, 0] - walk.root[0, 0]) < 0.1
    assert clips[544].root[-1, 2] < clips[544].root[0, 2] - 1.0  # Walk_Backward goes backwards
    run = clips[library.RUNNING_ID]
    assert (run.root[-1, 2] - run.root[0, 2]) / run.duration > 2.0 * (
        walk.root[-1, 2] - walk.root[0, 2]
    ) / walk.duration
    for aid in (30, 1, 106, 122, 544):
        soles = _soles(clips[aid])
        low_foot = soles[..., 1].min(axis=2).argmin(axis=1)  # the supporting foot per frame
        ball = soles[np.arange(len(low_foot)), low_foot, 1][:, [0, 2]]
        same = low_foot[1:] == low_foot[:-1]
        slide = np.linalg.norm(np.diff(ball, axis=0), axis=1)[same]
        assert np.median(slide) < 0.002 and slide.mean() < 0.01, library.ACTIONS[aid].name


def test_jump_leaves_the_ground_and_sit_lowers_hips(clips):
    jump = _soles(clips[466])[..., 1].min(axis=(1, 2))
    assert jump.max() > 0.2 and jump[0] < 0.01 and jump[-1] < 0.01
    assert clips[33].root[:, 1].max() < 0.65  # seated hips at chair height
    assert clips[0].root[:, 1].min() > 0.9


def test_bvh_round_trip_with_bvhio(tmp_path):
    import bvhio

    clip = library.get_clip(library.WALKING_ID)
    path = tmp_path / "walk.bvh"
    path.write_bytes(clip_to_bvh_bytes(clip))
    raw = bvhio.readAsBvh(str(path))
    assert raw.FrameCount == clip.frame_count
    assert raw.FrameTime == pytest.approx(1 / 30, abs=1e-6)
    names = bone_names("mixamo")
    root = bvhio.readAsHierarchy(str(path))
    joints = {j.Name: j for j, _, _ in root.layout()}
    assert set(joints) == set(names)
    _, ours = world_pose(CANONICAL, clip.rotations, clip.root)
    for frame in (0, 17, clip.frame_count - 1):
        root.loadPose(frame)
        theirs = np.array([list(joints[n].PositionWorld) for n in names]) / 100.0
        assert np.abs(theirs - ours[frame]).max() < 0.001, frame
    text = path.read_text()
    assert "CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation" in text
    assert text.count("End Site") == 5
    buf = io.StringIO()
    write_bvh(buf, CANONICAL, clip.rotations[:2], clip.root[:2], 30.0, list(BONES))
    assert "ROOT Hips" in buf.getvalue() and "Frames: 2" in buf.getvalue()
    with pytest.raises(ValueError, match="expected"):
        write_bvh(io.StringIO(), CANONICAL, clip.rotations[:, :5], clip.root, 30.0, list(BONES))


# ---- text to motion -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def t2m():
    from inference.motion import text_to_motion

    return text_to_motion


def test_split_prompt(t2m):
    assert t2m.split_prompt("A person walks forward and then waves") == ["walks forward", "waves"]
    assert t2m.split_prompt("jump, then dance; then bow") == ["jump", "dance", "bow"]


def test_walk_then_wave(t2m):
    clip = t2m.compose_motion("a person walks forward and then waves", 6.0)
    assert clip.frame_count == 181 and clip.fps == 30.0
    seg = clip.meta["segments"]
    assert [library.ACTIONS[s["action_id"]].sub_category for s in seg[:2]] == ["Walking", "Interacting"]
    assert "Wave" in seg[1]["name"] and seg[0]["action_id"] != 544  # forward, not backward
    assert all(0.3 < s["score"] <= 1.0 for s in seg[:2])
    # It walks forward first, then stands (nearly) still while waving.
    walk_end = round(seg[1]["start_s"] * 30)
    assert clip.root[walk_end, 2] - clip.root[0, 2] > 1.0
    assert abs(clip.root[-1, 2] - clip.root[walk_end + 15, 2]) < 0.2
    _check_continuous(clip)


def test_meaning_not_keywords(t2m):
    for prompt in ("sprint", "jogging in the park"):
        clip = t2m.compose_motion(prompt, 3.0)
        chosen = library.ACTIONS[clip.meta["segments"][0]["action_id"]]
        assert chosen.sub_category == "Running", (prompt, chosen.name)
        assert "run" not in prompt
    assert "jog" not in t2m.action_text(library.ACTIONS[14]) + t2m.action_text(library.ACTIONS[16])


def test_duration_fill_and_determinism(t2m):
    for duration in (0.5, 2.0, 4.37, 9.0):
        clip = t2m.compose_motion("kick", duration)
        assert clip.frame_count == round(duration * 30) + 1
        np.testing.assert_allclose(np.linalg.norm(clip.rotations, axis=-1), 1.0, atol=1e-6)
    clip = t2m.compose_motion("jump", 6.0)
    assert [s["name"] for s in clip.meta["segments"]] == ["Regular_Jump", "Idle"]  # one-shot, then idle fills
    a, b = t2m.compose_motion("dance then run", 4.0, seed=3), t2m.compose_motion("dance then run", 4.0, seed=3)
    np.testing.assert_array_equal(a.rotations, b.rotations)
    np.testing.assert_array_equal(a.root, b.root)
    _check_continuous(a)


def _check_continuous(clip):
    """Root and pose carry across the seams: no frame-to-frame jump beyond what the fastest library clip does."""
    step = np.linalg.norm(np.diff(clip.root, axis=0), axis=1)
    assert step.max() < 0.25
    dots = np.abs(np.sum(clip.rotations[1:] * clip.rotations[:-1], axis=-1))
    assert dots.min() > np.cos(np.radians(40) / 2)
    soles = _soles(clip)
    assert soles[..., 1].min() > -0.03


def test_the_api_catalogue_lists_exactly_the_library_clips() -> None:
    """`app.tasks.animations` (what the API validates and lists) and the worker's clips must never drift apart."""
    from app.tasks import animations

    assert set(animations.ACTIONS) == set(library.ACTIONS)
    for action_id, served in animations.ACTIONS.items():
        clip = library.ACTIONS[action_id]
        assert (served.key, served.name, served.category, served.sub_category, served.loop) == (
            clip.key, clip.name, clip.category, clip.sub_category, clip.loop,
        )  # fmt: skip
        assert abs(served.duration_s - clip.duration) < 1e-3
