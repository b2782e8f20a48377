"""Multi-image-to-3D reference runner: silhouette carving (a visual hull), NOT a learned multi-view model.

It reconstructs only what the outlines of the views imply: every part of space that projects inside the
object's silhouette in every view is kept. Concavities that no silhouette shows (the inside of a bowl, the
hollow under a chair seat seen from the side) are filled, and the result is only as good as the views are
consistent. It exists so the multi-image-to-3d task works end to end on CPU-only machines.

Views follow Meshy's order: front (the camera looks at the object's +Z face), right (camera on +X), back
(camera on -Z), left (camera on -X); 2 images are front and right, 3 are front, right and back, and a single
image is handed to the single-image reference runner. The views are treated as orthographic, at elevation 0,
around the vertical axis. Each silhouette is cropped to its bounding box and scaled so that all views share
the object's height; the front view's width gives the X extent, the right view's the Z depth.

The carving is done on soft occupancy rather than on voxels: each view's alpha is box-averaged over the cells
of a grid (~144 cells on the longest side), the 3D field is the minimum over the views, lightly smoothed, and
marching cubes at 0.5 gives a watertight mesh with sub-cell accuracy; loose slivers (under 2% of the main
piece, typically where one matte missed a part) are dropped. Views that carve the object away, or leave less
than half of some view's silhouette, are rejected as inconsistent. Each vertex is coloured from the view (or the
best two) that faces its normal and sees it unoccluded, sampling that photo at the vertex's projection.
The same inputs always give byte-identical output.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mcubes
import numpy as np
import trimesh
from scipy import ndimage

from inference.runners import cutout, procedural_paint
from inference.runners.base import FractionProgress, InputRejected, ProgressCallback, RunnerArtifacts
from inference.runners.procedural import PREVIEW_GREY, normalise, prompt_words

RESOLUTION = 100  # grid cells along the longest side of the object
PAD_CELLS = 3
SMOOTH_SIGMA = 0.8  # cells; softens the creases where two carved silhouettes meet
MIN_COVERAGE = 0.5  # share of each silhouette the carved object must still cover
ISLAND_SHARE = 0.02  # loose pieces under this share of the largest piece's volume are dropped
VIEW_NAMES = ("front", "right", "back", "left")
INCONSISTENT = "the views do not show one consistent object"


@dataclass(frozen=True)
class Silhouette:
    """One view's alpha (H, W) float32 in 0..1 and where the object lies in it.

    `top`, `bottom`, `left`, `right` are pixel-edge coordinates of the object's bounding box (pixel (r, c)
    spans [r, r + 1] x [c, c + 1]).
    """

    alpha: np.ndarray
    top: float
    bottom: float
    left: float
    right: float

    @property
    def pixel_size(self) -> float:
        """World units per pixel: every view's bounding box is one unit tall."""
        return 1.0 / (self.bottom - self.top)

    @property
    def width(self) -> float:
        return (self.right - self.left) * self.pixel_size


def view_axes(index: int) -> tuple[np.ndarray, np.ndarray]:
    """(towards the camera, image right) as world unit vectors for view `index` (0 front .. 3 left)."""
    theta = np.radians(90.0 * index)
    s, c = round(float(np.sin(theta))), round(float(np.cos(theta)))
    return np.array([s, 0.0, c]), np.array([c, 0.0, -s])


def silhouette(alpha: np.ndarray, threshold: float = 0.5) -> Silhouette:
    """Find the object in an alpha matte; specks far from it (under 1% of its area) are dropped.

    Raises InputRejected when nothing is opaque.
    """
    alpha = np.asarray(alpha, dtype=np.float32)
    mask = alpha > threshold
    labels, count = ndimage.label(mask)
    if count == 0:
        raise InputRejected("an image shows no object: it is all background")
    if count > 1:
        sizes = np.bincount(labels.ravel())[1:]
        keep = np.flatnonzero(sizes >= 0.01 * sizes.max()) + 1
        mask = np.isin(labels, keep)
        alpha = np.where(ndimage.binary_dilation(mask, iterations=2), alpha, np.float32(0))
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows[-1] - rows[0] < 3 or cols[-1] - cols[0] < 1:
        raise InputRejected("an image shows the object too small to use")
    return Silhouette(alpha, float(rows[0]), float(rows[-1] + 1), float(cols[0]), float(cols[-1] + 1))


@dataclass(frozen=True)
class Grid:
    """The carving grid: cell centres along x, y, z (world units; y = 0 is the object's base)."""

    axes: tuple[np.ndarray, np.ndarray, np.ndarray]
    step: float

    @property
    def origin(self) -> np.ndarray:
        return np.array([a[0] for a in self.axes])

    def index(self, points: np.ndarray, axis: int) -> np.ndarray:
        """Nearest cell index along `axis` for world coordinates, clipped to the grid."""
        i = np.rint((points - self.axes[axis][0]) / self.step).astype(np.int64)
        return np.clip(i, 0, len(self.axes[axis]) - 1)


def make_grid(views: Sequence[Silhouette], resolution: int = RESOLUTION) -> Grid:
    """A grid around the object: one unit tall, X extent from front/back widths, Z depth from right/left."""
    half_x = max(v.width for i, v in enumerate(views) if i % 2 == 0) / 2
    half_z = max((v.width for i, v in enumerate(views) if i % 2 == 1), default=2 * half_x) / 2
    lo, hi = np.array([-half_x, 0.0, -half_z]), np.array([half_x, 1.0, half_z])
    step = float(np.max(hi - lo)) / (resolution - 2 * PAD_CELLS)
    counts = np.ceil((hi - lo) / step).astype(int) + 2 * PAD_CELLS + 1
    origin = (lo + hi) / 2 - (counts - 1) * step / 2
    axes = tuple((origin[i] + step * np.arange(counts[i])).astype(np.float64) for i in range(3))
    return Grid(axes, step)  # type: ignore[arg-type]


def _overlap(lo: np.ndarray, hi: np.ndarray, pixels: int) -> np.ndarray:
    """(cells, pixels) weights: the share of cell interval [lo, hi] (pixel-edge units) covered by each pixel."""
    p = np.arange(pixels, dtype=np.float64)
    w = np.clip(np.minimum(hi[:, None], p + 1) - np.maximum(lo[:, None], p), 0.0, None)
    return w / (hi - lo)[:, None]


def _u_axis(grid: Grid, index: int) -> tuple[int, np.ndarray]:
    """(world axis, coordinate along the view's image-right direction) for every cell along that axis."""
    _, right = view_axes(index)
    axis = 0 if right[0] else 2
    return axis, grid.axes[axis] * (right[axis])


def view_coverage(view: Silhouette, grid: Grid, index: int) -> np.ndarray:
    """Box-averaged alpha on the grid's (y, u) lattice for one view: (ny, n_u), indexed by grid cells."""
    axis, u = _u_axis(grid, index)
    y = grid.axes[1]
    px, half = view.pixel_size, grid.step / 2
    centre = (view.left + view.right) / 2
    col_lo, col_hi = centre + (u - half) / px, centre + (u + half) / px
    row_lo, row_hi = view.bottom - (y + half) / px, view.bottom - (y - half) / px
    # Only the pixels the grid can reach take part in the products.
    h, w = view.alpha.shape
    c0, c1 = max(int(np.floor(col_lo.min())), 0), min(int(np.ceil(col_hi.max())), w)
    r0, r1 = max(int(np.floor(row_lo.min())), 0), min(int(np.ceil(row_hi.max())), h)
    crop = view.alpha[r0:r1, c0:c1].astype(np.float64)
    rows = _overlap(row_lo - r0, row_hi - r0, r1 - r0)
    cols = _overlap(col_lo - c0, col_hi - c0, c1 - c0)
    return (rows @ crop @ cols.T).astype(np.float32)


def carve(views: Sequence[Silhouette], resolution: int = RESOLUTION) -> tuple[np.ndarray, Grid]:
    """Soft occupancy (nx, ny, nz) in 0..1 (the surface is at 0.5) and its grid.

    Raises InputRejected when the views carve the object (almost) away.
    """
    grid = make_grid(views, resolution)
    shape = tuple(len(a) for a in grid.axes)
    field = np.ones(shape, dtype=np.float32)
    masks = []
    for i, view in enumerate(views):
        cov = view_coverage(view, grid, i)
        axis, _ = _u_axis(grid, i)
        masks.append((axis, cov > 0.5))
        field = np.minimum(field, cov.T[:, :, None] if axis == 0 else cov[None, :, :])
    field = ndimage.gaussian_filter(field, SMOOTH_SIGMA, mode="constant", truncate=3.0)
    field[[0, -1], :, :] = 0.0
    field[:, [0, -1], :] = 0.0
    field[:, :, [0, -1]] = 0.0
    occupied = field > 0.5
    if not occupied.any():
        raise InputRejected(INCONSISTENT)
    # Slivers left floating where one matte missed a part (or caught a stray blob) are carving debris.
    labels, count = ndimage.label(occupied)
    if count > 1:
        sizes = np.bincount(labels.ravel())[1:]
        debris = np.flatnonzero(sizes < ISLAND_SHARE * sizes.max()) + 1
        if len(debris):
            drop = np.isin(labels, debris)
            field[drop] = 0.0
            occupied &= ~drop
    # A consistent set of views gives an object whose outline in each view is that view's silhouette.
    for axis, mask in masks:
        seen = occupied.any(axis=2).T if axis == 0 else occupied.any(axis=0)  # (ny, n_u) like the mask
        if (seen & mask).sum() < MIN_COVERAGE * max(mask.sum(), 1):
            raise InputRejected(INCONSISTENT)
    return field, grid


def polygonise(field: np.ndarray, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Marching cubes at 0.5: (vertices in world units, faces) with outward winding."""
    # Values at the iso level put several vertices on one grid point (zero-area faces): nudge them outside.
    field = field.copy()
    near = np.abs(field - 0.5) < 1e-4
    field[near] = np.float32(0.5 - 1e-4)
    verts, faces = mcubes.marching_cubes(field, 0.5)
    return verts * grid.step + grid.origin, faces.astype(np.int64)


def _fill_background(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Replace the colour of every not-quite-opaque pixel by that of nearby opaque ones (pull-push).

    Vertices on the silhouette project onto its edge, where photo pixels mix object and background.
    """
    weight = (alpha > 0.9).astype(np.float32)
    if weight.sum() < 16:
        weight = (alpha > 0.5).astype(np.float32)
    levels = []
    colour = rgb * weight[..., None]
    while True:
        levels.append((colour, weight))
        h, w = weight.shape
        if h == 1 and w == 1:
            break
        ph, pw = h % 2, w % 2
        colour = np.pad(colour, ((0, ph), (0, pw), (0, 0)))
        weight = np.pad(weight, ((0, ph), (0, pw)))
        colour = colour.reshape(colour.shape[0] // 2, 2, colour.shape[1] // 2, 2, 3).sum(axis=(1, 3))
        weight = weight.reshape(weight.shape[0] // 2, 2, weight.shape[1] // 2, 2).sum(axis=(1, 3))
    filled = levels[-1][0] / np.maximum(levels[-1][1], 1e-6)[..., None]
    for colour, weight in reversed(levels[:-1]):
        h, w = weight.shape
        coarse = np.repeat(np.repeat(filled, 2, axis=0), 2, axis=1)[:h, :w]
        mean = colour / np.maximum(weight, 1e-6)[..., None]
        t = np.clip(weight, 0.0, 1.0)[..., None]
        filled = mean * t + coarse * (1 - t)
    return filled.astype(np.float32)


def _bilinear(image: np.ndarray, col: np.ndarray, row: np.ndarray) -> np.ndarray:
    """Sample (H, W, C) at pixel-edge coordinates (pixel centres at +0.5), clamped to the image."""
    h, w = image.shape[:2]
    x = np.clip(col - 0.5, 0, w - 1)
    y = np.clip(row - 0.5, 0, h - 1)
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
    bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def _visible(occupied: np.ndarray, grid: Grid, points: np.ndarray, towards: np.ndarray) -> np.ndarray:
    """Whether each point is on the surface nearest a camera looking along -`towards` (a world axis)."""
    axis = 0 if towards[0] else 2
    sign = float(towards[axis])
    other = 2 - axis
    # Depth of the first occupied cell seen from the camera, per (other axis, y) column.
    occ = occupied.transpose(2, 1, 0) if axis == 0 else occupied  # (other, y, along the view)
    coords = grid.axes[axis] * sign
    order = np.argsort(-coords, kind="stable")  # nearest the camera first
    hit = occ[..., order]
    first = np.argmax(hit, axis=-1)
    depth = np.where(hit.any(axis=-1), coords[order][first], -np.inf)
    i, j = grid.index(points[:, other], other), grid.index(points[:, 1], 1)
    return points[:, axis] * sign >= depth[i, j] - 1.5 * grid.step


def vertex_colours(
    vertices: np.ndarray,
    normals: np.ndarray,
    views: Sequence[Silhouette],
    photos: Sequence[np.ndarray],
    occupied: np.ndarray,
    grid: Grid,
) -> np.ndarray:
    """RGB float (V, 3) in 0..1: each vertex blends the two views that best face its normal and see it.

    A view missing from the set (the back with 2 images) is stood in for by the opposite view, seen through.
    """
    n = len(views)
    candidates = [(i, view_axes(i)[0], 1.0) for i in range(n)]
    candidates += [(i, -view_axes(i)[0], 0.5) for i in range(n) if (i + 2) % 4 >= n]
    centre = vertices.mean(axis=0)
    radial = vertices - centre
    radial[:, 1] = 0.0
    radial /= np.maximum(np.linalg.norm(radial, axis=1, keepdims=True), 1e-9)
    weights, samples = [], []
    for i, towards, prior in candidates:
        facing = np.clip(normals @ towards, 0.0, None) + 0.02 * np.clip(radial @ towards, 0.0, None) + 1e-4
        seen = np.where(_visible(occupied, grid, vertices, towards), 1.0, 0.05)
        weights.append(facing * seen * prior)
        view = views[i]
        _, right = view_axes(i)
        col = (view.left + view.right) / 2 + (vertices @ right) / view.pixel_size
        row = view.bottom - vertices[:, 1] / view.pixel_size
        samples.append(_bilinear(photos[i], col, row))
    w = np.stack(weights, axis=1)
    best = np.argsort(-w, axis=1, kind="stable")[:, :2]
    picked = np.take_along_axis(w, best, axis=1)
    picked /= picked.sum(axis=1, keepdims=True)
    stacked = np.stack(samples, axis=1)  # (V, candidates, 3)
    rows = np.arange(len(vertices))
    return stacked[rows, best[:, 0]] * picked[:, :1] + stacked[rows, best[:, 1]] * picked[:, 1:]


class VisualHullRunner:
    """Runner protocol implementation; see the module docstring. `step_delay_s` slows each progress step."""

    name = "visual-hull"

    def __init__(self, cutout_model: Path | None, step_delay_s: float = 0.0) -> None:
        self.cutout_model = None if cutout_model is None else Path(cutout_model)
        self.step_delay_s = float(step_delay_s)
        # The ONNX session inside is only opened on the first picture without transparency.
        self.cutout = None if self.cutout_model is None else cutout.Cutout(self.cutout_model)

    def run(
        self,
        inputs: Mapping[str, Any],
        params: Mapping[str, Any],
        out_dir: Path,
        progress: ProgressCallback,
    ) -> RunnerArtifacts:
        images = [Path(p) for p in inputs.get("images") or ()]
        if not 1 <= len(images) <= 4:
            raise InputRejected("multi-image-to-3d takes 1 to 4 images")
        if len(images) == 1:
            from inference.runners.image_inflate import ImageInflateRunner

            return ImageInflateRunner(self.cutout_model, self.step_delay_s).run(inputs, params, out_dir, progress)
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        step = FractionProgress(progress, self.step_delay_s)
        timings: dict[str, float] = {}
        clock = time.perf_counter()

        def lap(stage: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            timings[stage] = round(now - clock, 4)
            clock = now

        views, photos = [], []
        for k, path in enumerate(images):
            rgb, alpha = cutout.foreground(cutout.load_rgba(path), self.cutout)
            view = silhouette(alpha)
            views.append(view)
            photos.append(_fill_background(np.asarray(rgb, dtype=np.float32) / 255.0, view.alpha))
            step(0.05 + 0.4 * (k + 1) / len(images))
        lap("silhouettes")

        field, grid = carve(views)
        lap("carve")
        step(0.6)
        verts, faces = polygonise(field, grid)
        mesh = trimesh.Trimesh(verts, faces, process=False)
        lap("polygonise")
        step(0.75)

        should_texture = params.get("should_texture", True) is not False
        info: dict[str, Any] = {}
        if not should_texture:
            colours = np.tile(np.array(PREVIEW_GREY, dtype=np.uint8), (len(verts), 1))
            info["texture_source"] = "none"
        else:
            photo = vertex_colours(verts, mesh.vertex_normals, views, photos, field > 0.5, grid)
            text = params.get("texture_prompt") or ""
            if text:
                seed = int(params.get("seed") or 0)
                paint, info = procedural_paint.paint(normalise(verts), prompt_words(text), seed)
                luminance = photo @ np.array([0.299, 0.587, 0.114])
                shade = 0.55 + 0.45 * luminance / max(float(luminance.mean()), 1e-3)
                rgb = np.clip(paint * shade[:, None], 0, 255)
                info["texture_source"] = "prompt"
            else:
                rgb = photo * 255
                info["texture_source"] = "photo"
            rgb = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
            colours = np.hstack([rgb, np.full((len(rgb), 1), 255, dtype=np.uint8)])
        lap("colour")
        step(0.9)

        out = trimesh.Trimesh(normalise(verts), faces, process=False)
        out.visual.vertex_colors = colours
        path = out_dir / "raw.ply"
        out.export(path, file_type="ply")
        lap("write")
        step(1.0)
        return RunnerArtifacts(
            mesh=path,
            metadata={
                "faces": int(len(faces)),
                "vertices": int(len(verts)),
                "views": [VIEW_NAMES[i] for i in range(len(views))],
                "resolution": RESOLUTION,
                "reference": "silhouette-carving",
                "timings_s": timings,
                **info,
            },
        )
