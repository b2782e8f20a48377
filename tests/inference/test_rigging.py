"""Auto-rigging on procedural reference characters with known joint centres (real model, real solve, no mocks).

Measured (2 cores, reference characters at 1.75 m, this revision): limb-joint errors (shoulder, elbow, wrist, hip,
knee, ankle) mean / max: textured T 3.4 / 6.0 cm, textured A 3.2 / 5.9, grey T 3.2 / 5.8, grey A 7.0 / 15.5 (the
ankles drift up on the faceless grey A-pose). The hip joints sit about 6 cm off the primitives' centres (BlazePose
puts hips lower and wider). Blocky (boxes) and robot figures are not read by BlazePose (no person found, or only by
the landmark model alone): the geometric fit from the silhouette rigs them: blocky T 2.9 / 5.0 cm, blocky A
3.0 / 5.0, robot T 3.6 / 5.0, robot A 3.7 / 5.0 (the worst joint is the hip, put at the crotch's height). On its
own the geometric fit reads the textured and grey figures within 3.2 / 5.6 cm. It takes about 0.15 s; the stylised
figures rig in about 1.1 s, most of it BlazePose's failed attempts. A 30k-face character rigs in about 0.8 s
(weights 0.6-0.9 s) after the landmarker's one-off load (about 1.2 s). The text-to-3d generator's robot (arms
hanging down, I-pose) is read confidently by BlazePose as nonsense (head below the hips, feet in the air) once painted;
the sanity gate refuses that and the geometric fit's I-pose reading rigs it (about 11 s for the three robots,
deliverables included). The whole file takes about 40 s on 2 cores.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh
from scipy.spatial.transform import Rotation

from inference.bundled_models import POSE_FILE, install_pose_model, pose_model_path
from inference.motion import rigging
from inference.motion.geometric_fit import fit_geometric
from inference.motion.reference_character import build_character
from inference.motion.rigging import PoseEstimationFailed, RigResult, place_mesh, rig_character, skeleton_problems
from inference.motion.skeleton import BONES, INDEX, PARENTS, Skeleton
from inference.pipeline.deliverables import build_deliverables
from inference.runners.base import InputRejected
from inference.runners.procedural import ProceduralRunner

LIMBS = ("Arm", "ForeArm", "Hand", "UpLeg", "Leg", "Foot")
LIMB_BOUND_M = {"textured": 0.08, "grey": 0.18, "blocky": 0.08, "robot": 0.08}  # measured max 6.0 / 15.5 / 5 / 5 cm
GEOMETRIC_BOUND_M = 0.075  # the geometric fit alone, every style: measured max 5.6 cm


@pytest.fixture(scope="module", autouse=True)
def pose_model() -> None:
    if pose_model_path() is None:
        install_pose_model()


_CACHE: dict[tuple[str, str], tuple[RigResult, dict[str, np.ndarray]]] = {}


def rigged(pose: str, style: str) -> tuple[RigResult, dict[str, np.ndarray]]:
    if (pose, style) not in _CACHE:
        mesh, joints = build_character(pose, style)  # type: ignore[arg-type]
        _CACHE[(pose, style)] = (rig_character(mesh, height_meters=1.75), joints)
    return _CACHE[(pose, style)]


def _limb_errors(result: RigResult, joints: dict[str, np.ndarray]) -> dict[str, float]:
    p = result.skeleton.positions
    return {
        side + limb: float(np.linalg.norm(p[INDEX[side + limb]] - joints[side + limb]))
        for side in ("Left", "Right")
        for limb in LIMBS
    }


@pytest.mark.parametrize("pose", ["T", "A"])
@pytest.mark.parametrize("style", ["textured", "grey", "blocky", "robot"])
def test_joints_near_true_centres(pose: str, style: str) -> None:
    result, joints = rigged(pose, style)
    errors = _limb_errors(result, joints)
    assert max(errors.values()) < LIMB_BOUND_M[style], errors
    if style in ("blocky", "robot"):
        assert result.stats["pose_source"] == "geometry", result.stats
        assert np.mean(list(errors.values())) < 0.05, errors
    _check_skeleton_shape(result, joints)


def _check_skeleton_shape(result: RigResult, joints: dict[str, np.ndarray]) -> None:
    p = result.skeleton.positions
    # the spine runs upwards from the hips to the head, the head below the top of the mesh
    chain = [p[INDEX[n], 1] for n in ("Hips", "Spine", "Spine1", "Spine2", "Neck", "Head")]
    assert all(a < b for a, b in zip(chain, chain[1:], strict=False)), chain
    assert p[INDEX["Head"], 1] < result.mesh.bounds[1, 1]
    assert abs(p[INDEX["Head"], 1] - joints["Head"][1]) < 0.08
    # toes point forward (+Z) from the ankles
    for side in ("Left", "Right"):
        assert p[INDEX[side + "Toe_End"], 2] > p[INDEX[side + "ToeBase"], 2] > p[INDEX[side + "Foot"], 2]
        # sides are the character's: left at +X
        assert p[INDEX[side + "Hand"], 0] * (1 if side == "Left" else -1) > 0.3


@pytest.mark.parametrize("pose", ["T", "A"])
@pytest.mark.parametrize("style", ["textured", "grey", "blocky", "robot"])
def test_geometric_fit_alone(pose: str, style: str) -> None:
    mesh, joints = build_character(pose, style)  # type: ignore[arg-type]
    placed = place_mesh(mesh, 1.75)
    skeleton, stats = fit_geometric(placed)
    result = RigResult(mesh=placed, skeleton=skeleton, joints=np.zeros((0, 4)), weights=np.zeros((0, 4)))
    errors = _limb_errors(result, joints)
    assert max(errors.values()) < GEOMETRIC_BOUND_M, errors
    assert np.mean(list(errors.values())) < 0.045, errors
    _check_skeleton_shape(result, joints)
    assert stats["symmetric"] is True and stats["pose_source"] == "geometry"
    assert abs(np.mean(stats["arm_angles_deg"]) - (0.0 if pose == "T" else 40.0)) < 5.0, stats


@pytest.mark.parametrize("pose", ["T", "A"])
def test_skeleton_symmetric_and_named(pose: str) -> None:
    result, _ = rigged(pose, "textured")
    p = result.skeleton.positions
    assert p.shape == (len(BONES), 3) == (24, 3)
    for b, name in enumerate(BONES):
        if name.startswith("Left"):
            mirrored = p[INDEX[name.replace("Left", "Right")]] * [-1, 1, 1]
            assert np.linalg.norm(p[b] - mirrored) < 0.01, name
    assert result.stats["symmetric"] is True
    for key in ("render_s", "pose_s", "fit_s", "weights_s", "landmark_visibility", "faces"):
        assert key in result.stats


@pytest.mark.parametrize("style", ["textured", "grey", "blocky", "robot"])
def test_weights_are_valid(style: str) -> None:
    result, _ = rigged("A", style)
    v = len(result.mesh.vertices)
    assert result.joints.shape == (v, 4) and result.joints.dtype == np.uint16
    assert result.weights.shape == (v, 4) and result.weights.dtype == np.float32
    assert np.allclose(result.weights.sum(axis=1), 1.0, atol=1e-5)
    assert (result.weights >= 0).all()
    assert ((result.weights > 0).sum(axis=1) <= 4).all()
    assert (result.joints < len(BONES)).all()
    # the dominant influence of a vertex next to a joint is a bone there: a hand tip vertex goes to the hand
    tip = result.mesh.vertices[:, 0].argmax()
    assert BONES[result.joints[tip, np.argmax(result.weights[tip])]] == "LeftHand"
    top = result.mesh.vertices[:, 1].argmax()
    assert BONES[result.joints[top, np.argmax(result.weights[top])]] == "Head"


def _skin(result: RigResult, rotations: dict[str, Rotation]) -> np.ndarray:
    """Linear blend skinning of the rest mesh with world-aligned rest frames and local rotations per bone."""
    p = result.skeleton.positions
    world_r = [Rotation.identity()] * len(BONES)
    world_t = np.zeros((len(BONES), 3))
    for b, name in enumerate(BONES):
        local = rotations.get(name, Rotation.identity())
        parent = PARENTS[b]
        if parent < 0:
            world_r[b], world_t[b] = local, p[b]
        else:
            world_r[b] = world_r[parent] * local
            world_t[b] = world_t[parent] + world_r[parent].apply(p[b] - p[parent])
    vertices = np.asarray(result.mesh.vertices)
    out = np.zeros_like(vertices)
    for k in range(4):
        for b in np.unique(result.joints[:, k]):
            sel = result.joints[:, k] == b
            moved = world_r[b].apply(vertices[sel] - p[b]) + world_t[b]
            out[sel] += result.weights[sel, k, None] * moved
    return out


def test_linear_blend_skinning_moves_the_forearm_only() -> None:
    result, joints = rigged("T", "textured")
    deformed = _skin(result, {"LeftForeArm": Rotation.from_euler("z", 90, degrees=True)})
    moved = np.linalg.norm(deformed - result.mesh.vertices, axis=1)
    v = np.asarray(result.mesh.vertices)
    hand = np.linalg.norm(v - joints["LeftHand"], axis=1) < 0.06
    torso = (np.abs(v[:, 0]) < 0.12) & (v[:, 1] > 0.9) & (v[:, 1] < 1.35)
    right_arm = v[:, 0] < -0.35
    assert hand.sum() > 20 and torso.sum() > 50
    # the wrist is 26 cm from the elbow: a 90 degree turn moves it about 37 cm
    assert np.median(moved[hand]) > 0.25
    assert moved[torso].max() < 0.005
    assert moved[right_arm].max() < 1e-6
    # the hand went up (rotation about +Z turns +X towards +Y)
    assert deformed[hand, 1].mean() > v[hand, 1].mean() + 0.2


def test_height_scaling_and_placement() -> None:
    mesh, _ = build_character("A", "grey")
    mesh.apply_scale(37.0)
    mesh.apply_translation([5.0, 2.0, -3.0])
    result = rig_character(mesh, height_meters=1.2)
    lo, hi = result.mesh.bounds
    assert hi[1] == pytest.approx(1.2, abs=1e-6) and lo[1] == pytest.approx(0.0, abs=1e-6)
    assert (lo[0] + hi[0]) / 2 == pytest.approx(0.0, abs=1e-6) and (lo[2] + hi[2]) / 2 == pytest.approx(0.0, abs=1e-6)
    assert len(result.mesh.vertices) == len(mesh.vertices)
    assert result.mesh.visual.kind == "vertex"
    p = result.skeleton.positions
    assert 0.55 < p[INDEX["Hips"], 1] / 1.2 < 0.6
    assert p[:, 1].max() < 1.2


def _chair() -> trimesh.Trimesh:
    parts = [trimesh.creation.box((0.5, 0.06, 0.5), trimesh.transformations.translation_matrix([0, 0.45, 0]))]
    parts.append(trimesh.creation.box((0.5, 0.5, 0.05), trimesh.transformations.translation_matrix([0, 0.73, -0.22])))
    for x in (-0.22, 0.22):
        for z in (-0.22, 0.22):
            parts.append(
                trimesh.creation.box((0.05, 0.45, 0.05), trimesh.transformations.translation_matrix([x, 0.22, z]))
            )
    return trimesh.util.concatenate(parts)


def _teapot() -> trimesh.Trimesh:
    body = trimesh.creation.icosphere(3, 0.5)
    body.apply_scale([1.0, 0.75, 1.0])
    spout = trimesh.creation.cylinder(0.07, 0.5, transform=trimesh.transformations.rotation_matrix(0.8, [0, 0, 1]))
    spout.apply_translation([0.6, 0.1, 0])
    handle = trimesh.creation.torus(0.22, 0.05)
    handle.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [1, 0, 0]))
    handle.apply_translation([-0.5, 0.05, 0])
    lid = trimesh.creation.cone(0.25, 0.2)
    lid.apply_transform(trimesh.transformations.rotation_matrix(-np.pi / 2, [1, 0, 0]))
    lid.apply_translation([0, 0.35, 0])
    return trimesh.util.concatenate([body, spout, handle, lid])


def _box(extents: tuple[float, float, float], centre: tuple[float, float, float]) -> trimesh.Trimesh:
    return trimesh.creation.box(extents, trimesh.transformations.translation_matrix(centre))


def _bar_table() -> trimesh.Trimesh:  # narrow and tall enough to pass placement: two leg columns and a top
    legs = [_box((0.05, 1.0, 0.05), (x, 0.5, z)) for x in (-0.35, 0.35) for z in (-0.2, 0.2)]
    return trimesh.util.concatenate([_box((0.8, 0.05, 0.5), (0, 1.02, 0)), *legs])


def _stool() -> trimesh.Trimesh:
    legs = [_box((0.04, 0.6, 0.04), (x, 0.3, z)) for x in (-0.17, 0.17) for z in (-0.17, 0.17)]
    return trimesh.util.concatenate([_box((0.4, 0.05, 0.4), (0, 0.6, 0)), *legs])


def _armchair() -> trimesh.Trimesh:  # the chair plus armrests: legs, seat, back and side parts, but no head
    return trimesh.util.concatenate([_chair(), *(_box((0.06, 0.25, 0.5), (x, 0.6, 0)) for x in (-0.25, 0.25))])


def _ladder() -> trimesh.Trimesh:
    rungs = [_box((0.4, 0.04, 0.04), (0, y, 0)) for y in np.arange(0.3, 2.0, 0.3)]
    return trimesh.util.concatenate([_box((0.05, 2.0, 0.05), (x, 1.0, 0)) for x in (-0.2, 0.2)] + rungs)


def _coat_rack() -> trimesh.Trimesh:  # two feet, a pole, a crossbar at the top like level arms
    parts = [
        _box((0.06, 0.06, 0.06), (0, 1.7, 0)),
        _box((0.8, 0.05, 0.05), (0, 1.5, 0)),
        _box((0.06, 1.6, 0.06), (0, 0.9, 0)),
    ]
    feet = [_box((0.06, 0.2, 0.06), (x, 0.1, 0)) for x in (-0.12, 0.12)]
    return trimesh.util.concatenate([*parts, *feet, _box((0.3, 0.05, 0.06), (0, 0.2, 0))])


def _armless_figure() -> trimesh.Trimesh:  # legs, a round body and a head (a snowman on legs): no arms
    body = trimesh.creation.icosphere(3, 0.3).apply_translation([0, 1.05, 0])
    head = trimesh.creation.icosphere(3, 0.15).apply_translation([0, 1.5, 0])
    return trimesh.util.concatenate([_box((0.12, 0.8, 0.12), (x, 0.4, 0)) for x in (-0.1, 0.1)] + [body, head])


def _headless_figure() -> trimesh.Trimesh:  # legs, a trunk and a level crossbar: a signpost, no head
    legs = [_box((0.1, 0.9, 0.1), (x, 0.45, 0)) for x in (-0.1, 0.1)]
    return trimesh.util.concatenate([*legs, _box((0.4, 0.6, 0.2), (0, 1.2, 0)), _box((1.4, 0.12, 0.12), (0, 1.45, 0))])


def _flat_sphere() -> trimesh.Trimesh:  # shallow enough in z to pass placement
    return trimesh.creation.icosphere(3, 0.5).apply_scale([1.0, 1.0, 0.5])


def _flat_teapot() -> trimesh.Trimesh:
    return _teapot().apply_scale([1.0, 1.0, 0.4])


NON_HUMANOIDS = {
    "box": lambda: trimesh.creation.box((0.5, 0.5, 0.5)),
    "tall-box": lambda: trimesh.creation.box((0.4, 1.8, 0.3)),
    "wide-plank": lambda: trimesh.creation.box((2.0, 0.5, 0.4)),
    "standing-plank": lambda: trimesh.creation.box((0.6, 2.0, 0.05)),
    "sphere": lambda: trimesh.creation.icosphere(3, 0.5),
    "flat-sphere": _flat_sphere,
    "chair": _chair,
    "armchair": _armchair,
    "bar-table": _bar_table,
    "stool": _stool,
    "teapot": _teapot,
    "flat-teapot": _flat_teapot,
    "ladder": _ladder,
    "coat-rack": _coat_rack,
    "armless-figure": _armless_figure,
    "headless-figure": _headless_figure,
}


@pytest.mark.parametrize(
    "name", ["box", "tall-box", "wide-plank", "flat-sphere", "chair", "bar-table", "teapot", "flat-teapot"]
)
def test_non_humanoids_are_rejected(name: str) -> None:
    with pytest.raises(PoseEstimationFailed) as info:
        rig_character(NON_HUMANOIDS[name]())
    assert isinstance(info.value, InputRejected)
    assert str(info.value).startswith("Pose estimation failed")
    assert "/" not in str(info.value)


@pytest.mark.parametrize("name", sorted(NON_HUMANOIDS))
def test_geometric_fit_rejects_non_humanoids(name: str) -> None:
    """The shape alone, placed without placement's ratio checks (so very wide or deep models reach the geometry)."""
    mesh = NON_HUMANOIDS[name]()
    lo, hi = mesh.bounds
    mesh.apply_translation([-(lo[0] + hi[0]) / 2, -lo[1], -(lo[2] + hi[2]) / 2])
    mesh.apply_scale(1.75 / (hi[1] - lo[1]))
    with pytest.raises(PoseEstimationFailed) as info:
        fit_geometric(mesh)
    assert str(info.value).startswith("Pose estimation failed: no humanoid shape found (")


def test_bundled_pose_model_is_installed() -> None:
    subprocess.run([sys.executable, "-m", "inference.bundled_models"], check=True, capture_output=True)
    path = pose_model_path()
    assert path is not None and path.name == POSE_FILE
    assert path.stat().st_size > 9_000_000


# --- the anatomical sanity gate and the text-to-3d robot (arms hanging down, I-pose) ---------------------------------


@pytest.fixture(scope="module")
def sane_reference() -> tuple[trimesh.Trimesh, Skeleton]:
    mesh, _ = build_character("T", "robot")
    placed = place_mesh(mesh, 1.75)
    return placed, fit_geometric(placed)[0]


def _broken(skeleton: Skeleton, how: str) -> Skeleton:
    p = skeleton.positions.copy()
    if how == "head below hips":
        p[INDEX["Head"], 1] = p[INDEX["Hips"], 1] - 0.1
    elif how == "feet in the air":
        for side in ("Left", "Right"):
            for part in ("Foot", "ToeBase", "Toe_End"):
                p[INDEX[side + part], 1] += 0.5
    elif how == "arms swapped":
        for part in ("Shoulder", "Arm", "ForeArm", "Hand"):
            left, right = INDEX["Left" + part], INDEX["Right" + part]
            p[[left, right]] = p[[right, left]]
    return Skeleton(p)


BROKEN = {
    "head below hips": "the spine does not rise from the hips to the head",
    "feet in the air": "ankle is not near the floor",
    "arms swapped": "the left and right limbs are not on their sides of the body",
}


@pytest.mark.parametrize("how", sorted(BROKEN))
def test_sanity_gate_rejects_broken_skeletons(sane_reference, how: str, monkeypatch) -> None:
    placed, skeleton = sane_reference
    assert skeleton_problems(skeleton, placed) == []
    broken = _broken(skeleton, how)
    problems = skeleton_problems(broken, placed)
    assert any(BROKEN[how] in problem for problem in problems), problems
    # in the pipeline: BlazePose finds nothing and the geometry returns the broken skeleton -> a clear rejection
    monkeypatch.setattr(rigging, "estimate_pose", _no_person)
    monkeypatch.setattr(rigging, "fit_geometric", lambda mesh: (broken, {"pose_source": "geometry"}))
    with pytest.raises(PoseEstimationFailed) as info:
        rig_character(placed, height_meters=1.75)
    assert str(info.value).startswith("Pose estimation failed: the skeleton fitted to the model's shape is implausible")
    assert BROKEN[how] in str(info.value)


def _no_person(*_args, **_kwargs):  # type: ignore[no-untyped-def]
    raise PoseEstimationFailed("no person found")


def _procedural_robot(seed: int, refined: bool, tmp: Path) -> trimesh.Trimesh:
    """The text-to-3d CPU generator's robot ("a robot"): arms hanging straight down beside the body, legs apart.
    Refined: painted and delivered as the GLB a rigging task receives (BlazePose reads it, confidently, as nonsense:
    head below the hips, feet half a metre up)."""
    runner = ProceduralRunner()
    params = {"prompt": "a robot", "mode": "preview", "seed": seed}
    art = runner.run({}, params, tmp / "preview", lambda _f: None)
    if not refined:
        return trimesh.load(art.mesh, force="mesh")
    art = runner.run({"preview_mesh": art.mesh}, {**params, "mode": "refine"}, tmp / "refine", lambda _f: None)
    delivered = build_deliverables(art.mesh, {"mode": "refine", "target_formats": ["glb"]}, tmp / "deliverables")
    return trimesh.load(tmp / "deliverables" / delivered.model_files["glb"], force="mesh")


ROBOTS = (("preview", 0), ("refined", 2), ("refined", 8))


@pytest.fixture(scope="module")
def robot_rigs(tmp_path_factory) -> dict[tuple[str, int], RigResult]:
    out = {}
    for kind, seed in ROBOTS:
        mesh = _procedural_robot(seed, kind == "refined", tmp_path_factory.mktemp(f"robot-{kind}-{seed}"))
        out[(kind, seed)] = rig_character(mesh, height_meters=1.75)
    return out


@pytest.mark.parametrize(("kind", "seed"), ROBOTS)
def test_procedural_robot_in_i_pose_rigs_sanely(robot_rigs, kind: str, seed: int) -> None:
    result = robot_rigs[(kind, seed)]
    p, height = result.skeleton.positions, 1.75
    assert result.stats["pose_source"] == "geometry", result.stats  # BlazePose's reading is refused or absent
    assert skeleton_problems(result.skeleton, result.mesh) == []
    assert 0.25 * height < p[INDEX["Hips"], 1] < 0.45 * height  # a short-legged robot
    assert p[INDEX["Head"], 1] > 0.7 * height
    for side, sign in (("Left", 1.0), ("Right", -1.0)):
        shoulder, elbow, hand = (p[INDEX[side + part]] for part in ("Arm", "ForeArm", "Hand"))
        assert p[INDEX[side + "Foot"], 1] < 0.08 * height
        # the arms hang: the hand well below the shoulder, straight under it, beside the trunk
        assert shoulder[1] - hand[1] > 0.2 * height
        assert abs(hand[0] - shoulder[0]) < 0.03 * height
        assert shoulder[1] > elbow[1] > hand[1]
        assert sign * hand[0] > 0.15 * height
        assert sign * p[INDEX[side + "Foot"], 0] > 0.03 * height
    assert np.all(np.abs(np.array(result.stats["arm_angles_deg"]) - 90.0) < 5.0)
    # weights: the outermost vertex on each side moves with that arm, the top of the antenna with the head
    v = np.asarray(result.mesh.vertices)
    dominant = result.joints[np.arange(len(v)), np.argmax(result.weights, axis=1)]
    for side, vertex in (("Left", v[:, 0].argmax()), ("Right", v[:, 0].argmin())):
        assert BONES[dominant[vertex]] in (side + "Arm", side + "ForeArm", side + "Hand")
    assert BONES[dominant[v[:, 1].argmax()]] == "Head"


def test_arms_against_the_body_fail_clearly() -> None:
    """Arms hanging flush against the trunk (no gap in the front view) are not guessed at."""
    parts = [_box((0.12, 0.8, 0.15), (x, 0.4, 0)) for x in (-0.1, 0.1)]
    parts += [_box((0.4, 0.6, 0.2), (0, 1.1, 0)), _box((0.2, 0.22, 0.2), (0, 1.55, 0))]
    parts += [_box((0.08, 0.55, 0.1), (x, 1.1, 0)) for x in (-0.24, 0.24)]  # touching the trunk's sides
    mesh = place_mesh(trimesh.util.concatenate(parts), 1.75)
    with pytest.raises(PoseEstimationFailed) as info:
        fit_geometric(mesh)
    assert "rig a character in a T-pose or A-pose" in str(info.value)


def test_without_the_pose_model_the_shape_alone_is_fitted(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker whose pose model is missing (not installed, unreadable) still rigs figures the geometry reads."""
    from inference.motion import rigging as rigging_module

    def unavailable(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("pose_landmarker_full.task not found")

    monkeypatch.setattr(rigging_module, "estimate_pose", unavailable)
    mesh, _ = build_character(pose="T", style="blocky")
    result = rigging_module.rig_character(mesh, height_meters=1.75)
    assert result.stats["pose_source"] == "geometry" and "unavailable" in result.stats["pose_failure"]
