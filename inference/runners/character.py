"""The character runners: `auto-rig` (rigging, and animating a rigged character) and `motion-library` (text-to-motion).

Rigging: the caller's model is read safely (`load_model`), rigged by `inference.motion.rigging` (front render, pose
landmarks from mediapipe's pose model, joints lifted into the mesh, a 24-bone skeleton fitted, bone-heat skin
weights), written as a skinned GLB (the source of truth) and an FBX converted from it by assimp, with the library's
walking and running clips applied. The character itself is kept as `character.npz` (+ its texture) for later
animation tasks. Animation: library clips (or a text-to-motion clip) retargeted onto that rig's rest pose, one glTF
animation per action in one file, and the optional post-process (fps change, armature-only FBX, USDZ).
Text-to-motion: `inference.motion.text_to_motion`, library clips chosen by meaning and blended (a reference path,
not a generative model), written as FBX (prime) or BVH (swift), plus `motion.npz` for `animate`.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import trimesh
from PIL import Image

from inference.motion.skeleton import Clip, Skeleton, bone_names
from inference.runners.base import InputRejected, ProgressCallback, RunnerArtifacts

CHARACTER_DATA = "character.npz"
CHARACTER_TEXTURE = "character_texture.png"
MOTION_DATA = "motion.npz"
RIGGED_GLB = "Character_output.glb"
RIGGED_FBX = "Character_output.fbx"


def _file_stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]+", "_", name).strip("_") or "Action"


def _apply_texture(mesh: trimesh.Trimesh, texture: Path) -> trimesh.Trimesh:
    """The caller's base-colour texture on the model's own UVs (`texture_image_url`)."""
    uv = getattr(mesh.visual, "uv", None)
    if uv is None or len(uv) != len(mesh.vertices):
        raise InputRejected("texture_image_url: the model has no UV coordinates to put the texture on")
    try:
        with Image.open(texture) as img:
            image = img.convert("RGBA")
    except Exception as exc:  # noqa: BLE001
        raise InputRejected("texture_image_url: the texture could not be read as a PNG image") from exc
    material = trimesh.visual.material.PBRMaterial(baseColorTexture=image)
    mesh.visual = trimesh.visual.TextureVisuals(uv=np.asarray(uv), material=material)
    return mesh


def save_character(path: Path, texture_path: Path, character: Any, naming: str) -> list[str]:
    """The rigged character as arrays (mesh, UVs or colours, skeleton, skin) + its texture PNG; the file names."""
    mesh = character.mesh
    visual = mesh.visual
    uv = np.asarray(getattr(visual, "uv", None) if getattr(visual, "uv", None) is not None else np.zeros((0, 2)))
    colours = np.zeros((0, 4), np.uint8)
    image = None
    if isinstance(visual, trimesh.visual.TextureVisuals):
        material = visual.material
        image = getattr(material, "baseColorTexture", None) or getattr(material, "image", None)
    elif getattr(visual, "kind", None) in ("vertex", "face"):
        colours = np.asarray(visual.vertex_colors, np.uint8)
    np.savez_compressed(
        path, vertices=np.asarray(mesh.vertices, np.float32), faces=np.asarray(mesh.faces, np.int32), uv=uv,
        colours=colours, skeleton=character.skeleton.positions, joints=character.joints, weights=character.weights,
        naming=np.array(naming),
    )  # fmt: skip
    names = [path.name]
    if image is not None:
        image.convert("RGBA").save(texture_path)
        names.append(texture_path.name)
    return names


def load_character(path: Path) -> Any:
    """The `SkinnedCharacter` a rig task saved (its texture beside it)."""
    from inference.motion.export import SkinnedCharacter

    with np.load(path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    mesh = trimesh.Trimesh(arrays["vertices"], arrays["faces"], process=False)
    texture = path.with_name(CHARACTER_TEXTURE)
    if len(arrays["uv"]) == len(mesh.vertices) and texture.is_file():
        with Image.open(texture) as img:
            material = trimesh.visual.material.PBRMaterial(baseColorTexture=img.convert("RGBA"))
        mesh.visual = trimesh.visual.TextureVisuals(uv=arrays["uv"], material=material)
    elif len(arrays["colours"]) == len(mesh.vertices):
        mesh.visual = trimesh.visual.ColorVisuals(mesh, vertex_colors=arrays["colours"])
    naming = str(arrays["naming"])
    return SkinnedCharacter(
        mesh=mesh, skeleton=Skeleton(arrays["skeleton"]), joints=arrays["joints"], weights=arrays["weights"],
        names=bone_names(naming),
    )  # fmt: skip


def save_motion(path: Path, clip: Clip) -> None:
    np.savez_compressed(path, rotations=clip.rotations, root=clip.root, fps=np.array(clip.fps),
                        name=np.array(clip.name), loop=np.array(clip.loop))  # fmt: skip


def load_motion(path: Path) -> Clip:
    with np.load(path, allow_pickle=False) as data:
        return Clip(name=str(data["name"]), fps=float(data["fps"]), rotations=data["rotations"], root=data["root"],
                    loop=bool(data["loop"]))  # fmt: skip


def _motion_for(clip: Clip, rig: Skeleton) -> Any:
    from inference.motion.export import Motion

    return Motion.from_clip(clip, rig)


def _joined(motions: list[Any]) -> Any:
    """Several motions one after another on one timeline (USD has one): the first's fps, its name."""
    from inference.motion.export import Motion, resample

    if len(motions) == 1:
        return motions[0]
    fps = motions[0].fps
    parts = [m if abs(m.fps - fps) < 1e-9 else resample(m, fps) for m in motions]
    return Motion(name="_".join(m.name for m in parts), fps=fps,
                  local_rotations=np.concatenate([m.local_rotations for m in parts]),
                  root=np.concatenate([m.root for m in parts]))  # fmt: skip


def write_animated(out_dir: Path, stem: str, character: Any, motions: list[Any]) -> dict[str, str]:
    """`<stem>_withSkin.glb/.fbx` and the armature-only GLB: the file names by role."""
    from inference.motion.export import glb_to_fbx, write_glb

    glb, fbx, armature = f"{stem}_withSkin.glb", f"{stem}_withSkin.fbx", f"{stem}_withSkin_armature.glb"
    write_glb(out_dir / glb, character.skeleton, character.names, character=character, motions=motions)
    glb_to_fbx(out_dir / glb, out_dir / fbx, motions=motions)
    write_glb(out_dir / armature, character.skeleton, character.names, character=None, motions=motions)
    return {"glb": glb, "fbx": fbx, "armature_glb": armature}


class AutoRigRunner:
    """`rig` and `animate` tasks (params["operation"] is not needed: the inputs tell them apart)."""

    name = "auto-rig"

    def __init__(self, models_dir: Path | None = None) -> None:
        self.models_dir = models_dir

    def run(
        self, inputs: Mapping[str, Any], params: Mapping[str, Any], out_dir: Path, progress: ProgressCallback
    ) -> RunnerArtifacts:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        if "character" in inputs:
            return self._animate(inputs, params, out_dir, progress)
        return self._rig(inputs, params, out_dir, progress)

    def _rig(
        self, inputs: Mapping[str, Any], params: Mapping[str, Any], out_dir: Path, progress: ProgressCallback
    ) -> RunnerArtifacts:
        from inference.motion import library
        from inference.motion.export import SkinnedCharacter, glb_to_fbx, write_glb
        from inference.motion.rigging import rig_character
        from inference.pipeline.model_input import load_model

        progress(0.0)
        model = load_model(Path(inputs["model"]), inputs["source_format"], max_faces=300_000)
        mesh = model.mesh
        if inputs.get("texture"):
            mesh = _apply_texture(mesh, Path(inputs["texture"]))
        progress(0.05)
        rigged = rig_character(
            mesh, height_meters=float(params.get("height_meters", 1.7)), progress=lambda f: progress(0.05 + 0.6 * f),
            models_dir=self.models_dir,
        )  # fmt: skip
        naming = str(params.get("bone_naming", "mixamo"))
        character = SkinnedCharacter(mesh=rigged.mesh, skeleton=rigged.skeleton, joints=rigged.joints,
                                     weights=rigged.weights, names=bone_names(naming))  # fmt: skip
        write_glb(out_dir / RIGGED_GLB, character.skeleton, character.names, character=character, motions=[])
        glb_to_fbx(out_dir / RIGGED_GLB, out_dir / RIGGED_FBX)
        progress(0.75)
        files = [RIGGED_GLB, RIGGED_FBX]
        basic: dict[str, str] = {}
        for label, action_id in (("walking", library.WALKING_ID), ("running", library.RUNNING_ID)):
            motion = _motion_for(library.get_clip(action_id), character.skeleton)
            written = write_animated(out_dir, f"Animation_{label.title()}", character, [motion])
            basic |= {f"{label}_{role}_url": name for role, name in written.items()}
            files += list(written.values())
        progress(0.95)
        files += save_character(out_dir / CHARACTER_DATA, out_dir / CHARACTER_TEXTURE, character, naming)
        result = {"rigged_character_fbx_url": RIGGED_FBX, "rigged_character_glb_url": RIGGED_GLB,
                  "basic_animations": basic}  # fmt: skip
        progress(1.0)
        return RunnerArtifacts(metadata={"result": result, "files": files, "stats": rigged.stats,
                                         "notes": list(model.notes)})  # fmt: skip

    def _animate(
        self, inputs: Mapping[str, Any], params: Mapping[str, Any], out_dir: Path, progress: ProgressCallback
    ) -> RunnerArtifacts:
        from inference.motion import library

        progress(0.0)
        character = load_character(Path(inputs["character"]))
        if inputs.get("motion"):
            clips = [load_motion(Path(inputs["motion"]))]
        else:
            ids = params.get("action_ids") or [params["action_id"]]
            clips = [library.get_clip(int(i)) for i in ids]
        progress(0.2)
        motions = [_motion_for(clip, character.skeleton) for clip in clips]
        stem = "Animation_" + ("_".join(_file_stem(c.name) for c in clips[:3]) if len(clips) <= 3 else "Actions")
        written = write_animated(out_dir, stem, character, motions)
        progress(0.7)
        result: dict[str, Any] = {
            "animation_glb_url": written["glb"],
            "animation_fbx_url": written["fbx"],
            "animation_armature_glb_url": written["armature_glb"],
        }  # the last: beyond Meshy
        files = list(written.values())
        post = params.get("post_process")
        if post:
            key, name = self._post_process(post, character, motions, out_dir)
            result[key] = name
            files.append(name)
        progress(1.0)
        return RunnerArtifacts(metadata={"result": result, "files": files})

    @staticmethod
    def _post_process(post: Mapping[str, Any], character: Any, motions: list[Any], out_dir: Path) -> tuple[str, str]:
        from inference.motion.export import glb_to_fbx, resample, write_armature_fbx, write_glb, write_usdz

        operation = post["operation_type"]
        if operation == "change_fps":
            fps = int(post.get("fps", 30))
            resampled = [resample(m, fps) for m in motions]
            glb, name = out_dir / f"processed_{fps}fps.glb", f"processed_{fps}fps.fbx"
            write_glb(glb, character.skeleton, character.names, character=character, motions=resampled)
            glb_to_fbx(glb, out_dir / name, motions=resampled)
            glb.unlink()
            return "processed_animation_fps_fbx_url", name
        if operation == "extract_armature":
            name = "processed_armature.fbx"
            write_armature_fbx(out_dir / name, character.skeleton, character.names, motions)
            return "processed_armature_fbx_url", name
        name = "processed.usdz"
        write_usdz(out_dir / name, character.skeleton, character.names, character=character, motion=_joined(motions))
        return "processed_usdz_url", name


class MotionLibraryRunner:
    """`text-to-motion` on the CPU: clips of the library chosen by meaning and blended (a reference path)."""

    name = "motion-library"

    def run(
        self, inputs: Mapping[str, Any], params: Mapping[str, Any], out_dir: Path, progress: ProgressCallback
    ) -> RunnerArtifacts:
        from inference.motion.text_to_motion import compose_motion

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        progress(0.0)
        duration = float(params["duration"])
        clip = compose_motion(str(params["prompt"]), duration, seed=int(params.get("seed", 0)))
        progress(0.6)
        written = motion_outputs(out_dir, clip, params)
        progress(1.0)
        return RunnerArtifacts(metadata={**written, "clip_meta": clip.meta})


def motion_outputs(out_dir: Path, clip: Clip, params: Mapping[str, Any]) -> dict[str, Any]:
    """A text-to-motion task's files (any model's): the clip as FBX (prime) or BVH (swift) and `motion.npz` for a later
    `animate`; the task's `result` and the files to publish."""
    mode = str(params.get("mode", "prime"))
    name = write_motion_file(out_dir, clip, "fbx" if mode == "prime" else "bvh")
    save_motion(out_dir / MOTION_DATA, clip)
    result = {"motion_url": name, "motion_format": name.rsplit(".", 1)[1],
              "duration_ms": round(float(params["duration"]) * 1000), "mode": mode}  # fmt: skip
    return {"result": result, "files": [name, MOTION_DATA]}


def write_motion_file(out_dir: Path, clip: Clip, fmt: str) -> str:
    """The clip on the canonical skeleton as `motion.bvh` or `motion.fbx` (an armature FBX, via the armature GLB)."""
    from inference.motion.skeleton import CANONICAL

    names = bone_names("mixamo")
    if fmt == "bvh":
        from inference.motion.bvh import write_bvh

        buffer = io.StringIO()
        write_bvh(buffer, CANONICAL, clip.rotations, clip.root, clip.fps, names)
        (out_dir / "motion.bvh").write_text(buffer.getvalue())
        return "motion.bvh"
    from inference.motion.export import Motion, write_armature_fbx

    motion = Motion(name=clip.name, fps=clip.fps, local_rotations=clip.rotations, root=clip.root)
    write_armature_fbx(out_dir / "motion.fbx", CANONICAL, names, [motion])
    return "motion.fbx"
