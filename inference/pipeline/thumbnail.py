"""Headless CPU thumbnails: `preview.png` (and `preview_alpha.png`) from a mesh with the numpy rasteriser.

A fixed three-quarter view from front-above (the front is +Z, as in glTF), perspective, framed tightly on
the projected mesh so any object fills the picture. Shading is Lambert from a key and a fill light plus a
sky-tinted ambient term, using the baked texture, the vertex colours, or a light clay grey for previews.
Rendering at 2x and averaging gives anti-aliased edges; it stays around 0.3 s for 30k faces.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from inference.pipeline.raster import rasterize

CLAY = np.array([0.80, 0.78, 0.75])
BACKGROUND_TOP = np.array([0.95, 0.95, 0.96])
BACKGROUND_BOTTOM = np.array([0.86, 0.86, 0.88])
AZIMUTH_DEG, ELEVATION_DEG, FOV_DEG, MARGIN = 35.0, 22.0, 30.0, 0.08


def _camera(
    vertices: np.ndarray, azimuth_deg: float = AZIMUTH_DEG, elevation_deg: float = ELEVATION_DEG
) -> tuple[np.ndarray, np.ndarray]:
    """Eye position and a (3, 3) basis with rows right, up, forward.

    Azimuth 0 looks at the front (+Z) face, 90 at the right (+X) side, 180 at the back, 270 at the left.
    """
    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    centre = (lo + hi) / 2
    radius = max(float(np.linalg.norm(hi - lo)) / 2, 1e-6)
    az, el = np.radians(azimuth_deg), np.radians(elevation_deg)
    direction = np.array([np.sin(az) * np.cos(el), np.sin(el), np.cos(az) * np.cos(el)])
    eye = centre + direction * radius / np.sin(np.radians(FOV_DEG) / 2)
    forward = -direction
    right = np.cross(forward, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    return eye, np.stack([right, up, forward])


def _sample(texture: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear lookup with trimesh's UV convention (v = 0 is the bottom row), wrapping like glTF REPEAT."""
    h, w = texture.shape[:2]
    x = (uv[:, 0] % 1.0) * w - 0.5
    y = (1.0 - uv[:, 1] % 1.0) * h - 0.5
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    x0, x1 = x0 % w, (x0 + 1) % w
    y0, y1 = y0 % h, (y0 + 1) % h
    top = texture[y0, x0] * (1 - fx) + texture[y0, x1] * fx
    bottom = texture[y1, x0] * (1 - fx) + texture[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def render(
    vertices: np.ndarray,
    faces: np.ndarray,
    normals: np.ndarray,
    *,
    colors: np.ndarray | None = None,
    uv: np.ndarray | None = None,
    texture: np.ndarray | None = None,
    size: int = 512,
    supersample: int = 2,
    closed: bool = False,
    azimuth_deg: float = AZIMUTH_DEG,
    elevation_deg: float = ELEVATION_DEG,
) -> tuple[np.ndarray, np.ndarray]:
    """Render (rgb float (size, size, 3), alpha float (size, size)) of a mesh on a transparent background.

    `normals` are per-vertex; `colors` (V, 3) floats in 0..1, or `uv` (V, 2) with `texture` (H, W, 3)
    floats; with neither the surface is clay grey. `closed` (watertight, outward winding) allows culling
    back faces, which halves the rasteriser's work. `azimuth_deg`/`elevation_deg` move the camera around the
    object (0/0 is straight at the front; the default is the three-quarter view of `preview.png`).
    """
    n = size * supersample
    eye, basis = _camera(vertices, azimuth_deg, elevation_deg)
    if closed:
        corners = vertices[faces]
        face_normal = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
        faces = faces[np.einsum("fc,fc->f", face_normal, eye - corners[:, 0]) > 0]
    cam = (vertices - eye) @ basis.T
    depth = np.maximum(cam[:, 2], 1e-6)
    sx, sy = cam[:, 0] / depth, cam[:, 1] / depth
    mid_x, mid_y = (sx.min() + sx.max()) / 2, (sy.min() + sy.max()) / 2
    scale = (1 - 2 * MARGIN) * n / max(np.ptp(sx), np.ptp(sy), 1e-9)
    pix = np.stack([(sx - mid_x) * scale + n / 2, n / 2 - (sy - mid_y) * scale], axis=1)
    inv_depth = 1.0 / depth
    face_img, bary_img = rasterize(pix[faces], n, n, inv_depth[faces])

    covered = face_img >= 0
    fid = face_img[covered]
    tri = faces[fid]
    # Perspective-correct barycentrics: weight screen-space ones by 1/depth of each corner.
    b = bary_img[covered] * inv_depth[tri].astype(np.float32)
    b /= b.sum(axis=1, keepdims=True)

    def interp(attr: np.ndarray) -> np.ndarray:
        return np.einsum("pk,pkc->pc", b, attr.astype(np.float32)[tri])

    normal = interp(normals)
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)
    to_eye = eye - interp(vertices)
    # Double-sided: open or flipped surfaces still shade as if facing the viewer.
    normal *= np.where(np.einsum("pc,pc->p", normal, to_eye) < 0, -1.0, 1.0)[:, None]
    if uv is not None and texture is not None:
        albedo = _sample(texture, interp(uv))
    elif colors is not None:
        albedo = interp(colors)
    else:
        albedo = np.broadcast_to(CLAY, normal.shape)
    right, up, forward = basis
    key = _unit(-0.45 * right + 0.75 * up - 0.5 * forward)
    fill = _unit(0.8 * right + 0.1 * up - 0.4 * forward)
    lambert = 0.75 * np.clip(normal @ key, 0, None) + 0.25 * np.clip(normal @ fill, 0, None)
    ambient = 0.22 + 0.12 * (normal[:, 1] * 0.5 + 0.5)
    shaded = albedo * (ambient + lambert)[:, None]

    rgb = np.zeros((n, n, 3), dtype=np.float32)
    rgb[covered] = np.clip(shaded, 0, 1)
    alpha = covered.astype(np.float32)
    if supersample > 1:
        rgb = rgb.reshape(size, supersample, size, supersample, 3).mean(axis=(1, 3))
        alpha = alpha.reshape(size, supersample, size, supersample).mean(axis=(1, 3))
    return rgb, alpha


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def write_view(rgb: np.ndarray, alpha: np.ndarray, out_dir: Path, name: str) -> str:
    """One opaque view on the thumbnail background (for `thumbnail_urls`)."""
    size = rgb.shape[0]
    t = np.linspace(0, 1, size)[:, None, None]
    background = BACKGROUND_TOP * (1 - t) + BACKGROUND_BOTTOM * t
    Image.fromarray(_to_u8(rgb + background * (1 - alpha[..., None])), "RGB").save(out_dir / name)
    return name


def write_thumbnails(rgb: np.ndarray, alpha: np.ndarray, out_dir: Path, with_alpha: bool) -> tuple[str, str | None]:
    """Write `preview.png` on a light gradient and, if asked, `preview_alpha.png` (RGBA). Returns names."""
    size = rgb.shape[0]
    t = np.linspace(0, 1, size)[:, None, None]
    background = BACKGROUND_TOP * (1 - t) + BACKGROUND_BOTTOM * t
    a = alpha[..., None]
    # `rgb` is coverage-weighted after supersampling (premultiplied), so compositing is a plain add.
    opaque = rgb + background * (1 - a)
    Image.fromarray(_to_u8(opaque), "RGB").save(out_dir / "preview.png", optimize=False)
    if not with_alpha:
        return "preview.png", None
    straight = np.where(a > 0, rgb / np.maximum(a, 1e-6), 0.0)
    rgba = np.concatenate([_to_u8(straight), _to_u8(alpha)[..., None]], axis=2)
    Image.fromarray(rgba, "RGBA").save(out_dir / "preview_alpha.png")
    return "preview.png", "preview_alpha.png"


def _to_u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)
