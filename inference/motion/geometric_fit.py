"""A skeleton fit from the shape alone, for figures BlazePose cannot read (boxes, robots, faceless low-poly models).

The placed mesh (metres, soles at y = 0, facing +Z) is rasterised from the front into a binary silhouette plus the
nearest (front) and farthest (back) surface depth per pixel. The figure is then taken apart with plain geometry:

1. **legs**: the two widest runs of the silhouette at shin height, followed row by row (the run that overlaps the
   previous one) up until they join, the crotch, and down to the floor. Each leg's medial line is its runs' centres.
2. **torso and arms**: above the crotch, the silhouette is opened (eroded, then dilated) with a disk of half the
   torso's inscribed radius; what stays is the trunk, the thin parts it drops are the limbs. The arm on each side is
   the dropped component reaching farthest out; its axis is the principal direction of its part away from the trunk,
   its tip the farthest pixel along that axis. Walking the axis inwards, the shoulder is the first column where the
   silhouette's vertical run through the axis is much longer than the arm's own (the arm enters the trunk). Where no
   arms are held out, arms hanging down (I-pose) are looked for as the longest vertical band of runs beside the trunk
   (and beside the legs lower down) with a gap between: fingertip at its bottom, shoulder up its column, 0.6 arm
   widths under the top of the silhouette there. Arms flush against the body are not guessed at: the message asks
   for a T-pose or A-pose.
3. **head**: the part of the central column above the shoulders, past the rows the arms widen.
4. **joints**: elbow and wrist at 43 % and 79 % from shoulder to fingertip, the hip joint at the crotch height over
   each leg's medial line, the ankle at the top of the foot (where the leg's forward extent drops back from the toes),
   the knee half-way, the spine interpolated from the hips to the neck, the head joint a quarter up the head. Each
   joint's depth is the middle of the front and back surfaces there.

A plausibility gate (two legs standing on the floor with a crotch between them, a trunk, two arms of similar length
and angle between level and steeply down, a head above the shoulders, sensible proportions) turns chairs, tables,
teapots and boxes away with `PoseEstimationFailed` ("no humanoid shape found (...)"). T- and A-poses with straight
limbs (and I-poses with a gap between arm and body) are what it reads; bent elbows or knees get proportional joints
along the straight line.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh
from scipy import ndimage

from inference.motion.pose import PoseEstimationFailed
from inference.motion.skeleton import BONE_COUNT, INDEX, Skeleton
from inference.pipeline.raster import rasterize

__all__ = ["GeometricFitFailed", "Silhouette", "fit_geometric", "silhouette"]

ROWS = 480  # silhouette rows over the figure's height (about 3.6 mm at 1.75 m)
ELBOW_AT, WRIST_AT = 0.43, 0.79  # along shoulder -> fingertip
HEAD_JOINT_AT = 0.27  # of the head's height above its base
ARM_ENTRY_RATIO = 2.2  # a vertical run this many times the arm's own marks the trunk
MAX_HELD_OUT_ANGLE = 66.0  # degrees below level an arm held out from the body may point


class GeometricFitFailed(PoseEstimationFailed):
    """The shape is not a readable standing humanoid; the message says what is missing."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"no humanoid shape found ({reason})")


@dataclass(frozen=True)
class Silhouette:
    """The front view as arrays with row 0 at the bottom: pixel (r, c) is centred at (x0 + (c + .5) px,
    y0 + (r + .5) px)."""

    mask: np.ndarray  # (rows, cols) bool
    z_mid: np.ndarray  # (rows, cols) middle of the front and back surface, NaN off the figure
    z_front: np.ndarray  # (rows, cols) front surface z, NaN off the figure
    x0: float
    y0: float
    px: float

    def x(self, col: np.ndarray | float) -> np.ndarray:
        return self.x0 + (np.asarray(col, dtype=np.float64) + 0.5) * self.px

    def y(self, row: np.ndarray | float) -> np.ndarray:
        return self.y0 + (np.asarray(row, dtype=np.float64) + 0.5) * self.px

    def col(self, x: np.ndarray | float) -> np.ndarray:
        return np.clip(np.floor((np.asarray(x) - self.x0) / self.px), 0, self.mask.shape[1] - 1).astype(np.int64)

    def row(self, y: np.ndarray | float) -> np.ndarray:
        return np.clip(np.floor((np.asarray(y) - self.y0) / self.px), 0, self.mask.shape[0] - 1).astype(np.int64)


def silhouette(mesh: trimesh.Trimesh, rows: int = ROWS) -> Silhouette:
    """Rasterise the mesh orthographically along -Z: occupancy, front z and the front/back middle z per pixel."""
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    px = float(hi[1] - lo[1]) / rows
    x0, y0 = float(lo[0]) - 2 * px, float(lo[1]) - 2 * px
    width, height = int(np.ceil((hi[0] - lo[0]) / px)) + 4, rows + 4
    xy = np.c_[(vertices[:, 0] - x0) / px, height - (vertices[:, 1] - y0) / px]
    tri = xy[faces]
    z = vertices[:, 2]
    depth = []
    for inv_depth in (z - lo[2] + 1.0, hi[2] - z + 1.0):  # nearest-wins: the front surface, then the back one
        face, bary = rasterize(tri, width, height, inv_depth=inv_depth[faces])
        hit = face >= 0
        d = np.full(face.shape, np.nan)
        d[hit] = np.einsum("ij,ij->i", bary[hit].astype(np.float64), z[faces[face[hit]]])
        depth.append(d[::-1])
    mask = np.isfinite(depth[0])
    return Silhouette(mask, (depth[0] + depth[1]) / 2, depth[0], x0, y0, px)


def _row_runs(mask: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per row, the (starts, ends) of its occupied runs (end exclusive)."""
    d = np.diff(np.pad(mask, ((0, 0), (1, 1))).astype(np.int8), axis=1)
    sr, sc = np.nonzero(d == 1)
    _, ec = np.nonzero(d == -1)
    split = np.searchsorted(sr, np.arange(1, mask.shape[0]))
    return list(zip(np.split(sc, split), np.split(ec, split), strict=True))


def _overlapping(runs: tuple[np.ndarray, np.ndarray], start: int, end: int) -> int:
    """The index of the run overlapping [start, end) the most, or -1."""
    s, e = runs
    if len(s) == 0:
        return -1
    overlap = np.minimum(e, end) - np.maximum(s, start)
    j = int(np.argmax(overlap))
    return j if overlap[j] > 0 else -1


def _track_legs(sil: Silhouette, runs: list, height: float) -> tuple[int, list[dict[int, tuple[int, int]]]]:
    """The two widest runs at shin height, followed upwards until they join (the crotch) and down to the floor (feet
    may overlap there, turned out or seen a little from the side). Returns (crotch row, per leg {row: (start, end)})."""
    seed_row = int(sil.row(0.15 * height))
    s, e = runs[seed_row]
    if len(s) < 2:
        raise GeometricFitFailed("it does not stand on two separate legs")
    widest = np.sort(np.argsort(s - e)[:2])  # left to right in the image
    seeds = [(int(s[i]), int(e[i])) for i in widest]
    tracks: list[dict[int, tuple[int, int]]] = [{seed_row: seeds[0]}, {seed_row: seeds[1]}]
    legs, crotch = list(seeds), -1
    for r in range(seed_row + 1, sil.mask.shape[0]):
        picks = [_overlapping(runs[r], a, b) for a, b in legs]
        if picks[0] >= 0 and picks[0] == picks[1]:
            crotch = r
            break
        if min(picks) < 0:
            raise GeometricFitFailed("a leg ends before it joins the body")
        legs = [(int(runs[r][0][j]), int(runs[r][1][j])) for j in picks]
        for track, leg in zip(tracks, legs, strict=True):
            track[r] = leg
    if crotch < 0:
        raise GeometricFitFailed("the legs never join into a body")
    legs = list(seeds)
    for r in range(seed_row - 1, -1, -1):
        picks = [_overlapping(runs[r], a, b) for a, b in legs]
        if min(picks) < 0:
            break
        legs = [(int(runs[r][0][j]), int(runs[r][1][j])) for j in picks]
        for track, leg in zip(tracks, legs, strict=True):
            track[r] = leg
    if max(sil.y(min(t)) for t in tracks) > 0.03 * height:
        raise GeometricFitFailed("it does not stand on two legs reaching the floor")
    return crotch, tracks


def _track_centre(sil: Silhouette, runs: list, start_row: int, start: tuple[int, int], gap: int, axis: float) -> dict:
    """The central run from the crotch upwards: {row: (start, end)}. The run across the body's axis (a column) is
    taken where there is one, else the run overlapping the previous one nearest the axis (shoulders, a neck off the
    axis); empty rows (a floating head) are bridged up to `gap` rows."""
    out = {start_row: start}
    current, r = start, start_row + 1
    while r < sil.mask.shape[0]:
        for k in range(r, min(r + gap + 1, sil.mask.shape[0])):
            s, e = runs[k]
            across = np.nonzero((s <= axis) & (axis < e))[0]
            overlap = np.minimum(e, current[1]) - np.maximum(s, current[0])
            ok = across if len(across) else np.nonzero(overlap > 0)[0]
            if len(ok):
                j = ok[np.argmin(np.abs((s[ok] + e[ok]) / 2 - axis))]
                current = (int(s[j]), int(e[j]))
                out[k] = current
                r = k + 1
                break
        else:
            break
    return out


@dataclass(frozen=True)
class _Arm:
    shoulder: np.ndarray  # world (x, y)
    tip: np.ndarray
    angle_deg: float  # below horizontal
    length: float


def _arm(
    sil: Silhouette, component: np.ndarray, core_distance: np.ndarray, side: float, mid_x: float, height: float
) -> _Arm:
    """The straight arm in `component` (bool image): axis, tip and the shoulder where it enters the trunk."""
    rows, cols = np.nonzero(component)
    free = core_distance[rows, cols] > 0.04 * height / sil.px
    if free.sum() < 10:
        raise GeometricFitFailed("the arms are too short")
    pts = np.c_[sil.x(cols), sil.y(rows)]
    centre = pts[free].mean(axis=0)
    _, _, vt = np.linalg.svd(pts[free] - centre, full_matrices=False)
    d = vt[0] * (1.0 if vt[0][0] * side > 0 else -1.0)
    if abs(d[0]) < 0.4:  # steeper than ~66 degrees: the column walk below cannot separate arm and trunk
        raise GeometricFitFailed("the arms are not held out from the body")
    tip = centre + d * float(((pts - centre) @ d).max())
    # Vertical run length of every pixel; the arm's own is its typical run over the free part.
    m = sil.mask.T
    starts = m & ~np.pad(m, ((0, 0), (1, 0)))[:, :-1]
    run_id = np.cumsum(starts.ravel()).reshape(m.shape) * m
    run_len = np.bincount(run_id.ravel())
    run_len[0] = 0
    arm_run = float(np.median(run_len[run_id[cols[free], rows[free]]]))
    # Walk the axis inwards from the free part's centre, column by column.
    c_from, c_to = int(sil.col(centre[0])), int(sil.col(mid_x))
    step = -1 if side > 0 else 1
    walk = np.arange(c_from, c_to, step)
    if len(walk) == 0:
        raise GeometricFitFailed("the arms are not beside the trunk")
    ys = centre[1] + (sil.x(walk) - centre[0]) * d[1] / d[0]
    r_axis = sil.row(ys)
    reach = max(1, int(0.5 * arm_run))
    window = np.clip(r_axis[:, None] + np.arange(-reach, reach + 1)[None], 0, sil.mask.shape[0] - 1)
    lengths = run_len[run_id[walk[:, None], window]].max(axis=1)
    entered = np.nonzero(lengths > ARM_ENTRY_RATIO * arm_run)[0]
    if len(entered) == 0:
        raise GeometricFitFailed("the arms do not join a trunk")
    k = int(entered[0])
    shoulder = np.array([float(sil.x(walk[k])) + 0.5 * sil.px * side, float(ys[k])])
    length = float(np.linalg.norm(tip - shoulder))
    return _Arm(shoulder, tip, float(np.degrees(np.arctan2(-d[1], abs(d[0])))), length)


def _held_out_arms(
    sil: Silhouette, core: np.ndarray, loose: np.ndarray, mid_x: float, height: float
) -> tuple[_Arm, _Arm]:
    """The (left, right) arms held out from the trunk (T- or A-pose): the thin parts the opening dropped."""
    core_distance = ndimage.distance_transform_edt(~core)
    labels, count = ndimage.label(loose, structure=np.ones((3, 3)))
    if count == 0:
        raise GeometricFitFailed("it has no arms")
    index = np.arange(1, count + 1)
    core_cols = np.nonzero(core.any(axis=0))[0]
    core_half = max(abs(float(sil.x(core_cols[0])) - mid_x), abs(float(sil.x(core_cols[-1])) - mid_x))
    lab_rows, lab_cols = np.nonzero(labels)
    lab = labels[lab_rows, lab_cols]
    offset = sil.x(lab_cols) - mid_x
    centroid = ndimage.mean(offset, lab, index)
    reach_out = ndimage.maximum(offset, lab, index)
    reach_in = -ndimage.minimum(offset, lab, index)
    arms: dict[str, _Arm] = {}
    for name, side, reach in (("Left", 1.0, reach_out), ("Right", -1.0, reach_in)):
        candidates = np.nonzero((centroid * side > 0) & (reach > core_half + 0.1 * height))[0]
        if len(candidates) == 0:
            raise GeometricFitFailed(f"it has no {name.lower()} arm held out from the body")
        best = index[candidates[np.argmax(reach[candidates])]]
        arms[name] = _arm(sil, labels == best, core_distance, side, mid_x, height)
    return arms["Left"], arms["Right"]


def _hanging_arm(
    sil: Silhouette,
    runs: list,
    centre: dict[int, tuple[int, int]],
    tracks: list[dict[int, tuple[int, int]]],
    crotch_row: int,
    side: float,
    height: float,
) -> _Arm:
    """An arm hanging down beside the body (I-pose), told apart from it by a gap in the silhouette: per row, the run
    nearest the body on that side (beside the trunk's run above the crotch, beside the legs below it), chained into
    bands of overlapping runs; the longest band is the free part of the arm. Its fingertip is the band's bottom; the
    shoulder is up the arm's column, 0.6 arm widths below the top of the silhouette there."""
    px = sil.px
    beside: dict[int, tuple[int, int]] = {}
    for r in range(sil.mask.shape[0]):
        if r in centre:
            inner = centre[r]
        elif r < crotch_row and all(r in t for t in tracks):
            inner = (min(t[r][0] for t in tracks), max(t[r][1] for t in tracks))
        else:
            continue
        s, e = runs[r]
        ok = np.nonzero(s >= inner[1])[0] if side > 0 else np.nonzero(e <= inner[0])[0]
        if len(ok):
            j = ok[np.argmin(s[ok] - inner[1])] if side > 0 else ok[np.argmax(e[ok])]
            beside[r] = (int(s[j]), int(e[j]))
    bands: list[list[int]] = []
    for r in sorted(beside):
        last = bands[-1][-1] if bands else None
        if last == r - 1 and min(beside[r][1], beside[last][1]) > max(beside[r][0], beside[last][0]):
            bands[-1].append(r)
        else:
            bands.append([r])
    band = max(bands, key=len, default=[])
    if len(band) * px < 0.12 * height:
        raise GeometricFitFailed("arms not found apart from the body")
    bottom, top = band[0], band[-1]
    crotch_y = float(sil.y(crotch_row))
    if sil.y(top) < crotch_y + 0.1 * height:
        raise GeometricFitFailed("arms not found apart from the body")
    widths = np.array([beside[r][1] - beside[r][0] for r in band]) * px
    width = float(np.median(widths))
    if not 0.015 * height <= width <= 0.15 * height:
        raise GeometricFitFailed("the arms are not of an arm's width")
    centres = np.array([(beside[r][0] + beside[r][1]) / 2 for r in band])
    quarter = max(1, len(band) // 4)
    top_x = float(sil.x(np.median(centres[-quarter:])))
    tip_x = float(sil.x(np.median(centres[: max(1, len(band) // 10)])))
    column = int(sil.col(top_x))
    r = top
    while r + 1 < sil.mask.shape[0] and sil.mask[r + 1, column]:
        r += 1
    top_y = float(sil.y(r)) + 0.5 * px
    if top_y - float(sil.y(top)) > 0.25 * height:
        raise GeometricFitFailed("the arms do not end at shoulders")
    shoulder = np.array([top_x, top_y - 0.6 * width])
    tip = np.array([tip_x, float(sil.y(bottom)) - 0.5 * px])
    d = tip - shoulder
    length = float(np.linalg.norm(d))
    return _Arm(shoulder, tip, float(np.degrees(np.arctan2(-d[1], abs(d[0])))), length)


def _depth_sampler(sil: Silhouette):  # type: ignore[no-untyped-def]
    """z at world (x, y): the median front/back middle in a 5x5 window, or at the nearest pixel on the figure."""
    _, (near_r, near_c) = ndimage.distance_transform_edt(~sil.mask, return_indices=True)

    def z_at(x: float, y: float) -> float:
        r, c = int(sil.row(y)), int(sil.col(x))
        r, c = int(near_r[r, c]), int(near_c[r, c])
        patch = sil.z_mid[max(r - 2, 0) : r + 3, max(c - 2, 0) : c + 3]
        return float(np.nanmedian(patch))

    return z_at


def _ankle_height(sil: Silhouette, track: dict[int, tuple[int, int]], height: float) -> float:
    """Top of the foot: the highest low row where the leg's forward extent is still out with the toes'."""
    rows = np.array(sorted(track))
    front = np.array([np.nanmax(sil.z_front[r, track[r][0] : track[r][1]]) for r in rows])
    y = sil.y(rows)
    shin = (y > 0.12 * height) & (y < 0.3 * height)
    low = y < 0.12 * height
    default = 0.045 * height
    if not shin.any() or not low.any():
        return default
    shin_front, toe_front = float(np.median(front[shin])), float(front[low].max())
    if toe_front - shin_front < 0.03 * height:
        return default
    foot = low & (front > shin_front + 0.5 * (toe_front - shin_front))
    return float(np.clip(1.1 * (y[foot].max() + 0.5 * sil.px), 0.02 * height, 0.09 * height))


def fit_geometric(mesh: trimesh.Trimesh, symmetric: bool | None = None) -> tuple[Skeleton, dict]:
    """The 24 joints of a placed standing humanoid (soles at 0, facing +Z) from its shape; also fit statistics.

    Raises `PoseEstimationFailed` ("no humanoid shape found (...)") when the shape is not a standing figure with
    two legs, a trunk, two arms held out and a head."""
    from inference.motion.rigging import complete_skeleton  # rigging imports this module

    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    height = float(np.ptp(vertices[:, 1]))
    sil = silhouette(mesh)
    px = sil.px
    runs = _row_runs(sil.mask)

    # 1. legs and crotch
    crotch_row, tracks = _track_legs(sil, runs, height)
    crotch_y = float(sil.y(crotch_row))
    if not 0.2 * height < crotch_y < 0.7 * height:
        raise GeometricFitFailed(f"the legs reach {crotch_y / height:.0%} of its height, not about half")
    leg_rows = [np.array(sorted(t)) for t in tracks]
    leg_centre = [{r: (t[r][0] + t[r][1]) / 2 for r in t} for t in tracks]
    leg_width = [np.median([t[r][1] - t[r][0] for r in t]) * px for t in tracks]
    if max(leg_width) > 0.3 * height or max(leg_width) > 2.5 * min(leg_width):
        raise GeometricFitFailed("the legs are too wide or unlike each other")
    j = _overlapping(runs[crotch_row], tracks[0][leg_rows[0][-1]][0], tracks[1][leg_rows[1][-1]][1])
    merged = (int(runs[crotch_row][0][j]), int(runs[crotch_row][1][j]))
    top_leg = [rows[rows >= crotch_row - max(2, int(0.05 * height / px))] for rows in leg_rows]
    hip_x = [float(sil.x(np.mean([leg_centre[i][r] for r in top_leg[i]]))) for i in range(2)]
    mid_x = (hip_x[0] + hip_x[1]) / 2

    # 2. trunk and arms
    centre = _track_centre(sil, runs, crotch_row, merged, max(1, int(0.03 * height / px)), float(sil.col(mid_x)))
    top_row = max(centre)
    if sil.y(top_row) - crotch_y < 0.3 * height:
        raise GeometricFitFailed("there is no body above the legs")
    legs_mask = np.zeros_like(sil.mask)
    for t in tracks:
        for r, (a, b) in t.items():
            legs_mask[r, a:b] = True
    body = sil.mask & ~legs_mask
    body[:crotch_row] = False
    inside = ndimage.distance_transform_edt(body)
    radius = 0.5 * float(inside.max())
    core = ndimage.distance_transform_edt(~(inside > radius)) <= radius
    core &= body
    loose = sil.mask & ~core & ~legs_mask
    try:
        left, right = _held_out_arms(sil, core, loose, mid_x, height)
        max_angle = MAX_HELD_OUT_ANGLE
    except GeometricFitFailed as held_out_failure:
        try:
            left, right = (_hanging_arm(sil, runs, centre, tracks, crotch_row, side, height) for side in (1.0, -1.0))
        except GeometricFitFailed:
            raise GeometricFitFailed(
                f"{held_out_failure.reason}, and no arms hanging apart from the body either; "
                "rig a character in a T-pose or A-pose"
            ) from held_out_failure
        max_angle = 90.0
    for arm in (left, right):
        if not -30.0 <= arm.angle_deg <= max_angle:
            raise GeometricFitFailed("the arms are not held between level and down at the sides")
        if not 0.15 * height <= arm.length <= 0.75 * height:
            raise GeometricFitFailed("the arms are not of a body's length")
        if arm.shoulder[1] < crotch_y + 0.15 * height:
            raise GeometricFitFailed("the arms do not start at shoulders above the hips")
    if abs(left.angle_deg - right.angle_deg) > 25.0 or max(left.length, right.length) > 1.5 * min(
        left.length, right.length
    ):
        raise GeometricFitFailed("the arms are not alike")

    # 3. head: the central column above the shoulders, past the rows the arms widen
    shoulder_y = max(left.shoulder[1], right.shoulder[1])
    torso_width = abs(left.shoulder[0] - right.shoulder[0])
    head_rows = [r for r in sorted(centre) if sil.y(r) > shoulder_y]
    narrow = [r for r in head_rows if (centre[r][1] - centre[r][0]) * px <= 1.2 * torso_width]
    if not narrow:
        raise GeometricFitFailed("it has no head above the shoulders")
    top_y = float(sil.y(top_row)) + 0.5 * px
    head_base = max(float(sil.y(narrow[0])), shoulder_y + 0.03 * height)
    head_widths = [(centre[r][1] - centre[r][0]) * px for r in head_rows if sil.y(r) >= head_base]
    head_width = max(head_widths, default=0.0)
    if not 0.05 * height <= top_y - head_base <= 0.45 * height:
        raise GeometricFitFailed("it has no head of a plausible size above the shoulders")
    if not 0.15 * torso_width <= head_width <= 1.15 * torso_width:
        raise GeometricFitFailed("the part above the shoulders is not head-shaped")

    # 4. joints
    z_at = _depth_sampler(sil)
    p = np.zeros((BONE_COUNT, 3))

    def put(name: str, x: float, y: float) -> None:
        p[INDEX[name]] = [x, y, z_at(x, y)]

    hip_y = crotch_y + 0.005 * height
    # track 0 is the image's left leg: the character's right (the figure faces the camera)
    for name, arm in (("Left", left), ("Right", right)):
        put(name + "Arm", *arm.shoulder)
        put(name + "ForeArm", *(arm.shoulder + ELBOW_AT * (arm.tip - arm.shoulder)))
        put(name + "Hand", *(arm.shoulder + WRIST_AT * (arm.tip - arm.shoulder)))
    for name, i in (("Right", 0), ("Left", 1)):
        rows_i, centres = leg_rows[i], leg_centre[i]
        ankle_y = _ankle_height(sil, tracks[i], height)
        knee_y = (hip_y + ankle_y) / 2

        def leg_x(y: float, rows_i: np.ndarray = rows_i, centres: dict = centres) -> float:
            r = rows_i[np.argmin(np.abs(rows_i - sil.row(y)))]
            return float(sil.x(centres[int(r)]))

        put(name + "UpLeg", hip_x[i], hip_y)
        put(name + "Leg", leg_x(knee_y), knee_y)
        put(name + "Foot", leg_x(ankle_y), ankle_y)
    head_y = head_base + HEAD_JOINT_AT * (top_y - head_base)
    neck_y = shoulder_y + 0.4 * (head_y - shoulder_y)
    hips_y = hip_y + 0.02 * height
    spine_x = (mid_x + (left.shoulder[0] + right.shoulder[0]) / 2) / 2
    put("Hips", spine_x, hips_y)
    put("Neck", spine_x, neck_y)
    put("Head", spine_x, head_y)
    for name, t in (("Spine", 0.2), ("Spine1", 0.44), ("Spine2", 0.7)):
        put(name, spine_x, hips_y + t * (neck_y - hips_y))
    symmetric, mirror = complete_skeleton(p, mesh, spine_x, symmetric)
    stats = {
        "pose_source": "geometry",
        "symmetric": symmetric,
        "mirror_error": mirror,
        "crotch_height": crotch_y / height,
        "arm_angles_deg": (left.angle_deg, right.angle_deg),
    }
    return Skeleton(p), stats
