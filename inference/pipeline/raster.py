"""Vectorised triangle rasteriser in numpy, shared by the thumbnail renderer and the UV texture baker.

No OpenGL: the service must render thumbnails and bake textures on CPU-only machines. Triangles are
grouped by the size of their pixel bounding box (powers of two), and each group tests every pixel of a
fixed square stencil around each triangle in one array operation, in chunks that bound memory. Fragments
are resolved with a depth sort when depths are given (thumbnails) or by last write otherwise (UV baking,
where charts do not overlap).
"""

from __future__ import annotations

import numpy as np

# Candidate pixels tested per chunk; about 2M keeps temporaries near 100 MB.
_CHUNK_PIXELS = 2_000_000


def _round_up(span: np.ndarray) -> np.ndarray:
    # Exact stencil sizes up to 8 pixels (most triangles), powers of two above: few groups, little waste.
    pow2 = 1 << np.ceil(np.log2(np.maximum(span, 1))).astype(np.int64)
    return np.where(span <= 8, span, pow2)


def rasterize(
    tri: np.ndarray, width: int, height: int, inv_depth: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Rasterise triangles given in pixel coordinates.

    `tri` is (F, 3, 2): x to the right, y down, pixel (i, j) centred at (i + 0.5, j + 0.5); either winding.
    `inv_depth` (F, 3), if given, holds 1/depth per corner: it is linear in screen space, and the fragment
    with the largest value (the nearest) wins. Returns `face` (height, width) int32 with -1 where empty, and
    `bary` (height, width, 3) float32 screen-space barycentrics of the winning fragment.
    """
    tri = np.asarray(tri, dtype=np.float64)
    x, y = tri[..., 0], tri[..., 1]
    area = (x[:, 1] - x[:, 0]) * (y[:, 2] - y[:, 0]) - (x[:, 2] - x[:, 0]) * (y[:, 1] - y[:, 0])
    # Candidate pixel range: centres inside the bounding box.
    ix0 = np.clip(np.ceil(x.min(axis=1) - 0.5), 0, width).astype(np.int64)
    ix1 = np.clip(np.floor(x.max(axis=1) - 0.5), -1, width - 1).astype(np.int64)
    iy0 = np.clip(np.ceil(y.min(axis=1) - 0.5), 0, height).astype(np.int64)
    iy1 = np.clip(np.floor(y.max(axis=1) - 0.5), -1, height - 1).astype(np.int64)
    keep = (np.abs(area) > 1e-12) & (ix1 >= ix0) & (iy1 >= iy0)
    if inv_depth is not None:
        keep &= np.all(np.isfinite(inv_depth), axis=1)
    faces = np.nonzero(keep)[0]
    # Barycentric i is an affine function of the pixel centre: w_i = a_i * cx + b_i * cy + c_i, using the
    # edge opposite corner i divided by the signed area (so either winding works).
    j, k = [1, 2, 0], [2, 0, 1]
    inv_area = 1.0 / area[faces, None]
    xf, yf = x[faces], y[faces]
    a = ((yf[:, j] - yf[:, k]) * inv_area).astype(np.float32)
    b = ((xf[:, k] - xf[:, j]) * inv_area).astype(np.float32)
    c = (xf[:, j] * yf[:, k] - xf[:, k] * yf[:, j]) * inv_area
    # Evaluate at the first candidate pixel in float64 (large terms cancel), then step in float32.
    base = (a * (ix0[faces, None] + 0.5) + b * (iy0[faces, None] + 0.5) + c).astype(np.float32)
    sx = _round_up(ix1[faces] - ix0[faces] + 1)
    sy = _round_up(iy1[faces] - iy0[faces] + 1)
    group_key = sx * 4096 + sy
    order = np.argsort(group_key, kind="stable")
    keys, starts = np.unique(group_key[order], return_index=True)
    bounds = np.append(starts, len(order))

    pix_parts, face_parts, bary_parts, depth_parts = [], [], [], []
    for g, key in enumerate(keys):
        gx, gy = int(key // 4096), int(key % 4096)
        oy, ox = np.divmod(np.arange(gx * gy, dtype=np.int64), gx)
        oxf, oyf = ox.astype(np.float32), oy.astype(np.float32)
        members = order[bounds[g] : bounds[g + 1]]
        step = max(1, _CHUNK_PIXELS // (gx * gy))
        for start in range(0, len(members), step):
            m = members[start : start + step]
            w0 = base[m, 0, None] + a[m, 0, None] * oxf + b[m, 0, None] * oyf
            w1 = base[m, 1, None] + a[m, 1, None] * oxf + b[m, 1, None] * oyf
            w2 = 1.0 - w0 - w1
            inside = (w0 >= -1e-6) & (w1 >= -1e-6) & (w2 >= -1e-6)
            if gx > 1:
                inside &= ox <= (ix1[faces[m]] - ix0[faces[m]])[:, None]
            if gy > 1:
                inside &= oy <= (iy1[faces[m]] - iy0[faces[m]])[:, None]
            rows, cols = np.nonzero(inside)
            if len(rows) == 0:
                continue
            f = faces[m[rows]]
            pix_parts.append((iy0[f] + oy[cols]) * width + ix0[f] + ox[cols])
            face_parts.append(f)
            bary = np.stack([w0[rows, cols], w1[rows, cols], w2[rows, cols]], axis=1)
            bary_parts.append(bary)
            if inv_depth is not None:
                depth_parts.append(np.einsum("ij,ij->i", bary, inv_depth[f].astype(np.float32)))

    face_img = np.full(width * height, -1, dtype=np.int32)
    bary_img = np.zeros((width * height, 3), dtype=np.float32)
    if not pix_parts:
        return face_img.reshape(height, width), bary_img.reshape(height, width, 3)
    pix = np.concatenate(pix_parts)
    fid = np.concatenate(face_parts)
    bary = np.concatenate(bary_parts)
    if inv_depth is not None:
        # Z-buffer in two passes: the nearest 1/depth per pixel, then the fragments that reach it.
        depth = np.concatenate(depth_parts)
        zbuf = np.full(width * height, -np.inf, dtype=np.float32)
        np.maximum.at(zbuf, pix, depth)
        win = depth >= zbuf[pix]
        pix, fid, bary = pix[win], fid[win], bary[win]
    face_img[pix] = fid
    bary_img[pix] = bary
    return face_img.reshape(height, width), bary_img.reshape(height, width, 3)
