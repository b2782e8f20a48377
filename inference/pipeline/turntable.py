"""Turntable preview video: `preview.mp4` (Meshy's `video_url`), the model turning once, as a small H.264 MP4.

Frames come from the thumbnail renderer (`thumbnail.render`: the same shading and colours as `preview.png`, on the
same background gradient), one per azimuth step around the vertical axis, starting at the thumbnail's three-quarter
view, and go straight into libx264 through PyAV, so memory stays at about one frame. No audio.

The renderer frames each view tightly on the mesh, which would make the model breathe in and out as it turns. So the
camera sees the mesh plus two rings of unreferenced vertices (no face uses them, so nothing of them is drawn) around
the vertical axis at the mesh's lowest and highest points, wide enough to enclose it: one ring vertex per frame, so
every frame's rotation maps the rings onto themselves and the framing is the same for the whole turn.

A frame costs about 15 ms at 256x256 for up to 30k faces on one core; a larger surface is decimated to `MAX_FACES`
first (frame time grows with the face count, and at this size the extra triangles are sub-pixel).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from scipy.spatial import cKDTree

from inference.pipeline import thumbnail
from inference.pipeline.clean import safe_vertex_normals
from inference.pipeline.remesh import decimate

# 256x256, one turn in 3 s at 16 fps (48 frames, 7.5 degrees apart): the shape reads well, and it costs about 0.7 s
# of CPU (24 fps would cost 1.1 s: frame time is mostly per-face work in numpy that holds the GIL, so it neither
# shrinks much with the picture nor spreads over threads).
SIZE, FPS, SECONDS = 256, 16, 3.0
ELEVATION_DEG = thumbnail.ELEVATION_DEG
MAX_FACES = 30_000
# x264: crf 26 keeps the clay shading free of banding at ~40-60 kB a turn; veryfast costs ~1.5 ms a frame here. One
# thread: no extra threads contending with the export pool, and the same bytes on every run.
CODEC_OPTIONS = {"crf": "26", "preset": "veryfast", "threads": "1"}


def render_turntable(
    vertices: np.ndarray,
    faces: np.ndarray,
    normals: np.ndarray,
    out_path: Path,
    *,
    colors: np.ndarray | None = None,
    uv: np.ndarray | None = None,
    texture: np.ndarray | None = None,
    closed: bool = False,
    size: int = SIZE,
    fps: int = FPS,
    seconds: float = SECONDS,
    elevation_deg: float = ELEVATION_DEG,
) -> Path:
    """Write one full turn of the mesh to `out_path` (MP4, H.264, yuv420p, `+faststart`): `round(fps * seconds)`
    frames of `size` x `size` (even). Surface arguments as for `thumbnail.render` (`colors` (V, 3) floats 0..1, or
    `uv` with a `texture` (H, W, 3) floats; neither: clay); `closed` allows back-face culling."""
    if size % 2:
        raise ValueError("the turntable size must be even (yuv420p halves the chroma planes)")
    frames = max(1, round(fps * seconds))
    vertices, faces, normals = np.asarray(vertices), np.asarray(faces), np.asarray(normals)
    if uv is not None and texture is not None:
        look: dict[str, np.ndarray] = {"uv": np.asarray(uv), "texture": texture}
    elif colors is not None:
        look = {"colors": np.asarray(colors)}
    else:
        look = {}
    if len(faces) > MAX_FACES:
        vertices, faces, normals, look = _decimated(vertices, faces, look)
    vertices, normals, look = _with_rings(vertices, normals, look, frames)

    background = _background(size)
    out_path = Path(out_path)
    with av.open(str(out_path), "w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=fps, options=CODEC_OPTIONS)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, fps)
        for index in range(frames):
            rgb, alpha = thumbnail.render(
                vertices, faces, normals, size=size, supersample=1, closed=closed,
                azimuth_deg=thumbnail.AZIMUTH_DEG + 360.0 * index / frames, elevation_deg=elevation_deg, **look,
            )  # fmt: skip
            # `rgb` is premultiplied by coverage, as for `preview.png`: compositing is a plain add.
            opaque = np.clip(np.rint((rgb + background * (1 - alpha[..., None])) * 255), 0, 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(opaque, format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return out_path


def _background(size: int) -> np.ndarray:
    """`preview.png`'s light vertical gradient, (size, size, 3) floats."""
    t = np.linspace(0, 1, size)[:, None, None]
    return np.broadcast_to(thumbnail.BACKGROUND_TOP * (1 - t) + thumbnail.BACKGROUND_BOTTOM * t, (size, size, 3))


def _decimated(
    vertices: np.ndarray, faces: np.ndarray, look: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """The surface decimated to `MAX_FACES`, coloured per vertex from the nearest original vertex (a texture is read
    at the original vertices first: nearest UVs would bridge chart seams)."""
    v, f = decimate(vertices, faces, MAX_FACES)
    nearest = cKDTree(vertices).query(v)[1]
    if "texture" in look:
        look = {"colors": thumbnail._sample(look["texture"], look["uv"])[nearest]}
    elif "colors" in look:
        look = {"colors": look["colors"][nearest]}
    return v, f, safe_vertex_normals(v, f), look


def _with_rings(
    vertices: np.ndarray, normals: np.ndarray, look: dict[str, np.ndarray], frames: int
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Append the two framing rings (see the module docstring), with filler normals and colours or UVs."""
    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    centre = (lo + hi) / 2
    # The polygon of `frames` corners must enclose the circle through the farthest vertex: scale by 1/cos(pi/n).
    radius = float(np.max(np.hypot(vertices[:, 0] - centre[0], vertices[:, 2] - centre[2])))
    radius = max(radius, 1e-6) / np.cos(np.pi / max(frames, 3))
    angle = np.radians(thumbnail.AZIMUTH_DEG) + 2 * np.pi * np.arange(frames) / frames
    ring = np.stack([centre[0] + radius * np.sin(angle), np.zeros(frames), centre[2] + radius * np.cos(angle)], 1)
    rings = np.concatenate([ring + [0, lo[1], 0], ring + [0, hi[1], 0]])
    extra = len(rings)
    # Per-vertex arrays (colours, UVs) get filler rows; the texture image stays as it is.
    padded = {
        key: value if key == "texture" else np.concatenate([value, np.zeros((extra, value.shape[1]), value.dtype)])
        for key, value in look.items()
    }
    up = np.tile(np.array([0.0, 1.0, 0.0], dtype=normals.dtype), (extra, 1))
    return np.concatenate([vertices, rings.astype(vertices.dtype)]), np.concatenate([normals, up]), padded
