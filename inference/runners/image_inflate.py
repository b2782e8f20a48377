"""Image-to-3d CPU reference runner: background removal plus silhouette inflation, NOT a learned image-to-3D model.

It gives the image-to-3d endpoints a real, input-dependent result without GPU weights. The picture's object is cut
out (`cutout.foreground`: the picture's own alpha, else u2netp), cropped, and its silhouette is inflated into a
solid: every point inside the outline is the centre of the largest disc that fits there (its distance to the
outline), each disc becomes a ball, and the solid is the union of those balls (scaled in depth by
`DEPTH_SCALE`). A round body therefore bulges into a sphere, a thin part stays a thin tube as deep as it is wide,
and holes stay holes. The union's squared half-thickness `H = max_q(r(q)^2 - |p - q|^2)` is a separable max-plus
transform computed exactly on the pixel grid; written as `2 R d - d^2` (d: distance to the outline, R: the local
ball radius) it gives a near-distance field that marching cubes turns into a closed, watertight, outward-wound
mesh whose front view matches the mask.

Colours: the front (normal z > 0) takes the photo's colour at its (x, y); the back takes the same picture seen
through the object (the mirror image when viewed from behind), blurred, slightly desaturated and darkened, and the
two blend across the rim. Transparent or cut-away pixels are first filled from the nearest object pixel so no
background bleeds in. A `texture_prompt` paints the mesh with the procedural palette modulated by the photo's
luminance; else a `texture_image` is projected (stretched over the object's front) instead of the photo;
`should_texture` false gives the procedural runner's uniform preview grey. Output is deterministic.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mcubes
import numpy as np
import trimesh
from PIL import Image
from scipy import ndimage

from inference.runners import procedural_paint
from inference.runners.base import InputRejected, ProgressCallback, RunnerArtifacts
from inference.runners.cutout import Cutout, foreground, load_rgba
from inference.runners.procedural import PREVIEW_GREY, Steps, normalise, prompt_words

WORK_SIDE = 192  # pixels along the crop's longest side for the silhouette fields
WORK_SIDE_MAX = 640  # ...raised up to this for thin objects, so they keep a few pixels of width
COLOUR_SIDE = 512  # pixels along the crop's longest side for colour lookups
MARGIN = 0.04  # crop margin around the object, as a share of its longest side
DEPTH_SCALE = 0.9  # half-thickness = DEPTH_SCALE x the inscribed ball's radius
FACE_RANGE = (24_000, 72_000)
FACE_TARGET = 40_000
# Marching cubes gives about this many triangles per square voxel of surface; the first grid is sized with it.
FACES_PER_AREA = 2.0
SURFACE_PER_MASK_AREA = 3.4  # surface area of the inflated solid / area of the silhouette, typical
BACK_SHADE, BACK_SATURATION = 0.85, 0.8


class ImageInflateRunner:
    """Runner protocol implementation; see the module docstring. `step_delay_s` slows each of 10 steps."""

    name = "image-inflate"

    def __init__(self, cutout_model: Path | None, step_delay_s: float = 0.0) -> None:
        self.cutout = Cutout(Path(cutout_model)) if cutout_model is not None else None
        self.step_delay_s = float(step_delay_s)

    def run(
        self,
        inputs: Mapping[str, Any],
        params: Mapping[str, Any],
        out_dir: Path,
        progress: ProgressCallback,
    ) -> RunnerArtifacts:
        images = list(inputs.get("images") or [])
        if not images:
            raise ValueError("image-inflate needs inputs['images']")
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        steps = Steps(progress, self.step_delay_s)
        timings: dict[str, float] = {}

        start = time.perf_counter()
        rgb, alpha = foreground(load_rgba(Path(images[0])), self.cutout)
        fraction = float(np.mean(alpha >= 0.5))
        timings["cutout"] = time.perf_counter() - start
        steps.step(3)

        start = time.perf_counter()
        crop_rgb, crop_alpha = _crop(rgb, alpha)
        work_scale, mask = _work_mask(crop_alpha)
        signed, radius = _outline_fields(mask)
        verts, faces = _inflate(signed, radius, _voxel_step(mask))
        if not FACE_RANGE[0] <= len(faces) <= FACE_RANGE[1]:
            # Face count goes with 1 / step^2: one corrected pass lands in range.
            step = max(_voxel_step(mask) * float(np.sqrt(len(faces) / FACE_TARGET)), max(mask.shape) / 480)
            verts, faces = _inflate(signed, radius, step)
        timings["inflate"] = time.perf_counter() - start
        steps.step(7)

        start = time.perf_counter()
        mesh = trimesh.Trimesh(verts, faces, process=False)
        normals = np.asarray(mesh.vertex_normals)
        # Vertices are in work pixels (x = column, y = -row); picture pixels for the colour lookups.
        pixels = (np.stack([verts[:, 0], -verts[:, 1]], axis=1) + 0.5) / work_scale - 0.5
        unit = normalise(verts)
        colours, source = self._colours(inputs, params, crop_rgb, crop_alpha, pixels, normals, unit)
        timings["colour"] = time.perf_counter() - start
        steps.step(9)

        out = trimesh.Trimesh(unit, faces, vertex_colors=colours, process=False)
        path = out_dir / "raw.ply"
        out.export(path, file_type="ply")
        steps.step()
        return RunnerArtifacts(
            mesh=path,
            metadata={
                "faces": int(len(faces)),
                "vertices": int(len(unit)),
                "foreground_fraction": round(fraction, 5),
                "timings_s": {k: round(v, 4) for k, v in timings.items()},
                "texture_source": source,
                "model_type": params.get("model_type") or "standard",
                "reference": "silhouette-inflation",
            },
        )

    def _colours(
        self,
        inputs: Mapping[str, Any],
        params: Mapping[str, Any],
        crop_rgb: np.ndarray,
        crop_alpha: np.ndarray,
        pixels: np.ndarray,
        normals: np.ndarray,
        unit: np.ndarray,
    ) -> tuple[np.ndarray, str]:
        """RGBA uint8 per vertex and which source coloured it ("photo", "prompt", "image" or "none")."""
        if params.get("should_texture", True) is False:
            return np.tile(np.array(PREVIEW_GREY, dtype=np.uint8), (len(unit), 1)), "none"
        texture_prompt = params.get("texture_prompt")
        texture_image = inputs.get("texture_image")
        if texture_image is not None and not texture_prompt:
            picture = load_rgba(Path(texture_image), work_side=COLOUR_SIDE)[..., :3].astype(np.float32)
            lo, hi = pixels.min(axis=0), pixels.max(axis=0)
            size = np.array(picture.shape[1::-1], dtype=np.float64)
            where = (pixels - lo) / np.maximum(hi - lo, 1e-9) * (size - 1)
            rgb = _front_and_back(picture, where, normals)
            source = "image"
        else:
            scale = COLOUR_SIDE / max(crop_alpha.shape)
            picture = _fill_background(_resize(crop_rgb.astype(np.float32), scale), _resize(crop_alpha, scale))
            rgb = _front_and_back(picture, (pixels + 0.5) * scale - 0.5, normals)
            source = "photo"
            if texture_prompt:
                painted, _info = procedural_paint.paint(
                    unit, prompt_words(texture_prompt), int(params.get("seed") or 0)
                )
                luminance = rgb @ np.array([0.299, 0.587, 0.114])
                relative = luminance / max(float(luminance.mean()), 1.0)
                rgb = painted.astype(np.float32) * np.clip(0.55 + 0.45 * relative, 0.35, 1.25)[:, None]
                source = "prompt"
        rgba = np.empty((len(rgb), 4), dtype=np.uint8)
        rgba[:, :3] = np.clip(np.rint(rgb), 0, 255)
        rgba[:, 3] = 255
        return rgba, source


def _crop(rgb: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The object's bounding box plus a margin; beyond the picture's edge alpha is 0 and colours repeat."""
    rows = np.flatnonzero((alpha >= 0.5).any(axis=1))
    cols = np.flatnonzero((alpha >= 0.5).any(axis=0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    pad = max(3, int(np.ceil(MARGIN * max(r1 - r0, c1 - c0))))
    height, width = alpha.shape
    lo_r, hi_r, lo_c, hi_c = r0 - pad, r1 + pad, c0 - pad, c1 + pad
    inner = (slice(max(lo_r, 0), min(hi_r, height)), slice(max(lo_c, 0), min(hi_c, width)))
    widths = ((max(-lo_r, 0), max(hi_r - height, 0)), (max(-lo_c, 0), max(hi_c - width, 0)))
    crop_alpha = np.pad(alpha[inner], widths, constant_values=0.0)
    crop_rgb = np.pad(rgb[inner], (*widths, (0, 0)), mode="edge")
    # Pixels on the picture's edge: the object is cut there, so close it one pixel further out.
    crop_alpha[[0, -1], :] = 0.0
    crop_alpha[:, [0, -1]] = 0.0
    return crop_rgb, crop_alpha


def _resize(array: np.ndarray, scale: float) -> np.ndarray:
    """Antialiased bilinear resize of a float HxW or HxWxC array by `scale` (PIL, per channel)."""
    height, width = array.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if array.ndim == 2:
        image = Image.fromarray(array.astype(np.float32), "F")
        return np.asarray(image.resize(size, Image.Resampling.BILINEAR), dtype=np.float32)
    channels = [_resize(array[..., c], scale) for c in range(array.shape[2])]
    return np.stack(channels, axis=2)


def _work_mask(alpha: np.ndarray) -> tuple[float, np.ndarray]:
    """(scale, mask) of the crop at the working resolution; finer when the object is only a few pixels wide."""
    scale = WORK_SIDE / max(alpha.shape)
    mask = _clean(_resize(alpha, scale) >= 0.5)
    width = 2 * float(ndimage.distance_transform_edt(mask).max())
    if width < 8 and scale < WORK_SIDE_MAX / max(alpha.shape):
        scale = min(scale * 8 / max(width, 1.0), WORK_SIDE_MAX / max(alpha.shape))
        mask = _clean(_resize(alpha, scale) >= 0.5)
    if not mask.any():
        raise InputRejected("the object in the image is too thin or too small to build a 3D model from")
    return scale, mask


def _clean(mask: np.ndarray) -> np.ndarray:
    """Drop specks (tiny islands far smaller than the object) and fill pinholes of a pixel or two."""
    labels, count = ndimage.label(mask)
    if count > 1:
        areas = np.bincount(labels.ravel())[1:]
        keep = np.flatnonzero(areas >= max(6, 0.003 * areas.max())) + 1
        mask = np.isin(labels, keep)
    holes, count = ndimage.label(~mask)
    if count > 1:
        areas = np.bincount(holes.ravel())
        small = np.flatnonzero(areas <= 2)
        small = small[small > 0]
        mask = mask | np.isin(holes, small)
    return mask


def _outline_fields(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(d, R) on the pixel grid: signed distance to the outline (positive inside) and the local ball radius.

    R(p) is the radius of the largest inscribed ball (a disc of the silhouette, centred at q with radius r(q),
    the distance from q to the outline) that covers p. H(p) = max_q r(q)^2 - |p - q|^2 is that union's squared
    half-thickness; H = 2 R d - d^2 for the owning ball, which gives R. The max-plus transform with a quadratic
    kernel is separable (rows, then columns), each pass a small dense broadcast. R is carried past the outline
    from the nearest inside pixel, so `2 R d - d^2` stays linear across it (see `_inflate`).
    """
    inside = ndimage.distance_transform_edt(mask) - 0.5
    outside = ndimage.distance_transform_edt(~mask) - 0.5
    # Zero halfway between inside and outside pixel centres, lightly smoothed so the pixel staircase does not
    # show as ridges on the surface.
    signed = ndimage.gaussian_filter(np.where(mask, inside, -outside), 0.8).astype(np.float32)
    radius = np.maximum(signed, 0.0)
    seed = np.where(signed > 0, radius * radius, -1e6).astype(np.float32)
    heights = _max_plus_rows(_max_plus_rows(seed.T).T)
    core = signed >= 0.35
    if not core.any():
        core = signed >= signed.max()
    local = np.zeros_like(signed)
    local[core] = (heights[core] + signed[core] ** 2) / (2.0 * signed[core])
    _far, (near_rows, near_cols) = ndimage.distance_transform_edt(~core, return_indices=True)
    # Smoothing R rounds the creases a max of paraboloids has where the owning ball changes pixel to pixel.
    return signed, ndimage.gaussian_filter(local[near_rows, near_cols], 1.0)


def _max_plus_rows(values: np.ndarray) -> np.ndarray:
    """out[y, p] = max_q values[y, q] - (p - q)^2, in row chunks to bound memory."""
    n = values.shape[1]
    offsets = np.arange(n, dtype=np.float32)
    kernel = (offsets[:, None] - offsets[None, :]) ** 2  # (p, q)
    out = np.empty_like(values)
    chunk = max(1, 4_000_000 // (n * n))
    for start in range(0, values.shape[0], chunk):
        block = values[start : start + chunk]
        out[start : start + chunk] = (block[:, None, :] - kernel[None]).max(axis=2)
    return out


def _voxel_step(mask: np.ndarray) -> float:
    """Voxel size (work pixels) for which marching cubes should give about FACE_TARGET faces."""
    surface = SURFACE_PER_MASK_AREA * float(mask.sum())
    finest = max(0.5, max(mask.shape) / 320)  # bounds the grid for large thin crops
    return float(np.clip(np.sqrt(FACES_PER_AREA * surface / FACE_TARGET), finest, 4.0))


def _inflate(signed: np.ndarray, radius: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Polygonise the inflated solid `z^2 / k^2 <= 2 R d - d^2` (k = DEPTH_SCALE) on a grid of `step` pixels.

    The field `d - d^2 / 2R - z^2 / 2 R k^2` is close to a distance both at the rim (where it is about d, linear
    across the outline, so marching cubes puts the rim on the outline without bias) and on the caps. Returns
    vertices in work pixels (x = column, y = -row, z towards the viewer) and outward-wound faces.
    """
    rows, cols = signed.shape
    pad = 2 * step
    xs = np.arange(-pad, cols - 1 + pad + step, step)
    ys = np.arange(-pad, rows - 1 + pad + step, step)  # picture rows; world y is -row
    grid_cols, grid_rows = np.meshgrid(xs, ys, indexing="ij")
    where = [grid_rows.ravel(), grid_cols.ravel()]

    def plane(values: np.ndarray) -> np.ndarray:
        sampled = ndimage.map_coordinates(values, where, order=1, mode="nearest")
        return sampled.reshape(len(xs), len(ys))[:, ::-1].astype(np.float32)  # (x, y) with world y going up

    d, r = plane(signed), np.maximum(plane(radius), 0.5)
    flat = d - d * d / (2 * r)  # H / 2R, with H the squared half-thickness
    depth = DEPTH_SCALE * float(np.sqrt(max(float((2 * r * flat).max()), 1.0)))
    zs = np.arange(-(depth + pad), depth + pad + step, step)
    zs -= (zs[0] + zs[-1]) / 2  # symmetric about z = 0
    z2 = (zs * zs / (2 * DEPTH_SCALE**2)).astype(np.float32)
    field = flat[:, :, None] - z2[None, None, :] / r[:, :, None]  # positive inside
    # Exact zeros put several vertices on one grid point (degenerate triangles): nudge them outside.
    field[np.abs(field) < 1e-4] = -1e-4
    field[[0, -1], :, :] = -1.0
    field[:, [0, -1], :] = -1.0
    field[:, :, [0, -1]] = -1.0
    verts, faces = mcubes.marching_cubes(field, 0.0)
    verts = verts * step + np.array([xs[0], -ys[-1], zs[0]])
    return verts, faces.astype(np.int64)


def _fill_background(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Replace colours of pixels that are not clearly object by the nearest clearly-object pixel's colour."""
    solid = alpha >= 0.75
    if not solid.any():
        solid = alpha >= 0.5
    if not solid.any():
        return rgb
    _dist, (near_r, near_c) = ndimage.distance_transform_edt(~solid, return_indices=True)
    return rgb[near_r, near_c]


def _front_and_back(picture: np.ndarray, where: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """Float RGB per vertex: `picture` at `where` (x, y pixels) on the front, a blurred, duller copy behind."""
    blur = max(1.0, 0.015 * max(picture.shape[:2]))
    back_picture = np.stack([ndimage.gaussian_filter(picture[..., c], blur) for c in range(3)], axis=2)
    grey = back_picture.mean(axis=2, keepdims=True)
    back_picture = (grey + (back_picture - grey) * BACK_SATURATION) * BACK_SHADE
    front = _bilinear(picture, where)
    back = _bilinear(back_picture, where)
    t = np.clip((normals[:, 2] + 0.3) / 0.6, 0.0, 1.0)
    t = (t * t * (3 - 2 * t))[:, None]
    return back * (1 - t) + front * t


def _bilinear(picture: np.ndarray, where: np.ndarray) -> np.ndarray:
    height, width = picture.shape[:2]
    x = np.clip(where[:, 0], 0, width - 1)
    y = np.clip(where[:, 1], 0, height - 1)
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    x1, y1 = np.minimum(x0 + 1, width - 1), np.minimum(y0 + 1, height - 1)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    top = picture[y0, x0] * (1 - fx) + picture[y0, x1] * fx
    bottom = picture[y1, x0] * (1 - fx) + picture[y1, x1] * fx
    return top * (1 - fy) + bottom * fy
