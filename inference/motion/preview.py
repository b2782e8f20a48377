"""Animation previews: linear blend skinning of a `SkinnedCharacter` and CPU renders of it (GIF, contact sheet).

Frames are drawn with the project's numpy rasteriser (`inference.pipeline.raster.rasterize`) and the thumbnail's
texture lookup and backdrop. Unlike the thumbnail, whose camera frames each mesh tightly, a preview keeps one
camera for the whole clip: its distance fits the largest extent reached in any frame, and it follows the hips
horizontally when the clip travels (a walk stays in frame), otherwise it stays put. A soft shadow disc and a ground
line under the feet show the floor. Shading is the thumbnail's: Lambert key and fill lights plus a sky ambient.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy.spatial.transform import Rotation

from inference.motion.export import Motion, SkinData, SkinnedCharacter, normalize_weights, skin_data
from inference.motion.skeleton import world_pose
from inference.pipeline.raster import rasterize
from inference.pipeline.thumbnail import BACKGROUND_BOTTOM, BACKGROUND_TOP, CLAY, _sample, _to_u8

VIEWS = {"front": (0.0, 8.0), "three_quarter": (35.0, 15.0)}  # azimuth, elevation in degrees
FOV_DEG = 30.0
TRAVEL_M = 0.15  # hips travelling farther than this (horizontally) make the camera follow them


def skinning_matrices(character: SkinnedCharacter, motion: Motion, frames: np.ndarray) -> np.ndarray:
    """(len(frames), 24, 3, 4): each joint's posed transform times its inverse bind (rest) transform."""
    frames = np.atleast_1d(np.asarray(frames, dtype=np.int64))
    world_rot, world_pos = world_pose(character.skeleton, motion.local_rotations[frames], motion.root[frames])
    rot = Rotation.from_quat(world_rot.reshape(-1, 4)).as_matrix().reshape(len(frames), -1, 3, 3)
    # Rest frames are world-aligned, so the inverse bind is a translation by -rest position:
    # x' = R (x - rest) + posed = R x + (posed - R rest).
    rest = character.skeleton.positions
    trans = world_pos - np.einsum("fbij,bj->fbi", rot, rest)
    return np.concatenate([rot, trans[..., None]], axis=-1)


def lbs(positions: np.ndarray, joints: np.ndarray, weights: np.ndarray, matrices: np.ndarray) -> np.ndarray:
    """Linear blend skinning of rest `positions` (V, 3) with one frame's (24, 3, 4) skinning matrices."""
    blended = np.einsum("vk,vkij->vij", np.asarray(weights, np.float64), matrices[np.asarray(joints, np.int64)])
    return np.einsum("vij,vj->vi", blended[:, :, :3], np.asarray(positions, np.float64)) + blended[:, :, 3]


def skin_vertices(character: SkinnedCharacter, motion: Motion, frame: int) -> np.ndarray:
    """(V, 3) vertex positions of the character's mesh (in its own vertex order) at `frame` of `motion` (LBS)."""
    joints, weights = normalize_weights(character.joints, character.weights)
    matrices = skinning_matrices(character, motion, np.array([frame]))[0]
    return lbs(character.mesh.vertices, joints, weights, matrices)


def _frame_indices(motion: Motion, count: int) -> np.ndarray:
    count = max(1, int(count))
    return np.unique(np.rint(np.linspace(0, motion.frame_count - 1, count)).astype(np.int64)) if count > 1 else [0]


def _basis(azimuth_deg: float, elevation_deg: float) -> tuple[np.ndarray, np.ndarray]:
    az, el = np.radians(azimuth_deg), np.radians(elevation_deg)
    direction = np.array([np.sin(az) * np.cos(el), np.sin(el), np.cos(az) * np.cos(el)])
    forward = -direction
    right = np.cross(forward, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    return direction, np.stack([right, np.cross(right, forward), forward])


def render_frames(
    character: SkinnedCharacter, motion: Motion, count: int, size: int = 256, view: str = "front"
) -> list[Image.Image]:
    """`count` frames spread evenly over the motion (first and last included), each an RGB `size`² image."""
    if view not in VIEWS:
        raise ValueError(f"view must be one of {sorted(VIEWS)}")
    data = skin_data(character)
    frames = np.asarray(_frame_indices(motion, count))
    matrices = skinning_matrices(character, motion, frames)
    posed = [lbs(data.positions, data.joints, data.weights, m) for m in matrices]
    root = np.asarray(motion.root, dtype=np.float64)[frames]
    travel = np.linalg.norm((root - root[0])[:, [0, 2]], axis=1).max() > TRAVEL_M
    anchors = root * np.array([1.0, 0.0, 1.0]) if travel else np.zeros_like(root)  # follow x and z only
    local = [p - a for p, a in zip(posed, anchors, strict=True)]
    lo = np.min([p.min(axis=0) for p in local], axis=0)
    hi = np.max([p.max(axis=0) for p in local], axis=0)
    ground = float(min(lo[1], character.skeleton.positions[:, 1].min()))
    centre = (lo + hi) / 2
    radius = max(float(np.linalg.norm(hi - lo)) / 2, 1e-3)
    direction, basis = _basis(*VIEWS[view])
    distance = radius / np.sin(np.radians(FOV_DEG) / 2)
    focal = 0.5 / np.tan(np.radians(FOV_DEG) / 2)  # in image widths
    images = []
    for verts, anchor in zip(posed, anchors, strict=True):
        eye = centre + anchor + direction * distance
        images.append(_draw(data, verts, eye, basis, focal, size, ground, anchor + centre, radius))
    return images


def _project(points: np.ndarray, eye: np.ndarray, basis: np.ndarray, focal: float, n: int) -> tuple:
    cam = (points - eye) @ basis.T
    depth = np.maximum(cam[:, 2], 1e-6)
    pix = np.stack([cam[:, 0] / depth * focal * n + n / 2, n / 2 - cam[:, 1] / depth * focal * n], axis=1)
    return pix, depth


def _draw(data: SkinData, verts: np.ndarray, eye: np.ndarray, basis: np.ndarray, focal: float, size: int,
          ground: float, target: np.ndarray, radius: float, supersample: int = 2) -> Image.Image:  # fmt: skip
    n = size * supersample
    faces = data.faces.astype(np.int64)
    pix, depth = _project(verts, eye, basis, focal, n)
    inv_depth = 1.0 / depth
    face_img, bary_img = rasterize(pix[faces], n, n, inv_depth[faces])
    covered = face_img >= 0
    tri = faces[face_img[covered]]
    b = bary_img[covered] * inv_depth[tri].astype(np.float32)
    b /= b.sum(axis=1, keepdims=True)

    def interp(attr: np.ndarray) -> np.ndarray:
        return np.einsum("pk,pkc->pc", b, attr.astype(np.float32)[tri])

    corners = verts[faces]
    face_normal = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    vertex_normal = np.zeros_like(verts)
    for k in range(3):
        np.add.at(vertex_normal, faces[:, k], face_normal)
    vertex_normal /= np.maximum(np.linalg.norm(vertex_normal, axis=1, keepdims=True), 1e-12)
    normal = interp(vertex_normal)
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)
    normal *= np.where(np.einsum("pc,pc->p", normal, eye - interp(verts)) < 0, -1.0, 1.0)[:, None]
    if data.uv is not None and data.texture is not None:
        texture = np.asarray(data.texture.convert("RGB"), dtype=np.float32) / 255.0
        albedo = _sample(texture, interp(data.uv))
    elif data.colors is not None:
        albedo = interp(data.colors[:, :3] / 255.0)
    else:
        albedo = np.broadcast_to(CLAY, normal.shape)
    right, up, forward = basis
    key = _unit(-0.45 * right + 0.75 * up - 0.5 * forward)
    fill = _unit(0.8 * right + 0.1 * up - 0.4 * forward)
    light = 0.75 * np.clip(normal @ key, 0, None) + 0.25 * np.clip(normal @ fill, 0, None)
    shaded = albedo * (0.22 + 0.12 * (normal[:, 1] * 0.5 + 0.5) + light)[:, None]

    t = np.linspace(0, 1, n)[:, None, None]
    image = np.broadcast_to(BACKGROUND_TOP * (1 - t) + BACKGROUND_BOTTOM * t, (n, n, 3)).astype(np.float32).copy()
    _floor(image, eye, basis, focal, ground, target, radius)
    image[covered] = np.clip(shaded, 0, 1)
    if supersample > 1:
        image = image.reshape(size, supersample, size, supersample, 3).mean(axis=(1, 3))
    return Image.fromarray(_to_u8(image), "RGB")


def _floor(image: np.ndarray, eye: np.ndarray, basis: np.ndarray, focal: float, ground: float, target: np.ndarray,
           radius: float) -> None:  # fmt: skip
    """A soft shadow under the character and a ground line across the picture (drawn on `image` in place)."""
    n = image.shape[0]
    ring = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    shadow_r = 0.35 * radius
    disc = np.stack([target[0] + shadow_r * np.cos(ring), np.full(48, ground), target[2] + shadow_r * np.sin(ring)], 1)
    line = np.array([[target[0] - 4 * radius, ground, target[2]], [target[0] + 4 * radius, ground, target[2]]])
    pix_disc, _ = _project(disc, eye, basis, focal, n)
    pix_line, _ = _project(line, eye, basis, focal, n)
    canvas = Image.new("L", (n, n), 0)
    draw = ImageDraw.Draw(canvas)
    draw.polygon([tuple(p) for p in pix_disc], fill=90)
    draw.line([tuple(p) for p in pix_line], fill=140, width=max(1, n // 256))
    shade = np.asarray(canvas, dtype=np.float32)[..., None] / 255.0
    image *= 1 - 0.5 * shade


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def write_gif(frames: Sequence[Image.Image], path: Path, fps: float) -> Path:
    """An endlessly looping GIF (one shared palette keeps it small and free of flicker)."""
    path = Path(path)
    if not frames:
        raise ValueError("no frames")
    duration = max(20, int(round(1000 / fps / 10)) * 10)  # GIF delays are in 1/100 s
    first = frames[0].convert("RGB").quantize(colors=255, method=Image.Quantize.MEDIANCUT)
    rest = [f.convert("RGB").quantize(palette=first, dither=Image.Dither.NONE) for f in frames[1:]]
    first.save(path, format="GIF", save_all=True, append_images=rest, duration=duration, loop=0, optimize=False,
               disposal=1)  # fmt: skip
    return path


def write_strip(frames: Sequence[Image.Image], path: Path, columns: int | None = None) -> Path:
    """A contact sheet PNG: the frames left to right (wrapping after `columns`), 2 px gutters."""
    path = Path(path)
    if not frames:
        raise ValueError("no frames")
    w, h = frames[0].size
    columns = columns or len(frames)
    rows = -(-len(frames) // columns)
    gap = 2
    sheet = Image.new("RGB", (columns * w + (columns - 1) * gap, rows * h + (rows - 1) * gap), (255, 255, 255))
    for i, frame in enumerate(frames):
        sheet.paste(frame.convert("RGB"), ((i % columns) * (w + gap), (i // columns) * (h + gap)))
    sheet.save(path, format="PNG")
    return path
