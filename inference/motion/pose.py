"""Body landmarks of a 3D humanoid from its front view: a CPU render plus MediaPipe's PoseLandmarker (BlazePose full).

The mesh (metres, +Y up, facing +Z) is rendered orthographically from +Z with the project's vectorised rasteriser,
coloured by its base-colour texture (sampled per pixel through the UVs), its vertex or face colours, or plain grey,
and Lambert-shaded on a light background. The landmarker (loaded once per process from the `.task` bundle that
`python -m inference.bundled_models` builds) returns BlazePose's 33 landmarks; they are mapped back to world x/y.

BlazePose decides a person's left and right from the face; on faceless or stylised figures it often reads the render
as a back view and swaps them. The render is known to face the camera, so sides are assigned by image x: the
character's left (+X) is on the image's right. When the first render yields no confident pose, further renders are
tried (another background and padding, the mirrored image, a colour-free shaded render) before giving up.
"""

from __future__ import annotations

import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import trimesh
from scipy import ndimage

from inference.bundled_models import pose_model_path
from inference.pipeline.raster import rasterize
from inference.runners.base import InputRejected

LANDMARKS: tuple[str, ...] = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye", "right_eye_outer",
    "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_pinky", "right_pinky", "left_index", "right_index",
    "left_thumb", "right_thumb", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    "left_heel", "right_heel", "left_foot_index", "right_foot_index",
)  # fmt: skip
LANDMARK: dict[str, int] = {name: i for i, name in enumerate(LANDMARKS)}
# (left, right) landmark index pairs
PAIRS: tuple[tuple[int, int], ...] = tuple(
    (i, LANDMARK["right" + name[4:]]) for i, name in enumerate(LANDMARKS) if name.startswith("left")
) + ((LANDMARK["mouth_left"], LANDMARK["mouth_right"]),)
# The landmarks a rig is built from: shoulders, elbows, wrists, hips, knees, ankles.
LIMB_LANDMARKS: tuple[int, ...] = tuple(range(11, 17)) + tuple(range(23, 29))

RENDER_SIZE = 512
MIN_LIMB_VISIBILITY = 0.5  # mean visibility of the limb landmarks for a render to be accepted outright
# (hip height as a fraction of the figure's, window side over the figure's extent from there) tried without detector
DIRECT_WINDOWS: tuple[tuple[float, float], ...] = (
    (0.5, 1.0),
    (0.5, 1.15),
    (0.5, 1.3),
    (0.55, 1.0),
    (0.55, 1.15),
    (0.55, 1.3),
)
MIN_PRESENCE = 0.5  # the landmark model's own "a person is in this crop" score, when run without the detector


class PoseEstimationFailed(InputRejected):
    """The model's front view shows no usable humanoid pose; the message says why, in plain words."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"Pose estimation failed: {reason}")


@dataclass(frozen=True)
class FrontView:
    """An orthographic front render: pixel (i, j) centred at (i + 0.5, j + 0.5), y down."""

    image: np.ndarray  # (size, size, 3) uint8
    face: np.ndarray  # (size, size) int32, -1 for background
    centre: np.ndarray  # world (x, y) at the image centre
    scale: float  # pixels per metre
    size: int

    def to_world(self, pixels: np.ndarray) -> np.ndarray:
        """Pixel (x, y) -> world (x, y)."""
        p = np.atleast_2d(pixels).astype(np.float64)
        half = self.size / 2
        return np.c_[(p[:, 0] - half) / self.scale + self.centre[0], (half - p[:, 1]) / self.scale + self.centre[1]]

    def to_pixels(self, points: np.ndarray) -> np.ndarray:
        """World (x, y[, z]) -> pixel (x, y)."""
        p = np.atleast_2d(points).astype(np.float64)
        half = self.size / 2
        return np.c_[(p[:, 0] - self.centre[0]) * self.scale + half, half - (p[:, 1] - self.centre[1]) * self.scale]


@dataclass(frozen=True)
class PoseResult:
    """BlazePose's 33 landmarks with sides assigned by image x (index order as `LANDMARKS`)."""

    pixels: np.ndarray  # (33, 2) image x, y in pixels of `view`
    world_xy: np.ndarray  # (33, 2) world x, y in metres
    visibility: np.ndarray  # (33,) in [0, 1]
    view: FrontView
    attempt: str  # which render succeeded
    timings: dict[str, float] = field(default_factory=dict)  # seconds: render, detect, load

    @property
    def limb_visibility(self) -> float:
        return float(self.visibility[list(LIMB_LANDMARKS)].mean())


def _vertex_colors(mesh: trimesh.Trimesh) -> np.ndarray | None:
    """Per-vertex RGB (float 0..255) for colour visuals, or None."""
    visual = mesh.visual
    if getattr(visual, "kind", None) == "vertex":
        return np.asarray(visual.vertex_colors, dtype=np.float64)[:, :3]
    return None


def _texture(mesh: trimesh.Trimesh) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(uv (V,2), image (h,w,3) float, colour factor (3,)) for a textured mesh, or None."""
    visual = mesh.visual
    uv = getattr(visual, "uv", None)
    material = getattr(visual, "material", None)
    if uv is None or material is None or len(uv) != len(mesh.vertices):
        return None
    image = getattr(material, "baseColorTexture", None) or getattr(material, "image", None)
    factor = getattr(material, "baseColorFactor", None)
    factor = np.ones(3) if factor is None else np.asarray(factor, dtype=np.float64)[:3] / 255.0
    if image is None:
        return None
    pixels = np.asarray(image.convert("RGB"), dtype=np.float64)
    return np.asarray(uv, dtype=np.float64), pixels, factor


def _flat_color(mesh: trimesh.Trimesh) -> np.ndarray:
    """One RGB colour for the whole mesh when it has no texture or colours: a material's colour or light grey."""
    material = getattr(mesh.visual, "material", None)
    factor = getattr(material, "baseColorFactor", None)
    if factor is not None:
        return np.asarray(factor, dtype=np.float64)[:3]
    return np.array([200.0, 200.0, 200.0])


def render_front(
    mesh: trimesh.Trimesh,
    size: int = RENDER_SIZE,
    margin: float = 0.08,
    background: tuple[int, int, int] = (245, 245, 245),
    use_colors: bool = True,
    window: tuple[float, float, float] | None = None,
) -> FrontView:
    """Render the mesh from +Z (orthographic, square image), shaded with its texture or colours (or plain grey when
    `use_colors` is False). The image shows the bounding box's larger side plus `margin` on each side, or the world
    square `window` = (centre x, centre y, side) when given."""
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    if window is None:
        extent = float((hi - lo)[:2].max()) * (1.0 + 2.0 * margin)
        centre = (lo + hi)[:2] / 2
    else:
        centre, extent = np.array(window[:2], dtype=np.float64), float(window[2])
    scale = size / extent
    view = FrontView(np.zeros((size, size, 3), np.uint8), np.full((size, size), -1, np.int32), centre, scale, size)
    xy = view.to_pixels(vertices)
    depth = vertices[:, 2] - lo[2] + 1.0  # orthographic: any positive depth linear in screen space, nearest largest
    face_img, bary = rasterize(xy[faces], size, size, inv_depth=depth[faces])
    hit = face_img >= 0
    f = face_img[hit]
    b = bary[hit].astype(np.float64)
    corners = faces[f]
    color: np.ndarray
    texture = _texture(mesh) if use_colors else None
    vertex_colors = _vertex_colors(mesh) if use_colors else None
    if texture is not None:
        uv, image, factor = texture
        uvp = np.einsum("ij,ijk->ik", b, uv[corners]) % 1.0
        h, w = image.shape[:2]
        col = np.clip((uvp[:, 0] * w).astype(np.int64), 0, w - 1)
        row = np.clip(((1.0 - uvp[:, 1]) * h).astype(np.int64), 0, h - 1)
        color = image[row, col] * factor
    elif vertex_colors is not None:
        color = np.einsum("ij,ijk->ik", b, vertex_colors[corners])
    elif use_colors and getattr(mesh.visual, "kind", None) == "face":
        color = np.asarray(mesh.visual.face_colors, dtype=np.float64)[f, :3]
    else:
        color = np.broadcast_to(_flat_color(mesh) if use_colors else np.array([190.0, 190.0, 190.0]), (len(f), 3))
    light = np.array([0.3, 0.5, 1.0]) / np.linalg.norm([0.3, 0.5, 1.0])
    normals = np.asarray(mesh.face_normals, dtype=np.float64)
    shade = 0.35 + 0.65 * np.abs(normals[f] @ light)  # abs: inconsistent winding still shades
    out = np.empty((size, size, 3), np.float64)
    out[:] = background
    out[hit] = color * shade[:, None]
    return FrontView(np.clip(out, 0, 255).astype(np.uint8), face_img, centre, scale, size)


_LANDMARKER_LOCK = threading.Lock()
_LANDMARKERS: dict[Path, object] = {}


def _landmarker(model_path: Path) -> object:
    """The PoseLandmarker for `model_path`, created once per process."""
    from mediapipe.tasks.python import BaseOptions
    from mediapipe.tasks.python.vision import PoseLandmarker, PoseLandmarkerOptions, RunningMode

    if model_path not in _LANDMARKERS:
        options = PoseLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(model_path)),
            running_mode=RunningMode.IMAGE,
            num_poses=1,
            min_pose_detection_confidence=0.3,
            min_pose_presence_confidence=0.3,
        )
        _LANDMARKERS[model_path] = PoseLandmarker.create_from_options(options)
    return _LANDMARKERS[model_path]


def _resolve_model(models_dir: Path | None) -> Path:
    path = pose_model_path(models_dir)
    if path is None:
        raise RuntimeError("the pose model is not installed; run `python -m inference.bundled_models`")
    return path


def detect_landmarks(image: np.ndarray, models_dir: Path | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """Run the landmarker on an RGB uint8 image: ((33, 2) pixel x/y, (33,) visibility), or None if no person."""
    import mediapipe as mp

    path = _resolve_model(models_dir)
    with _LANDMARKER_LOCK:
        landmarker = _landmarker(path)
        result = landmarker.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image)))  # type: ignore[attr-defined]
    if not result.pose_landmarks:
        return None
    h, w = image.shape[:2]
    points = result.pose_landmarks[0]
    pixels = np.array([(p.x * w, p.y * h) for p in points], dtype=np.float64)
    visibility = np.array([p.visibility if p.visibility is not None else 0.0 for p in points], dtype=np.float64)
    return pixels, visibility


_DIRECT_SIZE = 256  # the landmark model's input side
_DIRECT_NETS: dict[Path, object] = {}


def _direct_net(model_path: Path) -> object:
    """The bundle's landmark model alone (no person detector), loaded with OpenCV's TFLite importer, once."""
    import cv2

    if model_path not in _DIRECT_NETS:
        with zipfile.ZipFile(model_path) as bundle:
            content = bundle.read("pose_landmarks_detector.tflite")
        _DIRECT_NETS[model_path] = cv2.dnn.readNetFromTFLite(np.frombuffer(content, dtype=np.uint8))
    return _DIRECT_NETS[model_path]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))


def detect_landmarks_direct(image: np.ndarray, models_dir: Path | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """Run BlazePose's landmark model on a 256x256 RGB crop that already frames the figure as its person detector
    would (square, centred on the hips, the whole body inside): ((33, 2) pixels, (33,) visibility, pose presence).

    The detector of the full pipeline is trained on people and often misses stylised figures (boxes, robots); the
    rigger knows where the figure is, so it can frame the crop itself.
    """
    net = _direct_net(_resolve_model(models_dir))
    blob = (image.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
    with _LANDMARKER_LOCK:
        net.setInput(blob)  # type: ignore[attr-defined]
        names = net.getUnconnectedOutLayersNames()  # type: ignore[attr-defined]
        outputs = dict(zip(names, net.forward(names), strict=True))  # type: ignore[attr-defined]
    landmarks = next(o for o in outputs.values() if o.shape == (1, 195)).reshape(39, 5)
    presence = float(next(o for o in outputs.values() if o.shape == (1, 1)).ravel()[0])
    scale = image.shape[0] / _DIRECT_SIZE
    return landmarks[:33, :2] * scale, _sigmoid(landmarks[:33, 3]), presence


def _hip_window(mesh: trimesh.Trimesh, hip_y: float, padding: float) -> tuple[float, float, float]:
    """A square around the whole figure centred on the hips' height, as BlazePose's detector frames a person."""
    vertices = np.asarray(mesh.vertices)
    cx = float(vertices[:, 0].min() + vertices[:, 0].max()) / 2
    half = max(float(np.abs(vertices[:, 0] - cx).max()), float(np.abs(vertices[:, 1] - hip_y).max()))
    return cx, hip_y, 2.0 * half * padding


def _inside_fraction(view: FrontView, pixels: np.ndarray) -> float:
    """The share of these landmarks that fall on the figure (within a few pixels) in the view."""
    mask = ndimage.binary_dilation(view.face >= 0, iterations=3)
    col = np.clip(pixels[:, 0].astype(np.int64), 0, view.size - 1)
    row = np.clip(pixels[:, 1].astype(np.int64), 0, view.size - 1)
    return float(mask[row, col].mean())


def _assign_sides(pixels: np.ndarray, visibility: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Swap each left/right pair so that the left one (the character's left, facing the camera) has the larger x."""
    pixels, visibility = pixels.copy(), visibility.copy()
    for left, right in PAIRS:
        if pixels[left, 0] < pixels[right, 0]:
            pixels[[left, right]] = pixels[[right, left]]
            visibility[[left, right]] = visibility[[right, left]]
    return pixels, visibility


def estimate_pose(mesh: trimesh.Trimesh, models_dir: Path | None = None) -> PoseResult:
    """The 33 landmarks of the mesh's front view, trying several renders; raises `PoseEstimationFailed` when none
    shows a person."""
    timings = {"render": 0.0, "detect": 0.0, "load": 0.0}
    start = time.perf_counter()
    path = _resolve_model(models_dir)
    with _LANDMARKER_LOCK:
        _landmarker(path)
    timings["load"] = time.perf_counter() - start
    attempts = (
        ("light background", {"margin": 0.08, "background": (245, 245, 245)}, False),
        ("mirrored", {"margin": 0.08, "background": (245, 245, 245)}, True),
        ("dark background, padded", {"margin": 0.2, "background": (40, 40, 48)}, False),
        ("shaded grey", {"margin": 0.12, "background": (250, 250, 250), "use_colors": False}, False),
    )
    best: PoseResult | None = None
    for name, options, mirrored in attempts[:2]:
        t = time.perf_counter()
        view = render_front(mesh, **options)  # type: ignore[arg-type]
        timings["render"] += time.perf_counter() - t
        t = time.perf_counter()
        image = view.image[:, ::-1] if mirrored else view.image
        found = detect_landmarks(image, models_dir)
        timings["detect"] += time.perf_counter() - t
        if found is None:
            continue
        pixels, visibility = found
        if mirrored:
            pixels = pixels.copy()
            pixels[:, 0] = view.size - pixels[:, 0]
        pixels, visibility = _assign_sides(pixels, visibility)
        result = PoseResult(pixels, view.to_world(pixels), visibility, view, name, timings)
        if best is None or result.limb_visibility > best.limb_visibility:
            best = result
        if result.limb_visibility >= MIN_LIMB_VISIBILITY:
            return best
    # The detector missed the figure or was unsure: frame the crop ourselves, at a few hip heights and paddings as
    # the detector might have, and run the landmark model alone; keep the most confident reading.
    vertices = np.asarray(mesh.vertices)
    lo, hi = float(vertices[:, 1].min()), float(vertices[:, 1].max())
    best_score = -1.0
    for name, options, _ in (attempts[0], attempts[3]):
        for hip_fraction, padding in DIRECT_WINDOWS:
            window = _hip_window(mesh, lo + hip_fraction * (hi - lo), padding)
            t = time.perf_counter()
            view = render_front(mesh, size=_DIRECT_SIZE, window=window, **options)  # type: ignore[arg-type]
            timings["render"] += time.perf_counter() - t
            t = time.perf_counter()
            pixels, visibility, presence = detect_landmarks_direct(view.image, models_dir)
            timings["detect"] += time.perf_counter() - t
            if presence < MIN_PRESENCE:
                continue
            pixels, visibility = _assign_sides(pixels, visibility)
            result = PoseResult(pixels, view.to_world(pixels), visibility, view, f"landmarks only, {name}", timings)
            score = presence * result.limb_visibility * _inside_fraction(view, pixels[list(LIMB_LANDMARKS)]) ** 2
            if score > best_score:
                best, best_score = result, score
    if best is None:
        raise PoseEstimationFailed("no person was found in the model's front view")
    return best
