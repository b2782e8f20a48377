"""Characters end to end: a real worker rigs a character, animates it with library actions and with a text-to-motion
clip, and fails a teapot; every file is read back by an independent reader (pygltflib for glTF skins and animations,
ufbx in a child process for FBX, bvhio for BVH, pxr for USDZ). Frames of the walking character are kept under
`.meshfoundry-test/artefacts/` for a person to look at."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pygltflib
import pytest
import trimesh

from inference.motion.reference_character import build_character
from inference.motion.skeleton import BONES, bone_names
from tests.app.api.v1.test_image_family_flow import create, download, wait_terminal
from tests.app.api.v1.test_model_ops_flow import succeeded
from tests.conftest import Api, Caller, unthrottle
from tests.images import model_data_uri

pytestmark = [pytest.mark.asyncio, pytest.mark.slow, pytest.mark.timeout(600)]
V1 = "/openapi/v1"
PROBE = Path(__file__).resolve().parents[3] / "inference" / "fbx_probe.py"
ARTEFACTS = Path(__file__).resolve().parents[4] / ".meshfoundry-test" / "artefacts"


def character_uri() -> str:
    mesh, _ = build_character(pose="T", style="textured")
    return model_data_uri(mesh.export(file_type="glb"))


def gltf_of(content: bytes) -> pygltflib.GLTF2:
    return pygltflib.GLTF2.load_from_bytes(content)


def skin_names(gltf: pygltflib.GLTF2) -> list[str]:
    return [gltf.nodes[j].name for j in gltf.skins[0].joints]


def animation_seconds(gltf: pygltflib.GLTF2, index: int) -> float:
    sampler = gltf.animations[index].samplers[0]
    return float(gltf.accessors[sampler.input].max[0])


def probe_fbx(content: bytes, tmp_path: Path, name: str) -> dict[str, Any]:
    path = tmp_path / name
    path.write_bytes(content)
    out = subprocess.run([sys.executable, str(PROBE), str(path), "0", "0.5"], capture_output=True, text=True,
                         timeout=120, check=True)  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def keep_walking_frames(settings, rig_id: str) -> None:  # type: ignore[no-untyped-def]
    """Frames of the rigged character walking, from the rig task's own files, for a person to look at."""
    from inference.motion import library
    from inference.motion.export import Motion
    from inference.motion.preview import render_frames, write_strip
    from inference.runners.character import load_character

    character = load_character(settings.assets_path / rig_id / "character.npz")
    motion = Motion.from_clip(library.get_clip(library.WALKING_ID), character.skeleton)
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    write_strip(render_frames(character, motion, 8, size=160, view="three_quarter"), ARTEFACTS / "rigged_walk.png")


async def test_rig_animate_and_text_to_motion(api: Api, caller: Caller, db, settings, worker, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    await unthrottle(db, caller)
    rig = await succeeded(api, caller, f"{V1}/rigging", {"model_url": character_uri(), "height_meters": 1.8})
    assert rig["type"] == "rig" and rig["consumed_credits"] == 5 and rig["progress"] == 100
    result = rig["result"]
    assert set(result) >= {"rigged_character_fbx_url", "rigged_character_glb_url", "basic_animations"}
    assert set(result["basic_animations"]) == {f"{a}_{k}_url" for a in ("walking", "running")
                                               for k in ("glb", "fbx", "armature_glb")}  # fmt: skip

    # The rigged GLB: one skin of 24 joints named as Mixamo's, every vertex weighted, 1.8 m tall.
    rigged = await download(api, result["rigged_character_glb_url"])
    gltf = gltf_of(rigged)
    assert skin_names(gltf) == bone_names("mixamo") and not gltf.animations
    mesh = trimesh.load(io.BytesIO(rigged), file_type="glb", force="mesh")
    assert abs(mesh.extents[1] - 1.8) < 0.02
    # The rigged FBX (an independent reader: ufbx): 24 bones, every vertex weighted, weights summing to 1.
    fbx = probe_fbx(await download(api, result["rigged_character_fbx_url"]), tmp_path, "rigged.fbx")
    assert sorted(fbx["cluster_bones"]) == sorted(bone_names("mixamo"))
    assert fbx["skin_deformers"] == 1 and np.allclose(fbx["weight_totals"], 1.0, atol=1e-4)
    # Walking: the skinned character with one clip; its armature file has the clip and no mesh.
    walking = gltf_of(await download(api, result["basic_animations"]["walking_glb_url"]))
    assert len(walking.animations) == 1 and animation_seconds(walking, 0) > 0.5
    armature = gltf_of(await download(api, result["basic_animations"]["walking_armature_glb_url"]))
    assert not armature.meshes and len(armature.animations) == 1
    keep_walking_frames(settings, rig["id"])

    # Library actions: one clip per action in one file, 3 credits each; the 60 fps post-process.
    body = {"rig_task_id": rig["id"], "action_ids": [0, 28], "post_process": {"operation_type": "change_fps",
                                                                              "fps": 60}}  # fmt: skip
    animated = await succeeded(api, caller, f"{V1}/animations", body)
    assert animated["type"] == "animate" and animated["consumed_credits"] == 6
    clips = gltf_of(await download(api, animated["result"]["animation_glb_url"]))
    assert len(clips.animations) == 2 and skin_names(clips) == bone_names("mixamo")
    processed = probe_fbx(await download(api, animated["result"]["processed_animation_fps_fbx_url"]), tmp_path,
                          "60fps.fbx")  # fmt: skip
    assert processed["fps"] == 60 and len(processed["stacks"]) == 2

    # Text to motion (swift: BVH) and that clip applied to the rigged character.
    motion = await succeeded(api, caller, f"{V1}/text-to-motion", {"prompt": "a person walks forward and then waves",
                                                                   "duration": 4, "mode": "swift"})  # fmt: skip
    assert motion["result"]["motion_format"] == "bvh" and motion["result"]["duration_ms"] == 4000
    assert motion["consumed_credits"] == 3
    bvh_path = tmp_path / "motion.bvh"
    bvh_path.write_bytes(await download(api, motion["result"]["motion_url"]))
    import bvhio

    raw = bvhio.readAsBvh(str(bvh_path))
    assert raw.FrameCount == 121 and raw.FrameTime == pytest.approx(1 / 30, abs=1e-6)  # 4 s at 30 fps: 0..120
    joints = [j.Name for j, _, _ in bvhio.readAsHierarchy(str(bvh_path)).layout()]
    assert joints[0] == "mixamorig:Hips" and len(joints) == len(BONES)
    applied = await succeeded(api, caller, f"{V1}/animations", {"rig_task_id": rig["id"],
                                                               "motion_task_id": motion["id"]})  # fmt: skip
    assert applied["consumed_credits"] == 3
    assert abs(animation_seconds(gltf_of(await download(api, applied["result"]["animation_glb_url"])), 0) - 4) < 0.05


async def test_a_teapot_fails_pose_estimation_and_is_refunded(api: Api, caller: Caller, worker) -> None:  # type: ignore[no-untyped-def]
    teapot = trimesh.creation.capsule(height=0.6, radius=0.5)  # round, wider than a person: no humanoid pose
    task_id = await create(api, caller, f"{V1}/rigging", {"model_url": model_data_uri(teapot.export(file_type="glb"))})
    task = await wait_terminal(api, caller, f"{V1}/rigging", task_id)
    assert task["status"] == "FAILED" and task["result"] is None
    assert task["task_error"]["message"].startswith("Pose estimation failed"), task["task_error"]
    assert task["consumed_credits"] == 0
    assert (await api.client.get("/openapi/v1/balance", headers=caller.headers)).json()["balance"] == 1000


async def test_generate_motion_waits_for_the_clip(api: Api, caller: Caller, worker) -> None:  # type: ignore[no-untyped-def]
    body = {"prompt": "A person jumps", "duration_sec": 2.5, "output_format": "bvh"}
    response = await api.client.post("/generate-motion", headers=caller.headers, timeout=120, json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["status"] == "success" and answer["duration_sec"] == 2.5 and answer["model_type"] == "lite"
    assert answer["model_used"] == "motion-library"  # what really ran
    assert answer["inference_time_sec"] >= 0
    content = await download(api, answer["output_url"])
    assert content.startswith(b"HIERARCHY")
    task = (await api.client.get(f"{V1}/text-to-motion/{answer['task_id']}", headers=caller.headers)).json()
    assert task["status"] == "SUCCEEDED" and task["consumed_credits"] == 3
