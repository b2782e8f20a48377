"""Auto-rigging: a humanoid mesh in, the shared 24-bone skeleton and 4-influence skin weights out. No I/O.

Stages (each timed in `RigResult.stats`):
1. **place**: scale the mesh to `height_meters`, soles at y = 0, centred in x/z (the input is glTF-oriented: +Y up,
   facing +Z); refuse shapes far from an upright figure.
2. **pose** (`pose.estimate_pose`): a front render and BlazePose's 33 landmarks, sides assigned by image x.
3. **fit**: each 2D landmark is lifted into the mesh by a ray along -Z (the midpoint of the first entry and the next
   exit), or the centre of the mesh's cross-section there when the ray misses; the 24 joints follow from anatomical
   rules (hips between the hip landmarks, spine interpolated to the neck, neck above the shoulders, head from the
   face landmarks and the top of the mesh, clavicles inward of the shoulders, hands from wrist and knuckles, toes from
   the mesh's forward extent at the floor). A near-symmetric mesh gets a mirror-symmetric skeleton. When BlazePose
   finds no person or is unsure (the landmark model alone, limb visibility under 0.5), `geometric_fit` fits the
   skeleton from the silhouette's legs, trunk, arms and head instead; its failure rejects the model (an unsure
   BlazePose reading alone is not trusted). Every fitted skeleton passes an anatomical gate (`skeleton_problems`:
   spine rising to the head, hips over knees over ankles near the floor, left limbs at +X, plausible segment
   lengths alike left and right, spanning the height); BlazePose's failing it (a robot's chest read confidently as
   a face) hands over to the geometric fit, and the geometric fit's failing it rejects the model.
4. **weights**: Baran & Popovic's bone heat. On the welded mesh, solve (K + M H) w_i = M H p_i for every bone i with
   the cotangent stiffness K, the lumped mass M, H_jj = 1 / d_j^2 for the distance to the nearest bone that vertex j
   sees from inside the body (a voxel occupancy test), and p_ij = 1 when bone i is that bone. One sparse LU
   factorisation serves all bones. Separate shells (kit-bashed parts, eyes) get their own heat, so every vertex is
   weighted. The top four influences are kept and renormalised.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import trimesh
from scipy import ndimage
from scipy.sparse.linalg import splu

from inference.motion.geometric_fit import fit_geometric
from inference.motion.pose import LANDMARK, LIMB_LANDMARKS, PoseEstimationFailed, PoseResult, estimate_pose
from inference.motion.skeleton import BONE_COUNT, BONES, INDEX, PARENTS, PRIMARY_CHILD, Skeleton

log = logging.getLogger(__name__)

__all__ = [
    "PoseEstimationFailed",
    "RigResult",
    "rig_character",
    "place_mesh",
    "fit_skeleton",
    "skeleton_problems",
    "skin_weights",
]

MAX_INFLUENCES = 4
MIN_LIMB_VISIBILITY = 0.35  # below this mean visibility of the limb landmarks the pose is not trusted
SURE_LIMB_VISIBILITY = 0.5  # below this (or read without the person detector) the shape's geometry is fitted too
MAX_WIDTH_RATIO = 1.3  # x extent over height beyond which a model is not an upright humanoid
MAX_DEPTH_RATIO = 0.75  # z extent over height
SYMMETRY_TOLERANCE = 0.015  # mean mirror distance (fraction of height) under which the mesh counts as symmetric
_VOXELS_PER_HEIGHT = 96

_L, _R = ("Left", "left"), ("Right", "right")


@dataclass(frozen=True)
class RigResult:
    """A rigged character: the placed mesh, its skeleton and per-vertex skin weights (`joints` index `BONES`)."""

    mesh: trimesh.Trimesh
    skeleton: Skeleton
    joints: np.ndarray  # (V, 4) uint16
    weights: np.ndarray  # (V, 4) float32, rows sum to 1
    stats: dict = field(default_factory=dict)


# --- placement ----------------------------------------------------------------------------------------------------


def place_mesh(mesh: trimesh.Trimesh, height_meters: float) -> trimesh.Trimesh:
    """A copy scaled uniformly to `height_meters` tall, soles at y = 0, centred in x and z (visuals kept)."""
    if len(mesh.faces) == 0 or len(mesh.vertices) < 4:
        raise PoseEstimationFailed("the model has no surface to rig")
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    if not np.isfinite(vertices).all():
        raise PoseEstimationFailed("the model has vertex positions that are not numbers")
    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    extent = hi - lo
    if extent[1] <= 1e-9:
        raise PoseEstimationFailed("the model is flat (it has no height)")
    if extent[0] > MAX_WIDTH_RATIO * extent[1] or extent[2] > MAX_DEPTH_RATIO * extent[1]:
        raise PoseEstimationFailed(
            "the model is not shaped like an upright humanoid (it is wider or deeper than a standing figure); "
            "it must stand on +Y and face +Z"
        )
    scale = height_meters / extent[1]
    transform = np.eye(4)
    transform[:3, :3] *= scale
    transform[:3, 3] = -np.array([(lo[0] + hi[0]) / 2, lo[1], (lo[2] + hi[2]) / 2]) * scale
    placed = mesh.copy()
    placed.apply_transform(transform)
    return placed


# --- lifting 2D joints into the mesh ------------------------------------------------------------------------------


def ray_depths(mesh: trimesh.Trimesh, xy: np.ndarray) -> list[np.ndarray]:
    """For each (x, y), the z of every surface crossing of the line through it along Z, sorted front (high z) first."""
    triangles = np.asarray(mesh.triangles, dtype=np.float64)
    tx, ty, tz = triangles[..., 0], triangles[..., 1], triangles[..., 2]
    lo_x, hi_x, lo_y, hi_y = tx.min(1), tx.max(1), ty.min(1), ty.max(1)
    out = []
    for x, y in np.atleast_2d(xy):
        cand = np.nonzero((lo_x <= x) & (x <= hi_x) & (lo_y <= y) & (y <= hi_y))[0]
        if len(cand) == 0:
            out.append(np.empty(0))
            continue
        ax, ay = tx[cand], ty[cand]
        det = (ay[:, 1] - ay[:, 2]) * (ax[:, 0] - ax[:, 2]) + (ax[:, 2] - ax[:, 1]) * (ay[:, 0] - ay[:, 2])
        ok = np.abs(det) > 1e-15
        det = np.where(ok, det, 1.0)
        w0 = ((ay[:, 1] - ay[:, 2]) * (x - ax[:, 2]) + (ax[:, 2] - ax[:, 1]) * (y - ay[:, 2])) / det
        w1 = ((ay[:, 2] - ay[:, 0]) * (x - ax[:, 2]) + (ax[:, 0] - ax[:, 2]) * (y - ay[:, 2])) / det
        w2 = 1.0 - w0 - w1
        inside = ok & (w0 >= -1e-9) & (w1 >= -1e-9) & (w2 >= -1e-9)
        z = (w0 * tz[cand, 0] + w1 * tz[cand, 1] + w2 * tz[cand, 2])[inside]
        out.append(np.sort(z)[::-1])
    return out


def lift(mesh: trimesh.Trimesh, xy: np.ndarray, slab: float) -> tuple[np.ndarray, np.ndarray]:
    """Lift world (x, y) points into the mesh: ((N, 3) points, (N,) bool hit by a ray). A missed ray falls back to the
    centre (in z) of the vertices in a thin slab around that height near that x; NaN z when there are none."""
    xy = np.atleast_2d(xy)
    vertices = np.asarray(mesh.vertices)
    points = np.c_[xy, np.full(len(xy), np.nan)]
    hit = np.zeros(len(xy), dtype=bool)
    for i, depths in enumerate(ray_depths(mesh, xy)):
        if len(depths) >= 2:
            points[i, 2] = (depths[0] + depths[1]) / 2
            hit[i] = True
        elif len(depths) == 1:
            points[i, 2] = depths[0]
            hit[i] = True
        else:
            near = (np.abs(vertices[:, 1] - xy[i, 1]) < slab) & (np.abs(vertices[:, 0] - xy[i, 0]) < 3 * slab)
            if near.any():
                points[i, 2] = (vertices[near, 2].min() + vertices[near, 2].max()) / 2
    return points, hit


# --- skeleton fitting ---------------------------------------------------------------------------------------------


def _mirror_error(mesh: trimesh.Trimesh, samples: int = 2000) -> float:
    """Mean distance from mirrored (x -> -x) vertices to the nearest vertex, over the height."""
    from scipy.spatial import cKDTree

    vertices = np.asarray(mesh.vertices)
    rng = np.random.default_rng(0)
    pick = vertices[rng.choice(len(vertices), min(samples, len(vertices)), replace=False)]
    distance, _ = cKDTree(vertices).query(pick * [-1.0, 1.0, 1.0])
    return float(distance.mean() / max(mesh.extents[1], 1e-9))


def fit_skeleton(mesh: trimesh.Trimesh, pose: PoseResult, symmetric: bool | None = None) -> tuple[Skeleton, dict]:
    """The 24 joint positions of `mesh` (placed: soles at 0, facing +Z) from its landmarks; also fit statistics.

    Raises `PoseEstimationFailed` when the limb landmarks do not lie inside the mesh."""
    height = float(mesh.extents[1])
    slab = 0.015 * height
    lm, lift_hit = lift(mesh, pose.world_xy, slab)
    limb = list(LIMB_LANDMARKS)
    inside = lift_hit[limb]
    if inside.sum() < len(limb) - 2 or np.isnan(lm[limb, 2]).any():
        raise PoseEstimationFailed("the detected limbs do not lie inside the model (the front view shows no body)")
    vertices = np.asarray(mesh.vertices)
    top = float(vertices[:, 1].max())
    p = np.zeros((BONE_COUNT, 3))

    def landmark(name: str) -> np.ndarray:
        return lm[LANDMARK[name]].copy()

    def lift_one(x: float, y: float) -> np.ndarray:
        return lift(mesh, np.array([[x, y]]), slab)[0][0]

    for side, key in (_L, _R):
        p[INDEX[side + "Arm"]] = landmark(key + "_shoulder")
        p[INDEX[side + "ForeArm"]] = landmark(key + "_elbow")
        p[INDEX[side + "Hand"]] = landmark(key + "_wrist")
        p[INDEX[side + "UpLeg"]] = landmark(key + "_hip")
        p[INDEX[side + "Leg"]] = landmark(key + "_knee")
        p[INDEX[side + "Foot"]] = landmark(key + "_ankle")
    hip_mid = (p[INDEX["LeftUpLeg"]] + p[INDEX["RightUpLeg"]]) / 2
    shoulder_mid = (p[INDEX["LeftArm"]] + p[INDEX["RightArm"]]) / 2
    # head: the face landmarks give its centre height (clamped between the shoulders and the top of the mesh)
    face = lm[[LANDMARK[n] for n in ("nose", "left_ear", "right_ear", "left_eye", "right_eye")]]
    head_centre_y = float(np.clip(np.nanmean(face[:, 1]), shoulder_mid[1] + 0.05 * height, top - 0.03 * height))
    head_y = head_centre_y - 0.55 * (top - head_centre_y)
    head_y = max(head_y, shoulder_mid[1] + 0.04 * height)
    neck_y = shoulder_mid[1] + 0.4 * (head_y - shoulder_mid[1])
    hips_y = hip_mid[1] + 0.02 * height
    mid_x = float(hip_mid[0] + shoulder_mid[0]) / 2
    p[INDEX["Hips"]] = lift_one(mid_x, hips_y)
    p[INDEX["Neck"]] = lift_one(mid_x, neck_y)
    p[INDEX["Head"]] = lift_one(mid_x, head_y)
    for name, t in (("Spine", 0.2), ("Spine1", 0.44), ("Spine2", 0.7)):
        p[INDEX[name]] = lift_one(mid_x, hips_y + t * (neck_y - hips_y))
    symmetric, mirror = complete_skeleton(p, mesh, mid_x, symmetric)
    stats = {"symmetric": symmetric, "mirror_error": mirror, "rays_missed": int((~lift_hit[limb]).sum())}
    return Skeleton(p), stats


def complete_skeleton(p: np.ndarray, mesh: trimesh.Trimesh, mid_x: float, symmetric: bool | None) -> tuple[bool, float]:
    """The joints both fits derive the same way, in place: clavicles inward of the arms, toes from the foot's forward
    extent near the floor, a missing depth from the parent; then mirror-symmetrise when the mesh is near-symmetric
    (or `symmetric` says so). Returns (symmetrised, mirror error)."""
    vertices = np.asarray(mesh.vertices)
    height = float(mesh.extents[1])
    for side in ("Left", "Right"):
        arm = p[INDEX[side + "Arm"]]
        p[INDEX[side + "Shoulder"]] = [mid_x + 0.3 * (arm[0] - mid_x), arm[1], p[INDEX["Spine2"], 2]]
        ankle = p[INDEX[side + "Foot"]]
        near = (vertices[:, 1] < 0.6 * ankle[1] + 1e-6) & (np.abs(vertices[:, 0] - ankle[0]) < 0.06 * height)
        tip_z = float(vertices[near, 2].max()) if near.any() else ankle[2] + 0.1 * height
        tip_z = max(tip_z, ankle[2] + 0.02 * height)
        toe_y = min(0.25 * ankle[1], 0.015 * height)
        p[INDEX[side + "ToeBase"]] = [ankle[0], toe_y, ankle[2] + 0.6 * (tip_z - ankle[2])]
        p[INDEX[side + "Toe_End"]] = [ankle[0], toe_y, tip_z]
    for b in range(BONE_COUNT):
        if not np.isfinite(p[b, 2]):
            p[b, 2] = p[PARENTS[b], 2] if PARENTS[b] >= 0 else 0.0
    mirror = _mirror_error(mesh)
    if symmetric is None:
        symmetric = mirror < SYMMETRY_TOLERANCE
    if symmetric:
        for b, name in enumerate(BONES):
            if name.startswith("Left"):
                r = INDEX[name.replace("Left", "Right")]
                avg = (p[b] + p[r] * [-1.0, 1.0, 1.0]) / 2
                p[b], p[r] = avg, avg * [-1.0, 1.0, 1.0]
            elif not name.startswith("Right"):
                p[b, 0] = 0.0
    return bool(symmetric), mirror


# --- anatomical sanity gate ---------------------------------------------------------------------------------------

FEET_NEAR_FLOOR = 0.15  # ankles at most this fraction of the height above the soles
MIN_SPAN = 0.5  # head joint over the lowest ankle, as a fraction of the height
SEGMENT_RANGE = {"arm": (0.05, 0.35), "leg": (0.06, 0.4)}  # one limb segment's length over the height
MAX_SIDE_RATIO = 1.5  # a limb segment's length, left over right (or right over left)
_SPINE_CHAIN = ("Hips", "Spine", "Spine1", "Spine2", "Neck", "Head")
_SEGMENTS = (
    ("arm", "Arm", "ForeArm", "upper arms"),
    ("arm", "ForeArm", "Hand", "forearms"),
    ("leg", "UpLeg", "Leg", "thighs"),
    ("leg", "Leg", "Foot", "shins"),
)


def skeleton_problems(skeleton: Skeleton, mesh: trimesh.Trimesh) -> list[str]:
    """What makes a fitted skeleton of the placed `mesh` (soles at 0, facing +Z) anatomically implausible, in plain
    words; empty when it is a sane standing humanoid. Checked: the spine rises from the hips to the head; shoulders
    above the hips and below the head; hips above knees above ankles; ankles near the floor; the character's left
    limbs at +X of the hips and the right ones at -X; limb segments of plausible length for the height and alike
    left and right; the skeleton spanning most of the mesh's height."""
    p = skeleton.positions
    height = float(mesh.extents[1])
    floor = float(mesh.bounds[0, 1])
    y = {name: float(p[INDEX[name], 1]) - floor for name in BONES}
    problems: list[str] = []
    if not np.isfinite(p).all():
        return ["some joints have no position"]
    chain = [y[n] for n in _SPINE_CHAIN]
    if not all(a < b for a, b in zip(chain, chain[1:], strict=False)):
        problems.append("the spine does not rise from the hips to the head")
    if y["Head"] > height:
        problems.append("the head joint is above the model")
    for side in ("Left", "Right"):
        s = side.lower()
        if not y["Hips"] + 0.1 * height < y[side + "Arm"] < y["Head"]:
            problems.append(f"the {s} shoulder is not between the hips and the head")
        if not y[side + "UpLeg"] > y[side + "Leg"] + 0.05 * height > y[side + "Foot"] + 0.1 * height:
            problems.append(f"the {s} hip, knee and ankle are not stacked from the top down")
        if y["Hips"] < y[side + "Leg"]:
            problems.append(f"the {s} knee is above the hips")
        if y[side + "Foot"] > FEET_NEAR_FLOOR * height:
            problems.append(f"the {s} ankle is not near the floor")
    centre = float(p[INDEX["Hips"], 0])
    for part in ("Arm", "ForeArm", "Hand", "UpLeg", "Leg", "Foot"):
        if not p[INDEX["Left" + part], 0] > centre > p[INDEX["Right" + part], 0]:
            problems.append("the left and right limbs are not on their sides of the body (left at +X)")
            break
    for kind, a, b, label in _SEGMENTS:
        lo, hi = SEGMENT_RANGE[kind]
        lengths = [float(np.linalg.norm(p[INDEX[side + b]] - p[INDEX[side + a]])) for side in ("Left", "Right")]
        if not all(lo * height <= length <= hi * height for length in lengths):
            problems.append(f"the {label} are not of a plausible length for the height")
        elif max(lengths) > MAX_SIDE_RATIO * min(lengths):
            problems.append(f"the left and right {label} differ too much in length")
    if y["Head"] - min(y["LeftFoot"], y["RightFoot"]) < MIN_SPAN * height:
        problems.append("the skeleton does not span the model's height")
    return list(dict.fromkeys(problems))


# --- skin weights -------------------------------------------------------------------------------------------------


def _bone_segments(skeleton: Skeleton, top: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bone index, start, end) of every bone that takes weights: joint -> primary child; the head up to the top of
    the mesh; each hand past the wrist. Toe ends take none."""
    p = skeleton.positions
    bones, starts, ends = [], [], []
    for b, name in enumerate(BONES):
        child = PRIMARY_CHILD[b]
        if child >= 0:
            end = p[child]
        elif name == "Head":
            end = np.array([p[b, 0], top, p[b, 2]])
        elif name.endswith("Hand"):
            end = p[b] + 0.45 * (p[b] - p[PARENTS[b]])
        else:
            continue
        bones.append(b)
        starts.append(p[b])
        ends.append(end)
    return np.array(bones), np.array(starts), np.array(ends)


def _occupancy(vertices: np.ndarray, faces: np.ndarray, pitch: float) -> tuple[np.ndarray, np.ndarray]:
    """A solid voxel grid of the union of the mesh's shells: surface samples, one voxel of dilation, holes filled.
    Returns (grid bool (nx, ny, nz), origin)."""
    origin = vertices.min(axis=0) - 2 * pitch
    shape = np.ceil((vertices.max(axis=0) - origin) / pitch).astype(int) + 3
    tri = vertices[faces]
    area = trimesh.triangles.area(tri)
    counts = np.minimum(np.ceil(area / pitch**2 * 6).astype(np.int64) + 1, 4000)
    owner = np.repeat(np.arange(len(faces)), counts)
    rng = np.random.default_rng(0)
    r = rng.random((len(owner), 2))
    flip = r.sum(axis=1) > 1
    r[flip] = 1 - r[flip]
    t = tri[owner]
    points = t[:, 0] + r[:, :1] * (t[:, 1] - t[:, 0]) + r[:, 1:] * (t[:, 2] - t[:, 0])
    idx = np.clip(((np.vstack([points, vertices]) - origin) / pitch).astype(np.int64), 0, shape - 1)
    grid = np.zeros(shape, dtype=bool)
    grid[idx[:, 0], idx[:, 1], idx[:, 2]] = True
    grid = ndimage.binary_dilation(grid)
    return ndimage.binary_fill_holes(grid), origin


def _segment_closest(points: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Closest points (V, S, 3) on every segment and the distances (V, S)."""
    d = ends - starts
    length2 = np.maximum((d * d).sum(axis=1), 1e-12)
    t = np.clip(np.einsum("vsk,sk->vs", points[:, None, :] - starts[None], d) / length2, 0.0, 1.0)
    closest = starts[None] + t[..., None] * d[None]
    return closest, np.linalg.norm(points[:, None, :] - closest, axis=2)


def _cotangent_system(vertices: np.ndarray, faces: np.ndarray) -> tuple[sp.csc_matrix, np.ndarray]:
    """The cotangent stiffness matrix K (positive semi-definite, cotangents clamped at 0) and the lumped masses."""
    n = len(vertices)
    tri = vertices[faces]
    k_parts, i_parts, j_parts = [], [], []
    for c in range(3):
        a, b = (c + 1) % 3, (c + 2) % 3
        u, v = tri[:, a] - tri[:, c], tri[:, b] - tri[:, c]
        cross = np.linalg.norm(np.cross(u, v), axis=1)
        cot = np.clip((u * v).sum(axis=1) / np.maximum(cross, 1e-12), 0.0, 1e3) / 2
        i_parts.append(faces[:, a])
        j_parts.append(faces[:, b])
        k_parts.append(cot)
    i, j, w = np.concatenate(i_parts), np.concatenate(j_parts), np.concatenate(k_parts)
    off = sp.coo_matrix((w, (i, j)), shape=(n, n)).tocsr()
    off = off + off.T
    stiffness = sp.diags(np.asarray(off.sum(axis=1)).ravel()) - off
    area = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1) / 2
    mass = np.bincount(faces.ravel(), weights=np.repeat(area / 3, 3), minlength=n)
    return stiffness.tocsc(), np.maximum(mass, 1e-12)


def skin_weights(mesh: trimesh.Trimesh, skeleton: Skeleton) -> tuple[np.ndarray, np.ndarray]:
    """Bone-heat skin weights: ((V, 4) uint16 joint indices, (V, 4) float32 weights summing to 1 per vertex)."""
    vertices_all = np.asarray(mesh.vertices, dtype=np.float64)
    height = float(np.ptp(vertices_all[:, 1])) or 1.0
    keys = np.round(vertices_all / (1e-5 * height)).astype(np.int64)
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    vertices = vertices_all[first]
    faces = inverse[np.asarray(mesh.faces)]
    faces = faces[(faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])]

    bones, starts, ends = _bone_segments(skeleton, float(vertices[:, 1].max()))
    closest, distance = _segment_closest(vertices, starts, ends)
    pitch = height / _VOXELS_PER_HEIGHT
    grid, origin = _occupancy(vertices, faces, pitch)
    # visible: the segment from the vertex to the bone stays inside the solid (the first voxel next to the vertex,
    # on the surface, is skipped)
    samples = np.linspace(0.0, 1.0, 10)[1:]
    visible = np.ones(distance.shape, dtype=bool)
    for s in samples:
        q = vertices[:, None, :] + s * (closest - vertices[:, None, :])
        idx = np.clip(((q - origin) / pitch).astype(np.int64), 0, np.array(grid.shape) - 1)
        visible &= grid[idx[..., 0], idx[..., 1], idx[..., 2]]
    masked = np.where(visible, distance, np.inf)
    nearest_visible = masked.min(axis=1)
    none_visible = ~np.isfinite(nearest_visible)
    masked[none_visible] = distance[none_visible]  # no bone visible: the nearest one
    nearest = masked.min(axis=1)
    target = (masked <= nearest[:, None] * 1.0001 + 1e-12).astype(np.float64)
    target /= target.sum(axis=1, keepdims=True)
    heat = 1.0 / np.maximum(nearest, 1e-3 * height) ** 2

    stiffness, mass = _cotangent_system(vertices, faces)
    system = (stiffness + sp.diags(mass * heat)).tocsc()
    rhs = (mass * heat)[:, None] * target
    solved = splu(system).solve(rhs)
    solved = np.clip(np.nan_to_num(solved, nan=0.0), 0.0, None)

    full = np.zeros((len(vertices), BONE_COUNT))
    full[:, bones] = solved
    order = np.argsort(-full, axis=1)[:, :MAX_INFLUENCES]
    top = np.take_along_axis(full, order, axis=1)
    total = top.sum(axis=1)
    empty = total <= 1e-9
    if empty.any():  # numerically nothing: the nearest bone takes the vertex
        order[empty, 0] = bones[np.argmin(distance[empty], axis=1)]
        top[empty] = [1.0, 0.0, 0.0, 0.0]
        total[empty] = 1.0
    top /= total[:, None]
    top[top < 1e-4] = 0.0
    top /= top.sum(axis=1, keepdims=True)
    return order[inverse].astype(np.uint16), top[inverse].astype(np.float32)


# --- the pipeline -------------------------------------------------------------------------------------------------


def rig_character(
    mesh: trimesh.Trimesh,
    *,
    height_meters: float = 1.7,
    progress: Callable[[float], None] | None = None,
    models_dir: Path | None = None,
) -> RigResult:
    """Rig a humanoid mesh (+Y up, facing +Z, any scale). Raises `PoseEstimationFailed` (an `InputRejected`) when
    the model shows no usable humanoid pose."""
    report = progress or (lambda _f: None)
    stats: dict = {"faces": int(len(mesh.faces)), "vertices": int(len(mesh.vertices))}
    report(0.0)
    t = time.perf_counter()
    placed = place_mesh(mesh, height_meters)
    stats["place_s"] = time.perf_counter() - t
    report(0.05)
    # BlazePose first; where it finds no person or is unsure of one (the landmark model alone, low visibility), the
    # fit from the shape's geometry takes over, and its failure ("no humanoid shape found") rejects the model.
    skeleton: Skeleton | None = None
    fit_stats: dict = {}
    failure: PoseEstimationFailed | None = None
    sure = False
    try:
        pose = estimate_pose(placed, models_dir)
        stats["render_s"] = pose.timings["render"]
        stats["pose_s"] = pose.timings["detect"] + pose.timings["load"]
        stats["pose_attempt"] = pose.attempt
        stats["landmark_visibility"] = pose.limb_visibility
        if pose.limb_visibility < MIN_LIMB_VISIBILITY:
            raise PoseEstimationFailed(
                f"the body landmarks found in the model's front view are not confident enough "
                f"(mean visibility {pose.limb_visibility:.2f}, at least {MIN_LIMB_VISIBILITY:.2f} needed)"
            )
        report(0.35)
        t = time.perf_counter()
        skeleton, fit_stats = fit_skeleton(placed, pose)
        stats["fit_s"] = time.perf_counter() - t
        sure = pose.limb_visibility >= SURE_LIMB_VISIBILITY and not pose.attempt.startswith("landmarks only")
        # BlazePose can be confident about nonsense (a robot's chest read as a face): the gate has the last word
        problems = skeleton_problems(skeleton, placed)
        if problems:
            sure = False
            raise PoseEstimationFailed("the body landmarks give an implausible skeleton (" + "; ".join(problems) + ")")
    except PoseEstimationFailed as exc:
        failure = exc
    except (ImportError, RuntimeError, OSError) as exc:  # no pose model here (not installed, unreadable): geometry
        log.warning("the pose model is unavailable (%s); fitting from the shape alone", exc)
        failure = PoseEstimationFailed("the pose model is unavailable")
    if not sure:
        t = time.perf_counter()
        try:
            skeleton, fit_stats = fit_geometric(placed)
        except PoseEstimationFailed as geometry_failure:
            # an unsure reading alone is not trusted (a flattened sphere can give one): the geometry's reason stands
            raise geometry_failure from failure
        stats["fit_s"] = stats["geometry_s"] = time.perf_counter() - t
        if failure is not None:
            stats["pose_failure"] = str(failure)
        problems = skeleton_problems(skeleton, placed)
        if problems:
            raise PoseEstimationFailed(
                "the skeleton fitted to the model's shape is implausible (" + "; ".join(problems) + ")"
            ) from failure
    assert skeleton is not None  # a sure BlazePose fit, or the geometric one
    stats.update(fit_stats)
    stats.setdefault("pose_source", "landmarks")
    report(0.5)
    t = time.perf_counter()
    joints, weights = skin_weights(placed, skeleton)
    stats["weights_s"] = time.perf_counter() - t
    report(1.0)
    return RigResult(mesh=placed, skeleton=skeleton, joints=joints, weights=weights, stats=stats)
