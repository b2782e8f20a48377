"""Skinned and animated exports: GLB (pygltflib), FBX (the assimp CLI), USDZ (UsdSkel via usd-core).

The GLB is the source of truth; FBX is converted from it by assimp and USDZ is written directly. Every writer uses
the shared skeleton's conventions (`inference.motion.skeleton`): 24 joints whose rest frames are world-aligned, so a
joint's rest local transform is a pure translation (its offset from the parent) and its inverse bind matrix is the
translation by minus its rest world position. A `Motion` holds local rotations (x, y, z, w) and the hips' position
per frame, already retargeted to the rig (`Motion.from_clip`).

GLB layout: a root node `Armature` holding the joint hierarchy (joint nodes carry the exported names,
`mixamorig:Hips`...), and, with a character, a skinned mesh node `Body` at the scene root (glTF ignores a skinned
node's own transform, so it has none). Each `Motion` becomes one glTF animation: one LINEAR rotation channel per
joint plus a translation channel on the hips, keyed at i / fps. `character=None` writes the armature-only GLB
(joints and animations, no skin or mesh). Khronos validator (2.0.0-dev.3.10): 0 errors and 0 warnings for rigged,
animated (texture, vertex or face colours, or plain) and armature GLBs; infos only: NODE_EMPTY for the five leaf
joints of the armature GLB, IMAGE_NPOT_DIMENSIONS for a texture whose sides are not powers of two.

FBX: `assimp export in.glb out.fbx` keeps the skin (one cluster per joint) and writes one animation stack per glTF
animation. FBX treats `prefix:name` as a namespace and assimp writes the names unchanged, so ufbx reads back
`mixamorig:Hips`. assimp writes 24 fps and no stack spans whatever the clip; `set_fbx_timing` patches them in place.
Without a mesh, assimp has no bones to mark as limb nodes; `write_armature_fbx` therefore keeps a degenerate
one-triangle mesh skinned to the hips (see its docstring).
"""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pygltflib as gl
import trimesh
from PIL import Image

from inference.motion.skeleton import BONE_COUNT, BONES, PARENTS, Clip, Skeleton, rest_rotations, retarget
from inference.pipeline.export_fbx import run_assimp
from inference.pipeline.surface import CLAY_RGBA, METALLIC, ROUGHNESS

ARMATURE_NAME = "Armature"
MESH_NAME = "Body"


@dataclass
class SkinnedCharacter:
    """A mesh in rig space bound to `skeleton`: up to four (joint, weight) pairs per vertex."""

    mesh: trimesh.Trimesh
    skeleton: Skeleton
    joints: np.ndarray  # (V, 4) uint16, indices into the 24 bones
    weights: np.ndarray  # (V, 4) float32, rows sum to 1
    names: list[str]  # the 24 exported bone names


@dataclass
class Motion:
    """One animation on a rig: local rotations (frames, 24, 4) x y z w and the hips' position (frames, 3)."""

    name: str
    fps: float
    local_rotations: np.ndarray
    root: np.ndarray
    meta: dict = field(default_factory=dict)

    @property
    def frame_count(self) -> int:
        return int(self.local_rotations.shape[0])

    @property
    def duration(self) -> float:
        return (self.frame_count - 1) / self.fps

    def times(self) -> np.ndarray:
        return np.arange(self.frame_count, dtype=np.float64) / self.fps

    @classmethod
    def from_clip(cls, clip: Clip, rig: Skeleton, name: str | None = None) -> Motion:
        rotations, root = retarget(clip, rig)
        return cls(name or clip.name, clip.fps, rotations, root)

    @classmethod
    def rest(cls, skeleton: Skeleton, frames: int = 2, fps: float = 30.0, name: str = "rest") -> Motion:
        root = np.tile(skeleton.positions[0], (frames, 1))
        return cls(name, fps, rest_rotations(frames), root)


# ------------------------------------------------------------------------------------------------ quaternions


def continuous(quats: np.ndarray) -> np.ndarray:
    """Flip quaternions along axis 0 into one hemisphere, so LINEAR interpolation takes the short way."""
    q = np.array(quats, dtype=np.float64)
    if len(q) < 2:
        return q
    signs = np.where(np.einsum("f...c,f...c->f...", q[1:], q[:-1]) < 0, -1.0, 1.0)
    flips = np.concatenate([np.ones_like(signs[:1]), np.cumprod(signs, axis=0)])
    return q * flips[..., None]


def _slerp(q0: np.ndarray, q1: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Spherical interpolation of unit quaternions (..., 4) by t (..., 1), short way."""
    dot = np.sum(q0 * q1, axis=-1, keepdims=True)
    q1 = np.where(dot < 0, -q1, q1)
    dot = np.abs(dot)
    theta = np.arccos(np.clip(dot, -1.0, 1.0))
    sin = np.sin(theta)
    small = sin < 1e-6
    safe = np.where(small, 1.0, sin)
    a = np.where(small, 1.0 - t, np.sin((1.0 - t) * theta) / safe)
    b = np.where(small, t, np.sin(t * theta) / safe)
    out = a * q0 + b * q1
    return out / np.linalg.norm(out, axis=-1, keepdims=True)


def resample(motion: Motion, fps: float) -> Motion:
    """The motion at `fps` (post_process change_fps): slerped rotations, lerped root.

    The duration is kept exactly and the frame count is round(duration * fps) + 1, so frames are spaced
    duration / (count - 1) apart: exactly 1 / fps whenever duration * fps is a whole number (a 1 s clip at 24, 25,
    30 or 60), otherwise the returned `fps` is that spacing's rate (e.g. 23.68 for a 38-frame 30 fps clip at 24).
    """
    duration = motion.duration
    count = max(int(round(duration * fps)) + 1, 2 if duration > 0 else 1)
    new_fps = (count - 1) / duration if duration > 0 else float(fps)
    if count - 1 == round(duration * fps) and abs(new_fps - fps) < 1e-9 * fps:
        new_fps = float(fps)
    position = np.arange(count) * (motion.frame_count - 1) / max(count - 1, 1)  # in source frames
    i0 = np.clip(np.floor(position).astype(np.int64), 0, motion.frame_count - 1)
    i1 = np.minimum(i0 + 1, motion.frame_count - 1)
    t = (position - i0)[:, None]
    q = np.asarray(motion.local_rotations, dtype=np.float64)
    rotations = _slerp(q[i0], q[i1], t[:, :, None] * np.ones((1, q.shape[1], 1)))
    root = np.asarray(motion.root, dtype=np.float64)
    root = root[i0] * (1 - t) + root[i1] * t
    return Motion(motion.name, new_fps, rotations, root, dict(motion.meta))


# ------------------------------------------------------------------------------------------------ mesh data


@dataclass
class SkinData:
    """The per-vertex arrays every writer and the preview renderer share (after unwelding face colours)."""

    positions: np.ndarray  # (V, 3) float32
    normals: np.ndarray  # (V, 3) float32
    faces: np.ndarray  # (F, 3) uint32
    joints: np.ndarray  # (V, 4) uint16
    weights: np.ndarray  # (V, 4) float32, rows sum to 1, unused slots joint 0 weight 0
    uv: np.ndarray | None = None  # (V, 2) trimesh convention (v = 0 at the image bottom)
    texture: Image.Image | None = None  # base colour
    colors: np.ndarray | None = None  # (V, 4) uint8 RGBA


def normalize_weights(joints: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Clamp, sort by weight and renormalise (float32 rows summing to 1); empty slots get joint 0."""
    w = np.clip(np.asarray(weights, dtype=np.float64), 0.0, None)
    j = np.asarray(joints, dtype=np.int64)
    if j.shape != w.shape or j.ndim != 2 or j.shape[1] != 4:
        raise ValueError(f"joints and weights must both be (V, 4), got {j.shape} and {w.shape}")
    if j.size and (j.min() < 0 or j.max() >= BONE_COUNT):
        raise ValueError("joint index out of range")
    total = w.sum(axis=1)
    if np.any(total <= 0):
        raise ValueError(f"{int(np.sum(total <= 0))} vertices have no weight")
    order = np.argsort(-w, axis=1, kind="stable")
    w = np.take_along_axis(w, order, axis=1) / total[:, None]
    j = np.take_along_axis(j, order, axis=1)
    j[w == 0] = 0
    w32 = w.astype(np.float32)
    w32[:, 0] = np.float32(1.0) - w32[:, 1:].sum(axis=1, dtype=np.float32)  # exact float32 sums
    return j.astype(np.uint16), w32


def skin_data(character: SkinnedCharacter) -> SkinData:
    mesh = character.mesh
    faces = np.asarray(mesh.faces, dtype=np.int64)
    positions = np.asarray(mesh.vertices, dtype=np.float64)
    joints, weights = normalize_weights(character.joints, character.weights)
    if len(joints) != len(positions):
        raise ValueError(f"{len(joints)} joint rows for {len(positions)} vertices")
    visual = mesh.visual
    uv = texture = colors = None
    normals = np.asarray(mesh.vertex_normals, dtype=np.float64)
    if isinstance(visual, trimesh.visual.TextureVisuals):
        material = visual.material
        image = getattr(material, "baseColorTexture", None) or getattr(material, "image", None)
        if visual.uv is not None and image is not None:
            uv, texture = np.asarray(visual.uv, dtype=np.float64)[:, :2], image
    elif isinstance(visual, trimesh.visual.ColorVisuals) and visual.defined:
        if visual.kind == "face":  # unweld so every face keeps its own colour
            corner = faces.ravel()
            colors = np.repeat(np.asarray(visual.face_colors, dtype=np.uint8), 3, axis=0)
            positions, normals = positions[corner], np.repeat(np.asarray(mesh.face_normals), 3, axis=0)
            joints, weights = joints[corner], weights[corner]
            faces = np.arange(len(corner)).reshape(-1, 3)
        else:
            colors = np.asarray(visual.vertex_colors, dtype=np.uint8)
    return SkinData(
        positions=positions.astype(np.float32),
        normals=normals.astype(np.float32),
        faces=faces.astype(np.uint32),
        joints=joints,
        weights=weights,
        uv=uv,
        texture=texture,
        colors=colors,
    )


def _png(image: Image.Image) -> bytes:
    if image.mode not in ("RGB", "RGBA"):
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    if image.mode == "RGBA" and image.getextrema()[3][0] == 255:
        image = image.convert("RGB")  # opaque: drop the alpha channel
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False)
    return out.getvalue()


# ------------------------------------------------------------------------------------------------ GLB


class _Blob:
    """The GLB binary chunk with its buffer views and accessors."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.views: list[gl.BufferView] = []
        self.accessors: list[gl.Accessor] = []

    def view(self, raw: bytes, target: int | None = None) -> int:
        while len(self.data) % 4:
            self.data.append(0)
        self.views.append(gl.BufferView(buffer=0, byteOffset=len(self.data), byteLength=len(raw), target=target))
        self.data.extend(raw)
        return len(self.views) - 1

    def accessor(self, array: np.ndarray, kind: str, component: int, target: int | None = None, *,
                 minmax: bool = False, normalized: bool | None = None) -> int:  # fmt: skip
        array = np.ascontiguousarray(array)
        view = self.view(array.tobytes(), target)
        acc = gl.Accessor(bufferView=view, componentType=component, count=len(array), type=kind, normalized=normalized)
        if minmax:
            flat = array.reshape(len(array), -1)
            acc.min = [float(x) for x in flat.min(axis=0)] if component == gl.FLOAT else flat.min(axis=0).tolist()
            acc.max = [float(x) for x in flat.max(axis=0)] if component == gl.FLOAT else flat.max(axis=0).tolist()
        self.accessors.append(acc)
        return len(self.accessors) - 1


def _joint_nodes(skeleton: Skeleton, names: Sequence[str]) -> list[gl.Node]:
    if len(names) != BONE_COUNT:
        raise ValueError(f"need {BONE_COUNT} bone names, got {len(names)}")
    offsets = skeleton.offsets()
    nodes = [gl.Node(name=str(names[b]), translation=[float(x) for x in offsets[b]]) for b in range(BONE_COUNT)]
    for b in range(BONE_COUNT):
        children = [c for c in range(BONE_COUNT) if PARENTS[c] == b]
        if children:
            nodes[b].children = children
    return nodes


def _check_motion(motion: Motion) -> None:
    f = motion.frame_count
    if motion.local_rotations.shape != (f, BONE_COUNT, 4) or np.shape(motion.root) != (f, 3) or f < 1:
        raise ValueError(f"motion {motion.name!r}: rotations {motion.local_rotations.shape}, root {motion.root.shape}")
    if not motion.fps > 0:
        raise ValueError(f"motion {motion.name!r}: fps must be positive")


def _animation(blob: _Blob, motion: Motion) -> gl.Animation:
    _check_motion(motion)
    t_acc = blob.accessor(motion.times().astype(np.float32), gl.SCALAR, gl.FLOAT, minmax=True)
    root = blob.accessor(np.asarray(motion.root, np.float32), gl.VEC3, gl.FLOAT)
    samplers = [gl.AnimationSampler(input=t_acc, output=root, interpolation="LINEAR")]
    channels = [gl.AnimationChannel(sampler=0, target=gl.AnimationChannelTarget(node=0, path="translation"))]
    q = continuous(motion.local_rotations)
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    for b in range(BONE_COUNT):
        out = blob.accessor(q[:, b].astype(np.float32), gl.VEC4, gl.FLOAT)
        samplers.append(gl.AnimationSampler(input=t_acc, output=out, interpolation="LINEAR"))
        channels.append(gl.AnimationChannel(sampler=len(samplers) - 1,
                                            target=gl.AnimationChannelTarget(node=b, path="rotation")))  # fmt: skip
    return gl.Animation(name=motion.name, samplers=samplers, channels=channels)


def _material(gltf: gl.GLTF2, blob: _Blob, data: SkinData, character: SkinnedCharacter) -> int:
    material = getattr(character.mesh.visual, "material", None)
    metallic = getattr(material, "metallicFactor", None)
    roughness = getattr(material, "roughnessFactor", None)
    pbr = gl.PbrMetallicRoughness(
        metallicFactor=float(METALLIC if metallic is None else metallic),
        roughnessFactor=float(ROUGHNESS if roughness is None else roughness),
    )
    if data.texture is not None:
        view = blob.view(_png(data.texture))
        gltf.images.append(gl.Image(bufferView=view, mimeType="image/png"))
        gltf.samplers.append(gl.Sampler(magFilter=gl.LINEAR, minFilter=gl.LINEAR_MIPMAP_LINEAR, wrapS=gl.REPEAT,
                                        wrapT=gl.REPEAT))  # fmt: skip
        gltf.textures.append(gl.Texture(source=0, sampler=0))
        pbr.baseColorTexture = gl.TextureInfo(index=0)
    elif data.colors is None:
        pbr.baseColorFactor = [c / 255 for c in CLAY_RGBA]
    gltf.materials.append(gl.Material(name="material_0", pbrMetallicRoughness=pbr, doubleSided=False))
    return 0


def build_gltf(
    skeleton: Skeleton, names: Sequence[str], *, character: SkinnedCharacter | None, motions: Sequence[Motion] = ()
) -> gl.GLTF2:
    """The glTF document (binary blob attached) `write_glb` saves."""
    blob = _Blob()
    nodes = _joint_nodes(skeleton, names)
    armature = len(nodes)
    nodes.append(gl.Node(name=ARMATURE_NAME, children=[0]))
    gltf = gl.GLTF2(asset=gl.Asset(version="2.0", generator="MeshFoundry"), scene=0, nodes=nodes)
    roots = [armature]
    if character is not None:
        data = skin_data(character)
        attrs = gl.Attributes(
            POSITION=blob.accessor(data.positions, gl.VEC3, gl.FLOAT, gl.ARRAY_BUFFER, minmax=True),
            NORMAL=blob.accessor(data.normals, gl.VEC3, gl.FLOAT, gl.ARRAY_BUFFER),
        )
        if data.uv is not None:
            st = np.stack([data.uv[:, 0], 1.0 - data.uv[:, 1]], axis=1).astype(np.float32)  # glTF: v = 0 at the top
            attrs.TEXCOORD_0 = blob.accessor(st, gl.VEC2, gl.FLOAT, gl.ARRAY_BUFFER)
        if data.colors is not None:  # normalized unsigned bytes, as trimesh keeps them
            attrs.COLOR_0 = blob.accessor(data.colors[:, :4], gl.VEC4, gl.UNSIGNED_BYTE, gl.ARRAY_BUFFER,
                                          normalized=True)  # fmt: skip
        attrs.JOINTS_0 = blob.accessor(data.joints, gl.VEC4, gl.UNSIGNED_SHORT, gl.ARRAY_BUFFER)
        attrs.WEIGHTS_0 = blob.accessor(data.weights, gl.VEC4, gl.FLOAT, gl.ARRAY_BUFFER)
        wide = len(data.positions) > 65535
        indices = blob.accessor(data.faces.ravel().astype(np.uint32 if wide else np.uint16), gl.SCALAR,
                                gl.UNSIGNED_INT if wide else gl.UNSIGNED_SHORT, gl.ELEMENT_ARRAY_BUFFER)  # fmt: skip
        material = _material(gltf, blob, data, character)
        gltf.meshes.append(gl.Mesh(name=MESH_NAME, primitives=[gl.Primitive(attributes=attrs, indices=indices,
                                                                            material=material)]))  # fmt: skip
        ibm = np.tile(np.eye(4, dtype=np.float32), (BONE_COUNT, 1, 1))
        ibm[:, :3, 3] = -skeleton.positions
        # glTF matrices are column-major: write each transposed.
        ibm_acc = blob.accessor(ibm.transpose(0, 2, 1).reshape(BONE_COUNT, 16), gl.MAT4, gl.FLOAT)
        gltf.skins.append(gl.Skin(name=ARMATURE_NAME, joints=list(range(BONE_COUNT)), inverseBindMatrices=ibm_acc,
                                  skeleton=0))  # fmt: skip
        nodes.append(gl.Node(name=MESH_NAME, mesh=0, skin=0))
        roots.append(len(nodes) - 1)
    gltf.animations = [_animation(blob, m) for m in motions]
    gltf.scenes = [gl.Scene(name="Scene", nodes=roots)]
    gltf.accessors, gltf.bufferViews = blob.accessors, blob.views
    while len(blob.data) % 4:
        blob.data.append(0)
    gltf.buffers = [gl.Buffer(byteLength=len(blob.data))]
    gltf.set_binary_blob(bytes(blob.data))
    return gltf


def write_glb(
    path: Path,
    skeleton: Skeleton,
    names: Sequence[str],
    *,
    character: SkinnedCharacter | None,
    motions: Sequence[Motion] = (),
) -> Path:
    """Write a GLB: the rigged character (no motions), the animated character, or (character=None) the armature."""
    path = Path(path)
    build_gltf(skeleton, names, character=character, motions=motions).save_binary(str(path))
    return path


# ------------------------------------------------------------------------------------------------ FBX


FBX_TICKS_PER_SECOND = 46_186_158_000
# FBX's TimeMode enum for the standard rates; anything else is eCustom (14) with CustomFrameRate.
_FBX_TIME_MODES = {120.0: 1, 100.0: 2, 60.0: 3, 50.0: 4, 48.0: 5, 30.0: 6, 25.0: 10, 24.0: 11}


def _p70_value(data: bytearray, name: str, start: int = 0) -> tuple[int, str]:
    """Offset and type code of the value of binary FBX property `P: "name", type, label, flags, value`."""
    key = b"S" + struct.pack("<I", len(name)) + name.encode()
    at = data.find(key, start)
    if at < 0:
        raise KeyError(name)
    at += len(key)
    for _ in range(3):  # type, label and flags strings
        if data[at : at + 1] != b"S":
            raise ValueError(f"unexpected FBX property layout for {name}")
        at += 5 + struct.unpack_from("<I", data, at + 1)[0]
    return at + 1, chr(data[at])


def set_fbx_timing(data: bytes, fps: float, durations: dict[str, float]) -> bytes:
    """Give an assimp FBX its animation's frame rate and time spans.

    assimp 6 always writes TimeMode 24 fps, a 1 s TimeSpan and zero LocalStop/ReferenceStop on every animation
    stack; the keys themselves are at the right times. The fields have fixed sizes in binary FBX, so they are
    patched in place: TimeMode (and CustomFrameRate for other rates), TimeSpanStop, and each named stack's stops.
    """
    out = bytearray(data)
    mode = _FBX_TIME_MODES.get(round(float(fps), 6), 14)
    at, kind = _p70_value(out, "TimeMode")
    if kind != "I":
        raise ValueError("unexpected FBX TimeMode type")
    struct.pack_into("<i", out, at, mode)
    at, kind = _p70_value(out, "CustomFrameRate")
    if kind == "D":
        struct.pack_into("<d", out, at, float(fps) if mode == 14 else -1.0)
    if durations:
        at, kind = _p70_value(out, "TimeSpanStop")
        if kind == "L":
            struct.pack_into("<q", out, at, round(max(durations.values()) * FBX_TICKS_PER_SECOND))
    for name, duration in durations.items():
        stack = out.find(name.encode() + b"\x00\x01AnimStack")
        if stack < 0:
            continue
        for prop in ("LocalStop", "ReferenceStop"):
            at, kind = _p70_value(out, prop, stack)
            if kind == "L":
                struct.pack_into("<q", out, at, round(duration * FBX_TICKS_PER_SECOND))
    return bytes(out)


def glb_to_fbx(glb: Path, fbx: Path, *, motions: Sequence[Motion] = (), timeout: float = 120.0) -> Path:
    """Convert a GLB written by `write_glb` to binary FBX 7.5 with the assimp CLI (skin and animation stacks kept).

    Pass the GLB's `motions` to record their frame rate (the first motion's, FBX has one per file) and durations.
    """
    glb, fbx = Path(glb), Path(fbx)
    with tempfile.TemporaryDirectory(prefix=".fbx-", dir=fbx.parent) as scratch:
        out = Path(scratch) / "model.fbx"
        try:
            result = run_assimp("export", str(glb), str(out), "-ffbx", "--embed-textures", timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"assimp FBX export timed out after {exc.timeout:.0f} s") from exc
        if result.returncode != 0 or not out.is_file() or out.stat().st_size == 0:
            tail = (result.stderr or result.stdout or "").strip()[-400:]
            raise RuntimeError(f"assimp FBX export failed (exit {result.returncode}): {tail}")
        if motions:
            durations = {m.name: m.duration for m in motions}
            out.write_bytes(set_fbx_timing(out.read_bytes(), motions[0].fps, durations))
        shutil.move(str(out), fbx)
    return fbx


def write_fbx(
    path: Path, skeleton: Skeleton, names: Sequence[str], *, character: SkinnedCharacter, motions: Sequence[Motion] = ()
) -> Path:
    """The rigged (or animated) character as FBX: `write_glb` then `glb_to_fbx`."""
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix=".glb-", dir=path.parent) as scratch:
        glb = write_glb(Path(scratch) / "model.glb", skeleton, names, character=character, motions=motions)
        return glb_to_fbx(glb, path, motions=motions)


def armature_stub(skeleton: Skeleton, names: Sequence[str]) -> SkinnedCharacter:
    """A degenerate (zero-area) triangle at the hips skinned to them: it makes assimp write the joints as FBX limb
    nodes (bones) with a skin cluster; an FBX of bare nodes imports as empties rather than as an armature."""
    p = skeleton.positions[0]
    mesh = trimesh.Trimesh(vertices=np.tile(p, (3, 1)), faces=[[0, 1, 2]], process=False)
    joints = np.zeros((3, 4), np.uint16)
    weights = np.zeros((3, 4), np.float32)
    weights[:, 0] = 1.0
    return SkinnedCharacter(mesh, skeleton, joints, weights, list(names))


def write_armature_fbx(path: Path, skeleton: Skeleton, names: Sequence[str], motions: Sequence[Motion]) -> Path:
    """extract_armature: the skeleton and its animations, without the character's mesh, as FBX."""
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix=".glb-", dir=path.parent) as scratch:
        glb = write_glb(Path(scratch) / "armature.glb", skeleton, names,
                        character=armature_stub(skeleton, names), motions=motions)  # fmt: skip
        return glb_to_fbx(glb, path, motions=motions)


# ------------------------------------------------------------------------------------------------ USDZ


def joint_paths() -> list[str]:
    """UsdSkel joint paths ("Hips", "Hips/Spine", ...): the canonical bone names (a `:` is not allowed in a path;
    the exported names go in the Skeleton's `jointNames`)."""
    paths: list[str] = []
    for b, name in enumerate(BONES):
        paths.append(name if PARENTS[b] < 0 else f"{paths[PARENTS[b]]}/{name}")
    return paths


def write_usdz(
    path: Path,
    skeleton: Skeleton,
    names: Sequence[str],
    *,
    character: SkinnedCharacter | None,
    motion: Motion | None = None,
) -> Path:
    """A USDZ with UsdSkel: SkelRoot `/Character`, Skeleton (rest and bind transforms), an optional SkelAnimation
    (time samples at the motion's fps) and the skinned mesh (skel:jointIndices / skel:jointWeights primvars)."""
    path = Path(path)
    from pxr import Sdf, UsdUtils  # imported lazily: usd-core is heavy

    with tempfile.TemporaryDirectory(prefix=".usdz-", dir=path.parent) as scratch:
        work = Path(scratch)
        layer = work / "model.usdc"
        _write_usd_stage(layer, skeleton, names, character=character, motion=motion)
        ok = UsdUtils.CreateNewARKitUsdzPackage(Sdf.AssetPath(str(layer)), str(path))
        if not ok or not path.is_file():
            raise RuntimeError(f"USDZ packaging failed for {path.name}")
    return path


def _write_usd_stage(
    layer: Path, skeleton: Skeleton, names: Sequence[str], *, character: SkinnedCharacter | None, motion: Motion | None
) -> None:
    from pxr import Gf, Sdf, Usd, UsdGeom, UsdShade, UsdSkel, Vt

    if len(names) != BONE_COUNT:
        raise ValueError(f"need {BONE_COUNT} bone names, got {len(names)}")
    stage = Usd.Stage.CreateNew(str(layer))
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.y)
    UsdGeom.SetStageMetersPerUnit(stage, 1.0)
    root = UsdSkel.Root.Define(stage, "/Character")
    stage.SetDefaultPrim(root.GetPrim())
    joints = joint_paths()

    def matrices(translations: np.ndarray) -> Vt.Matrix4dArray:
        # USD matrices are row-vector (translation in the last row), so a translation matrix is its own transpose.
        out = np.tile(np.eye(4), (len(translations), 1, 1))
        out[:, 3, :3] = translations
        return Vt.Matrix4dArray.FromNumpy(out)

    skel = UsdSkel.Skeleton.Define(stage, "/Character/Skeleton")
    skel.CreateJointsAttr(joints)
    skel.CreateJointNamesAttr([str(n) for n in names])
    skel.CreateRestTransformsAttr(matrices(skeleton.offsets()))
    skel.CreateBindTransformsAttr(matrices(skeleton.positions))
    binding = UsdSkel.BindingAPI.Apply(skel.GetPrim())

    if motion is not None:
        _check_motion(motion)
        anim = UsdSkel.Animation.Define(stage, "/Character/Skeleton/Animation")
        anim.CreateJointsAttr(joints)
        rotations, translations = anim.CreateRotationsAttr(), anim.CreateTranslationsAttr()
        anim.CreateScalesAttr().Set(Vt.Vec3hArray.FromNumpy(np.ones((BONE_COUNT, 3), np.float16)))
        offsets = skeleton.offsets()
        q = continuous(motion.local_rotations)
        q /= np.linalg.norm(q, axis=-1, keepdims=True)
        xyzw = q.astype(np.float32)  # GfQuatf keeps the imaginary part first
        for f in range(motion.frame_count):
            t = offsets.copy()
            t[0] = motion.root[f]
            rotations.Set(Vt.QuatfArray.FromNumpy(xyzw[f]), Usd.TimeCode(f))
            translations.Set(Vt.Vec3fArray.FromNumpy(t.astype(np.float32)), Usd.TimeCode(f))
        binding.CreateAnimationSourceRel().SetTargets([anim.GetPath()])
        stage.SetTimeCodesPerSecond(motion.fps)
        stage.SetFramesPerSecond(motion.fps)
        stage.SetStartTimeCode(0)
        stage.SetEndTimeCode(motion.frame_count - 1)
        anim.GetPrim().SetCustomDataByKey("name", motion.name)

    if character is not None:
        data = skin_data(character)
        mesh = UsdGeom.Mesh.Define(stage, "/Character/Body")
        mesh.CreatePointsAttr(Vt.Vec3fArray.FromNumpy(data.positions))
        lo, hi = data.positions.min(axis=0).tolist(), data.positions.max(axis=0).tolist()
        mesh.CreateExtentAttr(Vt.Vec3fArray([Gf.Vec3f(*lo), Gf.Vec3f(*hi)]))
        mesh.CreateFaceVertexCountsAttr(Vt.IntArray.FromNumpy(np.full(len(data.faces), 3, np.int32)))
        mesh.CreateFaceVertexIndicesAttr(Vt.IntArray.FromNumpy(data.faces.ravel().astype(np.int32)))
        mesh.CreateSubdivisionSchemeAttr(UsdGeom.Tokens.none)
        mesh.CreateNormalsAttr(Vt.Vec3fArray.FromNumpy(data.normals))
        mesh.SetNormalsInterpolation(UsdGeom.Tokens.vertex)
        primvars = UsdGeom.PrimvarsAPI(mesh)
        if data.uv is not None:
            st = primvars.CreatePrimvar("st", Sdf.ValueTypeNames.TexCoord2fArray, UsdGeom.Tokens.vertex)
            st.Set(Vt.Vec2fArray.FromNumpy(data.uv.astype(np.float32)))
        if data.colors is not None:
            color = primvars.CreatePrimvar("displayColor", Sdf.ValueTypeNames.Color3fArray, UsdGeom.Tokens.vertex)
            color.Set(Vt.Vec3fArray.FromNumpy((data.colors[:, :3] / 255.0).astype(np.float32)))
        mesh_binding = UsdSkel.BindingAPI.Apply(mesh.GetPrim())
        mesh_binding.CreateSkeletonRel().SetTargets([skel.GetPath()])
        indices = Vt.IntArray.FromNumpy(data.joints.astype(np.int32).ravel())
        mesh_binding.CreateJointIndicesPrimvar(False, 4).Set(indices)
        mesh_binding.CreateJointWeightsPrimvar(False, 4).Set(Vt.FloatArray.FromNumpy(data.weights.ravel()))
        mesh_binding.CreateGeomBindTransformAttr(Gf.Matrix4d(1.0))
        material = UsdShade.Material.Define(stage, "/Character/Materials/material_0")
        surface = UsdShade.Shader.Define(stage, material.GetPath().AppendChild("PreviewSurface"))
        surface.CreateIdAttr("UsdPreviewSurface")
        material.CreateSurfaceOutput().ConnectToSource(surface.ConnectableAPI(), "surface")
        diffuse = surface.CreateInput("diffuseColor", Sdf.ValueTypeNames.Color3f)
        surface.CreateInput("metallic", Sdf.ValueTypeNames.Float).Set(float(METALLIC))
        surface.CreateInput("roughness", Sdf.ValueTypeNames.Float).Set(float(ROUGHNESS))
        if data.texture is not None:
            (layer.parent / "base_color.png").write_bytes(_png(data.texture))
            reader = UsdShade.Shader.Define(stage, material.GetPath().AppendChild("TexCoordReader"))
            reader.CreateIdAttr("UsdPrimvarReader_float2")
            reader.CreateInput("varname", Sdf.ValueTypeNames.String).Set("st")
            reader.CreateOutput("result", Sdf.ValueTypeNames.Float2)
            tex = UsdShade.Shader.Define(stage, material.GetPath().AppendChild("BaseColorTexture"))
            tex.CreateIdAttr("UsdUVTexture")
            tex.CreateInput("file", Sdf.ValueTypeNames.Asset).Set("./base_color.png")
            tex.CreateInput("st", Sdf.ValueTypeNames.Float2).ConnectToSource(reader.ConnectableAPI(), "result")
            tex.CreateInput("sourceColorSpace", Sdf.ValueTypeNames.Token).Set("sRGB")
            diffuse.ConnectToSource(tex.CreateOutput("rgb", Sdf.ValueTypeNames.Float3))
        elif data.colors is not None:
            reader = UsdShade.Shader.Define(stage, material.GetPath().AppendChild("ColorReader"))
            reader.CreateIdAttr("UsdPrimvarReader_float3")
            reader.CreateInput("varname", Sdf.ValueTypeNames.String).Set("displayColor")
            diffuse.ConnectToSource(reader.CreateOutput("result", Sdf.ValueTypeNames.Float3))
        else:
            diffuse.Set(Gf.Vec3f(*(c / 255 for c in CLAY_RGBA[:3])))
        UsdShade.MaterialBindingAPI.Apply(mesh.GetPrim()).Bind(material)
    stage.GetRootLayer().Save()
