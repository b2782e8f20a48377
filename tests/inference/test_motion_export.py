"""Skinned and animated exports (GLB, FBX, USDZ) and animation previews, read back with independent readers.

Oracles: the Khronos glTF validator, pygltflib plus a small skinning evaluator written here from the glTF spec, ufbx
(FBX), pxr's UsdSkel (USDZ) and the skeleton's own forward kinematics.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pygltflib as gl
import pytest
from PIL import Image
from scipy.spatial.transform import Rotation

from inference.motion.export import (
    Motion,
    glb_to_fbx,
    resample,
    write_armature_fbx,
    write_glb,
    write_usdz,
)
from inference.motion.preview import render_frames, skin_vertices, write_gif, write_strip
from inference.motion.skeleton import BONE_COUNT, BONES, CANONICAL, PARENTS, Skeleton, bone_names, world_pose
from tests.inference.motion_fixtures import build_character, motion, walk_clip, wave_clip

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # the validator's first npm install can take minutes
NAMES = bone_names()
ARTEFACTS = Path(__file__).resolve().parents[2] / ".meshfoundry-test" / "artefacts"
# A rig with other proportions than the canonical one (shorter, so retargeting and bind matrices are not trivial).
SMALL = Skeleton(CANONICAL.positions * 0.8)


@pytest.fixture(scope="module")
def character():  # type: ignore[no-untyped-def]
    return build_character()


@pytest.fixture(scope="module")
def wave(character) -> Motion:  # type: ignore[no-untyped-def]
    return motion(wave_clip(), character.skeleton)


@pytest.fixture(scope="module")
def walk(character) -> Motion:  # type: ignore[no-untyped-def]
    return motion(walk_clip(seconds=1.5), character.skeleton)


# ----------------------------------------------------------------------------------------------- glTF read-back


def _read(gltf: gl.GLTF2, index: int) -> np.ndarray:
    acc = gltf.accessors[index]
    view = gltf.bufferViews[acc.bufferView]
    dtype = {gl.FLOAT: np.float32, gl.UNSIGNED_SHORT: np.uint16, gl.UNSIGNED_BYTE: np.uint8,
             gl.UNSIGNED_INT: np.uint32}[acc.componentType]  # fmt: skip
    width = {gl.SCALAR: 1, gl.VEC2: 2, gl.VEC3: 3, gl.VEC4: 4, gl.MAT4: 16}[acc.type]
    assert view.byteStride in (None, 0)
    start = view.byteOffset + (acc.byteOffset or 0)
    data = np.frombuffer(gltf.binary_blob(), dtype=dtype, count=acc.count * width, offset=start)
    return data.reshape(acc.count, width) if width > 1 else data


def _gltf_skinned(gltf: gl.GLTF2, animation: int, frame: int) -> np.ndarray:
    """Skinned positions at key `frame` of an animation, evaluated from the file alone (glTF 2.0 spec, §3.7)."""
    prim = gltf.meshes[0].primitives[0]
    skin = gltf.skins[0]
    local = {}
    for i, node in enumerate(gltf.nodes):
        m = np.eye(4)
        m[:3, 3] = node.translation or (0, 0, 0)
        if node.rotation:
            m[:3, :3] = Rotation.from_quat(node.rotation).as_matrix()
        local[i] = m
    anim = gltf.animations[animation]
    for ch in anim.channels:
        value = _read(gltf, anim.samplers[ch.sampler].output)[frame].astype(np.float64)
        if ch.target.path == "rotation":
            local[ch.target.node][:3, :3] = Rotation.from_quat(value).as_matrix()
        else:
            local[ch.target.node][:3, 3] = value
    parent = {c: i for i, n in enumerate(gltf.nodes) for c in (n.children or [])}
    world: dict[int, np.ndarray] = {}

    def world_of(i: int) -> np.ndarray:
        if i not in world:
            world[i] = (world_of(parent[i]) if i in parent else np.eye(4)) @ local[i]
        return world[i]

    ibm = _read(gltf, skin.inverseBindMatrices).reshape(-1, 4, 4).transpose(0, 2, 1)
    joint_mats = np.stack([world_of(j) @ ibm[k] for k, j in enumerate(skin.joints)])
    pos = _read(gltf, prim.attributes.POSITION).astype(np.float64)
    joints = _read(gltf, prim.attributes.JOINTS_0).astype(np.int64)
    weights = _read(gltf, prim.attributes.WEIGHTS_0).astype(np.float64)
    mats = np.einsum("vk,vkij->vij", weights, joint_mats[joints])
    return np.einsum("vij,vj->vi", mats[:, :3, :3], pos) + mats[:, :3, 3]


# ----------------------------------------------------------------------------------------------- GLB


@pytest.mark.parametrize("visual", ["texture", "vertex", "face", "none"])
def test_rigged_glb_is_valid_and_reads_back(validate, visual: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    character = build_character(SMALL, visual=visual)
    path = write_glb(tmp_path / "rigged.glb", SMALL, NAMES, character=character)
    issues = validate(path)
    # Infos only (e.g. none); the texture is 128x32, so not even IMAGE_NPOT_DIMENSIONS.
    assert (issues["numErrors"], issues["numWarnings"]) == (0, 0), issues["messages"][:5]
    gltf = gl.GLTF2().load(str(path))
    assert gltf.animations == []
    assert len(gltf.skins) == 1 and len(gltf.skins[0].joints) == BONE_COUNT
    assert [gltf.nodes[j].name for j in gltf.skins[0].joints] == NAMES
    assert NAMES[0] == "mixamorig:Hips"
    ibm = _read(gltf, gltf.skins[0].inverseBindMatrices).reshape(-1, 4, 4).transpose(0, 2, 1)
    np.testing.assert_allclose(ibm[:, :3, 3], -SMALL.positions, atol=1e-6)
    attrs = gltf.meshes[0].primitives[0].attributes
    assert (attrs.TEXCOORD_0 is not None) == (visual == "texture")
    assert (attrs.COLOR_0 is not None) == (visual in ("vertex", "face"))
    if attrs.COLOR_0 is not None:
        acc = gltf.accessors[attrs.COLOR_0]
        assert (acc.componentType, acc.normalized) == (gl.UNSIGNED_BYTE, True)
    weights = _read(gltf, attrs.WEIGHTS_0)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-6)
    # The rest pose in the file is the mesh itself.
    rest = Motion.rest(SMALL)
    write_glb(tmp_path / "rest.glb", SMALL, NAMES, character=character, motions=[rest])
    skinned = _gltf_skinned(gl.GLTF2().load(str(tmp_path / "rest.glb")), 0, 0)
    np.testing.assert_allclose(skinned, _read(gltf, attrs.POSITION), atol=1e-5)
    assert path.stat().st_size < 1_000_000


@pytest.mark.parametrize("fps", [24, 25, 30, 60])
def test_animated_glb_at_each_frame_rate(validate, character, wave, walk, fps: int, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    motions = [resample(wave, fps), resample(walk, fps)]
    path = write_glb(tmp_path / "animated.glb", CANONICAL, NAMES, character=character, motions=motions)
    issues = validate(path)
    assert (issues["numErrors"], issues["numWarnings"]) == (0, 0), issues["messages"][:5]
    gltf = gl.GLTF2().load(str(path))
    assert [a.name for a in gltf.animations] == ["wave", "walk"]
    for anim, m, seconds in zip(gltf.animations, motions, (1.0, 1.5), strict=True):
        assert m.frame_count == round(seconds * fps) + 1
        # Exactly `fps` when the duration is a whole number of frames; else the nearest rate keeping it (1.5 s at 25:
        # 37.5 frames, rounded to 38 intervals, 25.33 fps).
        assert m.fps == fps if (seconds * fps).is_integer() else abs(m.fps - fps) < 0.02 * fps
        assert len(anim.channels) == BONE_COUNT + 1
        for sampler in anim.samplers:
            times = gltf.accessors[sampler.input]
            assert times.count == m.frame_count
            assert times.max[0] == pytest.approx(seconds, abs=1e-6)
            assert sampler.interpolation == "LINEAR"
    if fps == 30:  # the file, evaluated by the spec, poses the mesh as our skinning does
        frame = 9
        np.testing.assert_allclose(_gltf_skinned(gltf, 1, frame), skin_vertices(character, motions[1], frame),
                                   atol=2e-5)  # fmt: skip


def test_armature_glb_has_joints_and_animations_only(validate, wave, walk, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write_glb(tmp_path / "armature.glb", CANONICAL, NAMES, character=None, motions=[wave, walk])
    issues = validate(path)
    # Infos: NODE_EMPTY for the five leaf joints (head, hands, toe ends), which carry nothing.
    assert (issues["numErrors"], issues["numWarnings"]) == (0, 0), issues["messages"][:5]
    gltf = gl.GLTF2().load(str(path))
    assert gltf.meshes == [] and gltf.skins == []
    assert [n.name for n in gltf.nodes[:BONE_COUNT]] == NAMES
    assert len(gltf.animations) == 2
    assert path.stat().st_size < 100_000


def test_resample_keeps_duration_and_interpolates(walk) -> None:  # type: ignore[no-untyped-def]
    for fps in (24, 25, 30, 60):
        out = resample(walk, fps)
        assert out.frame_count == round(walk.duration * fps) + 1
        assert out.duration == pytest.approx(walk.duration, abs=1e-12)
        np.testing.assert_allclose(out.root[[0, -1]], walk.root[[0, -1]], atol=1e-12)
        np.testing.assert_allclose(np.linalg.norm(out.local_rotations, axis=-1), 1.0, atol=1e-9)
    # 38 frames at 30 fps (1.2333 s) to 24 fps: 31 frames, duration kept, so the spacing is 1 / 24.32.
    odd = Motion("odd", 30.0, walk.local_rotations[:38], walk.root[:38])
    out = resample(odd, 24)
    assert out.frame_count == 31 and out.duration == pytest.approx(odd.duration, abs=1e-12)
    # Halfway between two source frames: the slerp midpoint (same angle to both ends), the root's mean.
    half = resample(Motion("m", 10.0, walk.local_rotations[:3], walk.root[:3]), 20.0)
    assert half.frame_count == 5
    a, mid, b = (Rotation.from_quat(half.local_rotations[i]) for i in (0, 1, 2))
    np.testing.assert_allclose((a.inv() * mid).magnitude(), (mid.inv() * b).magnitude(), atol=1e-9)
    np.testing.assert_allclose(half.root[1], walk.root[:2].mean(axis=0), atol=1e-12)


# ----------------------------------------------------------------------------------------------- FBX


def _probe(fbx: Path, stack: int = 0, time: float = 0.0) -> dict:
    """ufbx's view of an FBX, read in a child process (ufbx 0.0.5 crashes when its objects are freed)."""
    pytest.importorskip("ufbx")
    out = subprocess.run([sys.executable, str(Path(__file__).with_name("fbx_probe.py")), str(fbx), str(stack),
                          repr(time)], capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
    return json.loads(out.stdout)


def test_fbx_keeps_bones_skin_and_animation_stacks(character, wave, walk, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    glb = write_glb(tmp_path / "animated.glb", CANONICAL, NAMES, character=character, motions=[wave, walk])
    fbx = glb_to_fbx(glb, tmp_path / "animated.fbx", motions=[wave, walk])
    frame = 20
    info = _probe(fbx, 1, frame / walk.fps)
    assert sorted(info["bones"]) == sorted(NAMES)  # `mixamorig:` kept: FBX reads it as a namespace
    assert info["meshes"] == [{"vertices": len(character.mesh.vertices), "faces": len(character.mesh.faces)}]
    assert info["skin_deformers"] == 1 and sorted(info["cluster_bones"]) == sorted(NAMES)
    np.testing.assert_allclose(info["weight_totals"], 1.0, atol=1e-6)  # every vertex weighted, summing to 1
    assert info["fps"] == 30.0
    assert [s["name"] for s in info["stacks"]] == ["wave", "walk"]
    for stack, m in zip(info["stacks"], (wave, walk), strict=True):
        assert stack["end"] - stack["begin"] == pytest.approx(m.duration, abs=1e-6)
        assert set(stack["rotation_keys"][NAMES[0]]) == {m.frame_count}
    # Joint world positions at a mid-clip frame equal forward kinematics (the FBX is in the GLB's metres).
    _, expected = world_pose(CANONICAL, walk.local_rotations[frame : frame + 1], walk.root[frame : frame + 1])
    got = np.array([info["world"][name] for name in NAMES])
    np.testing.assert_allclose(got, expected[0], atol=1e-4)


def test_armature_fbx_has_bones_and_animations(wave, walk, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    fps24 = [resample(wave, 24), resample(walk, 24)]
    info = _probe(write_armature_fbx(tmp_path / "armature.fbx", CANONICAL, NAMES, fps24))
    assert sorted(info["bones"]) == sorted(NAMES)
    assert info["meshes"] == [{"vertices": 3, "faces": 1}]  # only the zero-area stub that makes assimp write bones
    assert [(s["name"], round(s["end"], 6)) for s in info["stacks"]] == [("wave", 1.0), ("walk", 1.5)]
    assert info["fps"] == 24.0


# ----------------------------------------------------------------------------------------------- USDZ


def test_usdz_skeleton_animation_and_skinning(character, walk, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from pxr import Usd, UsdGeom, UsdSkel, UsdValidation, Vt

    path = write_usdz(tmp_path / "walk.usdz", CANONICAL, NAMES, character=character, motion=walk)
    stage = Usd.Stage.Open(str(path))
    assert stage.GetTimeCodesPerSecond() == walk.fps and stage.GetEndTimeCode() == walk.frame_count - 1
    root = UsdSkel.Root(stage.GetPrimAtPath("/Character"))
    cache = UsdSkel.Cache()
    cache.Populate(root, Usd.PrimDefaultPredicate)
    skel = UsdSkel.Skeleton(stage.GetPrimAtPath("/Character/Skeleton"))
    query = cache.GetSkelQuery(skel)
    assert query and len(query.GetJointOrder()) == BONE_COUNT
    assert list(skel.GetJointNamesAttr().Get()) == NAMES
    assert len(query.GetAnimQuery().GetJointTransformTimeSamples()) == walk.frame_count
    frame = 20
    world = np.array(query.ComputeJointSkelTransforms(Usd.TimeCode(frame)))
    _, expected = world_pose(CANONICAL, walk.local_rotations[frame : frame + 1], walk.root[frame : frame + 1])
    np.testing.assert_allclose(world[:, 3, :3], expected[0], atol=1e-5)
    (binding,) = cache.ComputeSkelBindings(root, Usd.PrimDefaultPredicate)
    (target,) = binding.GetSkinningTargets()
    assert target.GetNumInfluencesPerComponent() == 4
    points = Vt.Vec3fArray(UsdGeom.Mesh(target.GetPrim()).GetPointsAttr().Get())
    assert target.ComputeSkinnedPoints(query.ComputeSkinningTransforms(Usd.TimeCode(frame)), points, frame)
    np.testing.assert_allclose(np.array(points), skin_vertices(character, walk, frame), atol=1e-4)
    registry = UsdValidation.ValidationRegistry()
    errors = UsdValidation.ValidationContext(registry.GetOrLoadAllValidators()).Validate(stage)
    assert [e.GetMessage() for e in errors if e.GetType() == UsdValidation.ValidationErrorType.Error] == []


# ----------------------------------------------------------------------------------------------- skinning


def test_rest_motion_leaves_the_mesh_in_place(character) -> None:  # type: ignore[no-untyped-def]
    rest = Motion.rest(character.skeleton)
    np.testing.assert_allclose(skin_vertices(character, rest, 0), character.mesh.vertices, atol=1e-12)


def test_skinned_vertices_stay_attached_to_their_bones(character, wave) -> None:  # type: ignore[no-untyped-def]
    """In its dominant bone's frame a vertex does not move, except by its blend with the one neighbouring bone.

    Bound: a vertex bound to bones d (dominant) and o that share joint J (one is the other's parent) moves, in d's
    frame, by (1 - w_d) * |R v' - v'| <= (1 - w_d) * 2 sin(theta / 2) * |v - J|, with theta the angle of the child's
    local rotation and v' = v - J; rigidly bound vertices (w_d = 1) do not move at all (1e-9 m).
    """
    from inference.motion.export import normalize_weights
    from inference.motion.preview import skinning_matrices

    joints, weights = normalize_weights(character.joints, character.weights)
    rest = np.asarray(character.mesh.vertices)
    dominant, other = joints[:, 0].astype(int), joints[:, 1].astype(int)
    child = np.where(np.array(PARENTS)[other] == dominant, other, dominant)
    assert np.all((weights[:, 1] == 0) | (np.array(PARENTS)[child] == np.where(child == other, dominant, other)))
    rigid = weights[:, 0] == 1
    assert rigid.sum() > 100 and (~rigid).sum() > 100
    for frame in range(0, wave.frame_count, 3):
        mats = skinning_matrices(character, wave, np.array([frame]))[0]
        posed = skin_vertices(character, wave, frame)
        rot, trans = mats[dominant, :, :3], mats[dominant, :, 3]
        in_bone = np.einsum("vji,vj->vi", rot, posed - trans)  # back into the dominant bone's rest frame
        moved = np.linalg.norm(in_bone - rest, axis=1)
        theta = Rotation.from_quat(wave.local_rotations[frame, child]).magnitude()
        bound = (1 - weights[:, 0]) * 2 * np.sin(theta / 2) * np.linalg.norm(rest - character.skeleton.positions[child],
                                                                             axis=1)  # fmt: skip
        assert moved[rigid].max() < 1e-9
        assert np.all(moved <= bound + 1e-9)
    # And the wave does move the raised hand.
    hand = joints[:, 0] == BONES.index("RightHand")
    assert np.linalg.norm(skin_vertices(character, wave, 7)[hand] - rest[hand], axis=1).min() > 0.3


# ----------------------------------------------------------------------------------------------- previews


def test_preview_gif_and_contact_sheet(character, wave, walk, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    frames = render_frames(character, wave, 12, size=128, view="front")
    assert len(frames) == 12 and frames[0].size == (128, 128)
    first, mid = (np.asarray(frames[i], dtype=np.int16) for i in (0, 6))
    assert np.abs(first - mid).max() > 100 and (np.abs(first - mid).sum(axis=2) > 60).sum() > 50
    gif = write_gif(frames, tmp_path / "wave.gif", fps=12)
    with Image.open(gif) as img:
        assert img.n_frames == 12 and img.info["loop"] == 0
    # The walk travels 1.8 m: the camera follows, so the character stays in frame (not touching the edges).
    walking = render_frames(character, walk, 6, size=128, view="three_quarter")
    for frame in walking:
        a = np.asarray(frame, dtype=np.int16)
        body = np.abs(a - a[:, :1]).sum(axis=2) > 80  # differs from the backdrop at the row's left edge
        ys, xs = np.nonzero(body)
        assert len(xs) > 500 and xs.min() > 2 and xs.max() < 125 and ys.min() > 2
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    sheet = write_strip(frames[::2] + walking, ARTEFACTS / "motion_preview_strip.png", columns=6)
    assert Image.open(sheet).size == (6 * 128 + 5 * 2, 2 * 128 + 2)
