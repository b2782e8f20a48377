"""The animation library: procedurally authored clips under Meshy's action ids, names and categories.

Every clip is authored here, on the canonical skeleton (`skeleton.CANONICAL`), from code: nothing is motion-captured
or copied from a data set. Two kinds of authoring:

* keyframed actions: a few poses at key times, built from readable joint angles (`_pose(...)`), interpolated with a
  Catmull-Rom spline on the quaternions (time-scaled Hermite tangents, hemisphere-aligned, renormalised);
* procedural gaits (`_Gait`): walks and runs parameterised by cycle period, stride (hip swing), knee profile, arm
  swing, lean, bounce..., with the stance foot planted: root motion is integrated from the stance foot's velocity, so
  the feet do not slide and the stride follows the leg swing.

Every clip is then grounded (`_finish`): per frame the hips' height is set so that the lowest contact point (the soles;
also knees, hands and trunk for kneeling, sitting on the floor or lying) touches the floor, plus a ballistic arc for
airborne phases. Looping clips end on their first frame.

Angle conventions (degrees), all relative to the world-aligned rest frames of the T-pose (+Y up, facing +Z, left +X):
legs `flex` > 0 swings the thigh forward, `knee` > 0 bends the knee (one way only), `ankle` > 0 points the toes down
(the foot is kept level by default); arms are given by a direction in the left arm's terms (lateral, up, forward) that
is mirrored for the right arm, a `twist` about the upper arm and an `elbow` flexion >= 0; the trunk `bend` > 0 leans
forward, `side` > 0 leans to the character's left, `twist` > 0 turns the chest to its left.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.spatial.transform import Rotation

from inference.motion.skeleton import BONE_COUNT, CANONICAL, INDEX, Clip, world_pose

FPS = 30.0
CATEGORIES = ("WalkAndRun", "BodyMovements", "DailyActions", "Fighting", "Dancing")

_HIPS_REST = CANONICAL.positions[INDEX["Hips"]].copy()


@dataclass(frozen=True)
class Action:
    """One library entry; `action_id`, `name`, `category` and `sub_category` are Meshy's for the same action."""

    action_id: int
    key: str
    name: str
    category: str
    sub_category: str
    loop: bool
    duration: float
    description: str = ""


# ---------------------------------------------------------------------------------------------------------------------
# Rotations


def _euler(order: str, x=0.0, y=0.0, z=0.0) -> np.ndarray:
    """Quaternions from extrinsic Euler angles in degrees; `order` names the axes in the order they are applied."""
    angles = {"x": x, "y": y, "z": z}
    parts = np.broadcast_arrays(*(np.asarray(angles[a], dtype=np.float64) for a in order))
    return (
        Rotation.from_euler(order, np.stack(parts, axis=-1).reshape(-1, len(order)), degrees=True)
        .as_quat()
        .reshape(parts[0].shape + (4,))
    )


def _mirror(q: np.ndarray) -> np.ndarray:
    """A left-side rotation reflected through the body's mid-sagittal plane (x -> -x)."""
    return q * np.array([1.0, -1.0, -1.0, 1.0])


def _qmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ax, ay, az, aw = np.moveaxis(a, -1, 0)
    bx, by, bz, bw = np.moveaxis(b, -1, 0)
    return np.stack(
        [
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
            aw * bw - ax * bx - ay * by - az * bz,
        ],
        axis=-1,
    )


def _swing_from_x(d: np.ndarray) -> np.ndarray:
    """The shortest rotation turning +X onto direction(s) `d` (..., 3); `d` must not point along -X."""
    d = np.asarray(d, dtype=np.float64)
    d = d / np.linalg.norm(d, axis=-1, keepdims=True)
    axis = np.stack([np.zeros_like(d[..., 0]), -d[..., 2], d[..., 1]], axis=-1)
    s = np.linalg.norm(axis, axis=-1, keepdims=True)
    angle = np.arctan2(s, d[..., :1])
    rotvec = np.where(s > 1e-9, axis / np.maximum(s, 1e-12) * angle, 0.0)
    return Rotation.from_rotvec(rotvec.reshape(-1, 3)).as_quat().reshape(d.shape[:-1] + (4,))


# ---------------------------------------------------------------------------------------------------------------------
# Pose vocabulary: each helper returns {bone: quaternion (..., 4)}; angles may be scalars or per-frame arrays.

Pose = dict[str, np.ndarray]
_TRUNK = (("Spine", 0.4), ("Spine1", 0.35), ("Spine2", 0.25))


def trunk(bend=0.0, side=0.0, twist=0.0) -> Pose:
    return {
        b: _euler("zxy", x=np.asarray(bend) * w, y=np.asarray(twist) * w, z=-np.asarray(side) * w) for b, w in _TRUNK
    }


def head(nod=0.0, turn=0.0, tilt=0.0) -> Pose:
    q = _euler("zxy", x=np.asarray(nod) * 0.5, y=np.asarray(turn) * 0.5, z=-np.asarray(tilt) * 0.5)
    return {"Neck": q, "Head": q}


def hips(pitch=0.0, yaw=0.0, roll=0.0) -> Pose:
    """Pelvis orientation (turns the whole body): pitch > 0 tips forward, yaw > 0 turns left, roll > 0 drops right."""
    return {"Hips": _euler("zxy", x=pitch, y=yaw, z=-np.asarray(roll))}


def arm(side: str, d=(0.2, -1.0, 0.03), twist=0.0, elbow=8.0, wrist=0.0, shrug=0.0) -> Pose:
    """An arm: upper-arm direction `d` (lateral, up, forward), twist about it, elbow flexion, wrist flexion, shrug."""
    prefix = "Left" if side == "l" else "Right"
    q_arm = _qmul(_swing_from_x(np.asarray(d, dtype=np.float64)), _euler("x", x=twist))
    q_fore = _euler("y", y=-np.maximum(np.asarray(elbow, dtype=np.float64), 0.0))
    q_hand = _euler("z", z=-np.asarray(wrist))
    q_sh = _euler("z", z=shrug)
    out = {f"{prefix}Shoulder": q_sh, f"{prefix}Arm": q_arm, f"{prefix}ForeArm": q_fore, f"{prefix}Hand": q_hand}
    if side == "r":
        out = {k: _mirror(v) for k, v in out.items()}
    return out


def leg(side: str, flex=0.0, knee=2.0, ankle=0.0, abd=0.0, twist=0.0, level=True) -> Pose:
    """A leg: thigh flexion (forward > 0), knee flexion (>= 0), ankle (toes down > 0), abduction (outward > 0).

    With `level`, the foot is counter-rotated to stay level with the pelvis (plus `ankle`)."""
    prefix = "Left" if side == "l" else "Right"
    flex, knee = np.asarray(flex, dtype=np.float64), np.maximum(np.asarray(knee, dtype=np.float64), 0.0)
    foot = (flex - knee if level else 0.0) + np.asarray(ankle)
    out = {
        f"{prefix}UpLeg": _euler("yzx", x=-flex, y=twist, z=abd),
        f"{prefix}Leg": _euler("x", x=knee),
        f"{prefix}Foot": _euler("x", x=foot),
    }
    if side == "r":
        out = {k: _mirror(v) for k, v in out.items()}
    return out


def arms(**kw) -> Pose:
    return {**arm("l", **kw), **arm("r", **kw)}


def legs(**kw) -> Pose:
    return {**leg("l", **kw), **leg("r", **kw)}


def _pose(*parts: Pose, frames: int | None = None) -> np.ndarray:
    """Merge partial poses over the relaxed standing pose into quaternions (24, 4) or (frames, 24, 4)."""
    merged: Pose = {**arms(), **legs()}
    for p in parts:
        merged.update(p)
    shape = (BONE_COUNT, 4) if frames is None else (frames, BONE_COUNT, 4)
    out = np.zeros(shape)
    out[..., 3] = 1.0
    for name, q in merged.items():
        out[..., INDEX[name], :] = q
    return out


# ---------------------------------------------------------------------------------------------------------------------
# Splines


def _frames(duration: float) -> int:
    return int(round(duration * FPS)) + 1


def _align_hemispheres(q: np.ndarray) -> np.ndarray:
    """Flip quaternion signs along axis 0 so consecutive ones lie in the same hemisphere."""
    q = q.copy()
    for k in range(1, q.shape[0]):
        flip = np.sum(q[k] * q[k - 1], axis=-1) < 0
        q[k][flip] *= -1.0
    return q


def _hermite(times: np.ndarray, values: np.ndarray, t: np.ndarray, loop: bool, period: float) -> np.ndarray:
    """Catmull-Rom (time-scaled tangents) through (times, values[K, ...]) sampled at t; C1, passes through every key."""
    times = np.asarray(times, dtype=np.float64)
    if loop:
        T = np.concatenate([[times[-1] - period], times, [times[0] + period, times[1 % len(times)] + period]])
        V = np.concatenate([values[-1:], values, values[:1], values[1 % len(values) : 1 % len(values) + 1]])
    else:
        T = np.concatenate([[times[0] - 1.0], times, [times[-1] + 1.0]])
        V = np.concatenate([values[:1], values, values[-1:]])
    n = len(T)
    M = np.zeros_like(V)
    for i in range(1, n - 1):
        M[i] = (V[i + 1] - V[i - 1]) / (T[i + 1] - T[i - 1])
    if not loop:
        M[1] = 0.0
        M[n - 2] = 0.0
    tt = np.clip(t, T[1], T[n - 2])
    i = np.clip(np.searchsorted(T, tt, side="right") - 1, 1, n - 3)
    h = T[i + 1] - T[i]
    u = ((tt - T[i]) / h).reshape((-1,) + (1,) * (values.ndim - 1))
    hh = h.reshape(u.shape)
    h00, h10, h01, h11 = 2 * u**3 - 3 * u**2 + 1, u**3 - 2 * u**2 + u, -2 * u**3 + 3 * u**2, u**3 - u**2
    return h00 * V[i] + h10 * hh * M[i] + h01 * V[i + 1] + h11 * hh * M[i + 1]


def _keys(duration: float, keys: list[tuple[float, np.ndarray]], loop: bool) -> np.ndarray:
    """Sample keyed poses (time, (24, 4)) at FPS over [0, duration]; loops wrap the last key onto the first."""
    if loop and keys[-1][0] >= duration - 1e-9:
        keys = keys[:-1]
    times = np.array([k[0] for k in keys])
    q = _align_hemispheres(np.stack([k[1] for k in keys]))
    t = np.arange(_frames(duration)) / FPS
    out = _hermite(times, q, t, loop, duration)
    out /= np.linalg.norm(out, axis=-1, keepdims=True)
    if loop:
        out[-1] = out[0]
    return out


def _curve(duration: float, keys: list[tuple[float, float]], loop: bool = False) -> np.ndarray:
    """A scalar channel keyed like poses, sampled per frame."""
    if loop and keys[-1][0] >= duration - 1e-9:
        keys = keys[:-1]
    t = np.arange(_frames(duration)) / FPS
    return _hermite(np.array([k[0] for k in keys]), np.array([[k[1]] for k in keys], dtype=float), t, loop, duration)[
        :, 0
    ]


def _bump(phi: np.ndarray, a: float, b: float) -> np.ndarray:
    """sin^2 window on [a, b] (periodic phase in [0, 1), wrapping allowed), 0 elsewhere."""
    u = np.mod(phi - a, 1.0) / ((b - a) % 1.0 or 1.0)
    return np.where(u <= 1.0, np.sin(np.pi * np.clip(u, 0, 1)) ** 2, 0.0)


# ---------------------------------------------------------------------------------------------------------------------
# Grounding, planting and the finished clip


@dataclass
class _Motion:
    rotations: np.ndarray  # (F, 24, 4)
    plant: str = "avg"  # "avg" (both feet's centre stays put), "l", "r", "stance" (integrate the stance foot), "none"
    ground: str = "feet"  # "feet": soles touch the floor; "body": also knees, hands, trunk, head
    air: list[tuple[float, float, float]] = field(default_factory=list)  # (t_takeoff, t_land, apex height above line)
    offset: np.ndarray | None = None  # (F, 3) extra root translation (x, z used; y added)
    stance: np.ndarray | None = None  # (F, 2) stance weights of the left/right foot for plant="stance"


_SOLE = {  # sole contact points: (bone whose frame carries them, local offset)
    "heel": ("Foot", np.array([0.0, -0.08, -0.04])),
    "ball": ("ToeBase", np.array([0.0, -0.02, 0.0])),
    "tip": ("ToeBase", np.array([0.0, -0.02, 0.08])),
}
_BODY_RADII = {
    "LeftLeg": 0.05, "RightLeg": 0.05, "LeftHand": 0.03, "RightHand": 0.03, "Hips": 0.10, "Spine1": 0.11,
    "Spine2": 0.11, "Head": 0.10, "LeftForeArm": 0.04, "RightForeArm": 0.04,
}  # fmt: skip


def sole_points(world_rot: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """(F, 2, 3, 3): per frame, per foot (left, right), the heel, ball and toe-tip points on the sole."""
    out = np.zeros((pos.shape[0], 2, 3, 3))
    for f, side in enumerate(("Left", "Right")):
        for k, (bone, off) in enumerate(_SOLE.values()):
            b = INDEX[side + bone]
            out[:, f, k] = pos[:, b] + Rotation.from_quat(world_rot[:, b]).apply(off)
    return out


_HINGES = (("LeftLeg", 0, 1.0), ("RightLeg", 0, 1.0), ("LeftForeArm", 1, -1.0), ("RightForeArm", 1, 1.0))


def _limit_hinges(rot: np.ndarray) -> None:
    """Knees (about X) and elbows (about Y) are hinges bending one way only: clamp spline overshoot in place."""
    for bone, axis, sign in _HINGES:
        q = rot[:, INDEX[bone]]
        angle = 2.0 * np.arctan2(q[:, axis], q[:, 3])
        angle = sign * np.clip(sign * np.angle(np.exp(1j * angle)), 0.0, np.radians(160.0))
        out = np.zeros_like(q)
        out[:, axis] = np.sin(angle / 2)
        out[:, 3] = np.cos(angle / 2)
        rot[:, INDEX[bone]] = out


def _finish(m: _Motion, name: str, loop: bool, meta: dict | None = None) -> Clip:
    rot = m.rotations.copy()
    rot /= np.linalg.norm(rot, axis=-1, keepdims=True)
    _limit_hinges(rot)
    F = rot.shape[0]
    root = np.tile(_HIPS_REST, (F, 1))
    if m.offset is not None:
        root += m.offset
    wrot, pos = world_pose(CANONICAL, rot, root)
    soles = sole_points(wrot, pos)  # (F, 2, 3, 3)
    low = soles[..., 1].min(axis=(1, 2))
    if m.ground == "body":
        for bone, r in _BODY_RADII.items():
            low = np.minimum(low, pos[:, INDEX[bone], 1] - r)
    # Horizontal: keep the planted foot where it is.
    shift = np.zeros((F, 2))
    if m.plant in ("avg", "l", "r"):
        feet = {"avg": soles[:, :, :2], "l": soles[:, :1, :2], "r": soles[:, 1:, :2]}[m.plant]
        anchor = feet[..., [0, 2]].mean(axis=(1, 2))
        shift = anchor[:1] - anchor
    elif m.plant == "stance":
        ball = soles[:, :, 1][..., [0, 2]]  # (F, 2, 2): ball of each foot, xz
        if m.stance is not None:
            w = m.stance
        else:
            y = soles[..., 1].min(axis=2)
            w = 1.0 / (1.0 + np.exp(np.clip((y - y.min(axis=1, keepdims=True)) / 0.004, -50, 50)))
        dball = np.diff(ball, axis=0)  # (F-1, 2, 2)
        wf = w[:-1]
        total = wf.sum(axis=1, keepdims=True)
        vel = -(dball * wf[..., None]).sum(axis=1) / np.maximum(total, 1e-9)
        flying = total[:, 0] < 1e-3
        if flying.any() and (~flying).any():
            vel[flying] = vel[~flying].mean(axis=0)
        shift = np.concatenate([np.zeros((1, 2)), np.cumsum(vel, axis=0)])
    root[:, 0] += shift[:, 0]
    root[:, 2] += shift[:, 1]
    # Vertical: lowest contact on the floor, plus the airborne arcs.
    ground_y = root[:, 1] - low
    y = ground_y.copy()
    t = np.arange(F) / FPS
    for t0, t1, apex in m.air:
        i0, i1 = int(round(t0 * FPS)), min(int(round(t1 * FPS)), F - 1)
        if i1 <= i0:
            continue
        u = (t[i0 : i1 + 1] - t[i0]) / (t[i1] - t[i0])
        line = ground_y[i0] + (ground_y[i1] - ground_y[i0]) * u
        y[i0 : i1 + 1] = np.maximum(line + 4 * apex * u * (1 - u), ground_y[i0 : i1 + 1])
    root[:, 1] = y
    if loop:
        rot[-1] = rot[0]
        root[-1, 1] = root[0, 1]
    rot = _align_hemispheres(rot)
    return Clip(name=name, fps=FPS, rotations=rot, root=root, loop=loop, meta=dict(meta or {}))


# ---------------------------------------------------------------------------------------------------------------------
# Procedural gait


@dataclass
class _Gait:
    period: float = 1.1  # seconds per full cycle (two steps)
    cycles: int = 2
    stance: float = 0.6  # fraction of the cycle each foot is on the ground (< 0.5: flight phases)
    hip: float = 24.0  # thigh swing amplitude either side of `hip_bias`
    hip_bias: float = 2.0
    knee_load: float = 12.0  # early-stance knee flexion
    knee_swing: float = 58.0  # swing knee flexion peak
    knee_base: float = 3.0
    ankle_push: float = 14.0  # toe-off plantar flexion
    toe_up: float = 8.0  # swing dorsiflexion
    drive: float = 0.0  # extra thigh lift in mid-swing (running knee drive)
    abd: float = 2.0  # leg abduction (negative crosses over)
    arm_swing: float = 20.0
    arm_out: float = 12.0  # arm abduction from the side, degrees
    elbow: float = 12.0
    elbow_swing: float = 14.0
    lean: float = 3.0
    pelvis_yaw: float = 5.0
    pelvis_roll: float = 3.0
    bounce: float = 0.0  # apex of each flight phase (m)
    side_sway: float = 1.5  # trunk side bend over the stance leg
    head_nod: float = 0.0
    backward: bool = False
    asym: float = 0.0  # 0..1: the right leg stiffens and shortens (limp)
    shake: float = 0.0  # tremor amplitude (deg)
    arm_pose: Callable[[np.ndarray], Pose] | None = None  # overrides both arms (and anything else) from the phase
    extra: Callable[[np.ndarray], Pose] | None = None  # further overrides (head, trunk...)


def _hip_profile(phi: np.ndarray, stance: float) -> np.ndarray:
    """Normalised thigh angle in [-1, 1]: linear retraction over stance (constant ground speed), eased return in swing,
    smoothed periodically."""
    grid = np.linspace(0.0, 1.0, 512, endpoint=False)
    u = grid / stance
    v = np.where(grid < stance, 1.0 - 2.0 * u, -np.cos(np.pi * (grid - stance) / (1.0 - stance)))
    v = gaussian_filter1d(v, sigma=0.035 * 512, mode="wrap")
    v /= np.abs(v).max()
    return np.interp(np.mod(phi, 1.0), np.concatenate([grid, [1.0]]), np.concatenate([v, v[:1]]))


def _gait(g: _Gait) -> _Motion:
    duration = g.period * g.cycles
    F = _frames(duration)
    t = np.arange(F) / FPS
    phase = t / g.period
    parts: list[Pose] = []
    stance_w = np.zeros((F, 2))
    h_l = None
    for k, side in enumerate(("l", "r")):
        phi = np.mod(phase + 0.5 * k, 1.0)
        scale = 1.0 - 0.45 * g.asym if side == "r" else 1.0
        h = _hip_profile(phi, g.stance)
        if side == "l":
            h_l = h
        flex = g.hip_bias + g.hip * scale * h + g.drive * _bump(phi, g.stance + 0.05, 1.0)
        knee = (
            g.knee_base
            + g.knee_load * _bump(phi, 0.0, min(0.4, g.stance))
            + g.knee_swing * scale * _bump(phi, g.stance - 0.15, 1.0)
        )
        ankle = g.ankle_push * _bump(phi, g.stance - 0.2, g.stance + 0.12) - g.toe_up * _bump(phi, g.stance + 0.1, 1.05)
        if g.shake:
            knee = knee + g.shake * 0.5 * (1 + np.sin(2 * np.pi * 7.0 * t + k))
        parts.append(leg(side, flex=flex, knee=knee, ankle=ankle, abd=g.abd))
        stance_w[:, k] = (phi < g.stance).astype(float)
    assert h_l is not None
    # Pelvis and trunk follow the left leg's swing (h_l = +1: left leg forward).
    parts.append(hips(yaw=-g.pelvis_yaw * h_l, roll=g.pelvis_roll * np.sin(2 * np.pi * phase)))
    sway = g.side_sway * np.sin(2 * np.pi * phase + np.pi / 2)
    tremor = g.shake * np.sin(2 * np.pi * 5.3 * t) if g.shake else 0.0
    parts.append(trunk(bend=g.lean + tremor, side=sway, twist=0.8 * g.pelvis_yaw * h_l))
    parts.append(head(nod=g.head_nod - 0.5 * g.lean, turn=-0.3 * g.pelvis_yaw * h_l))
    if g.arm_pose is not None:
        parts.append(g.arm_pose(phase))
    else:
        for side, sign in (("l", -1.0), ("r", 1.0)):
            a = sign * g.arm_swing * h_l  # the left arm swings with the right leg
            b = np.radians(g.arm_out)
            ar = np.radians(a)
            d = np.stack([np.full(F, np.sin(b)), -np.cos(b) * np.cos(ar), np.cos(b) * np.sin(ar)], axis=-1)
            el = g.elbow + g.elbow_swing * np.clip(a / max(g.arm_swing, 1e-6), 0, 1)
            parts.append(arm(side, d=d, elbow=el))
    if g.extra is not None:
        parts.append(g.extra(phase))
    rot = _pose(*parts, frames=F)
    if g.backward:
        rot = rot[::-1].copy()
        stance_w = stance_w[::-1].copy()
    air = []
    if g.bounce > 0 and g.stance < 0.5:
        for c in range(g.cycles):
            for k in range(2):
                t0 = (c + 0.5 * k + g.stance) * g.period
                t1 = (c + 0.5 * k + 0.5) * g.period
                air.append((t0, t1, g.bounce))
    return _Motion(rot, plant="stance", stance=stance_w if g.stance < 0.5 else None, air=air)


# ---------------------------------------------------------------------------------------------------------------------
# The registry

ACTIONS: dict[int, Action] = {}
_BUILDERS: dict[int, Callable[[], _Motion]] = {}


def _register(action_id: int, key: str, name: str, category: str, sub: str, loop: bool, duration: float, desc: str):
    def deco(fn: Callable[[float], _Motion]):
        d = round(duration * FPS) / FPS
        ACTIONS[action_id] = Action(action_id, key, name, category, sub, loop, d, desc)
        _BUILDERS[action_id] = lambda: fn(d)
        return fn

    return deco


def _gait_action(action_id, key, name, category, sub, desc, **params):
    g = _Gait(**params)
    g.period = round(g.period * FPS) / FPS
    d = g.period * g.cycles
    ACTIONS[action_id] = Action(action_id, key, name, category, sub, True, round(d * FPS) / FPS, desc)
    _BUILDERS[action_id] = lambda: _gait(g)


# Arm directions (lateral, up, forward) in the left arm's terms.
DOWN = (0.22, -1.0, 0.03)
SIDE = (1.0, 0.0, 0.0)
UP = (0.25, 1.0, 0.05)
FWD = (0.05, 0.0, 1.0)


def _guard() -> Pose:
    return {**arms(d=(0.35, -0.75, 0.45), twist=-20, elbow=125, wrist=10), **trunk(bend=8), **head(nod=8)}


def _fight_legs(knee=15.0) -> Pose:
    return {**leg("l", flex=14, knee=knee, abd=4), **leg("r", flex=-10, knee=knee, abd=4, twist=-15)}


def _wave_arm(side: str, elbow: np.ndarray | float, high=0.35) -> Pose:
    return arm(side, d=(1.0, high, 0.25), twist=-90, elbow=elbow)


# ---- WalkAndRun: walking ----
_gait_action(1, "walking_woman", "Walking_Woman", "WalkAndRun", "Walking",
             "a woman walks forward with a gentle hip sway", period=1.07, hip=22, abd=-1.5, pelvis_roll=5,
             pelvis_yaw=6, arm_swing=16, arm_out=9, side_sway=2.5)  # fmt: skip
_gait_action(30, "casual_walk", "Casual_Walk", "WalkAndRun", "Walking",
             "a person walks forward at a relaxed, casual pace")  # fmt: skip
_gait_action(106, "confident_walk", "Confident_Walk", "WalkAndRun", "Walking",
             "walks forward confidently with chest up and big arm swing", period=1.07, hip=26, arm_swing=26,
             lean=-2, head_nod=-4, elbow=8)  # fmt: skip
_gait_action(107, "confident_strut", "Confident_Strut", "WalkAndRun", "Walking",
             "struts with swagger, swinging shoulders and hips", period=1.13, hip=25, pelvis_yaw=9, pelvis_roll=6,
             arm_swing=24, arm_out=16, lean=-3, side_sway=4)  # fmt: skip
_gait_action(114, "proud_strut", "Proud_Strut", "WalkAndRun", "Walking",
             "a proud strut with the head held high", period=1.2, hip=24, lean=-5, head_nod=-10, arm_swing=18,
             pelvis_roll=5)  # fmt: skip
_gait_action(115, "quick_walk", "Quick_Walk", "WalkAndRun", "Walking",
             "walks quickly, hurrying forward with brisk steps", period=0.9, hip=27, knee_swing=62, arm_swing=30,
             elbow=35, elbow_swing=25, lean=6)  # fmt: skip
_gait_action(544, "walk_backward", "Walk_Backward", "WalkAndRun", "Walking",
             "walks backward, stepping back in reverse", period=1.2, hip=18, knee_swing=50, arm_swing=12,
             lean=4, backward=True)  # fmt: skip
_gait_action(111, "injured_walk", "Injured_Walk", "WalkAndRun", "Walking",
             "an injured person walks slowly favouring one leg", period=1.4, hip=18, asym=0.8, lean=10,
             side_sway=6, arm_swing=8, head_nod=8,
             extra=lambda p: arm("r", d=(0.2, -0.9, 0.3), twist=-30, elbow=70))  # fmt: skip
_gait_action(558, "limping_walk", "Limping_Walk", "WalkAndRun", "Walking",
             "limps forward on a hurt leg", period=1.33, hip=19, asym=1.0, lean=6, side_sway=8, arm_swing=12,
             pelvis_roll=6)  # fmt: skip


def _sneak_arms(p):
    return {**arms(d=(0.45, -0.6, 0.6), twist=-30, elbow=80, wrist=20)}


_gait_action(559, "sneaky_walk", "Sneaky_Walk", "WalkAndRun", "Walking",
             "sneaks forward on tiptoe, crouched and quiet", period=1.6, hip=22, hip_bias=18, knee_base=30,
             knee_swing=55, lean=20, head_nod=-10, arm_pose=_sneak_arms, ankle_push=8)  # fmt: skip
_gait_action(524, "cautious_crouch_walk_forward", "Cautious_Crouch_Walk_Forward", "WalkAndRun", "CrouchWalking",
             "crouches low and walks forward cautiously", period=1.4, hip=20, hip_bias=30, knee_base=55,
             knee_swing=45, lean=28, head_nod=-20, arm_swing=10, arm_out=20, elbow=40)  # fmt: skip
_gait_action(112, "monster_walk", "Monster_Walk", "WalkAndRun", "Walking",
             "a heavy monster lumbers forward with arms raised like claws", period=1.5, hip=22, abd=9,
             knee_base=15, pelvis_roll=8, side_sway=8, lean=15, head_nod=-15,
             arm_pose=lambda p: arms(d=(0.6, 0.1, 0.7), twist=-40, elbow=50, wrist=30))  # fmt: skip
_gait_action(553, "elderly_shaky_walk", "Elderly_Shaky_Walk", "WalkAndRun", "Walking",
             "an elderly person walks slowly with a stoop and shaky legs", period=1.6, hip=14, knee_base=12,
             knee_swing=40, lean=22, head_nod=-14, arm_swing=6, elbow=30, shake=2.0, ankle_push=6)  # fmt: skip


def _texting(p):
    return {**arms(d=(0.25, -0.85, 0.2), twist=-25, elbow=105, wrist=-10), **head(nod=35)}


_gait_action(122, "texting_walk", "Texting_Walk", "WalkAndRun", "Walking",
             "walks while looking down, texting on a phone held in both hands", period=1.2, hip=20,
             arm_pose=_texting)  # fmt: skip


def _phone_ear(p):
    f = p.shape[0]
    return {
        **arm("l", d=np.tile([0.22, -1.0, 0.03], (f, 1)) + np.outer(np.sin(2 * np.pi * p), [0, 0, -0.25]), elbow=14),
        **arm("r", d=(0.55, -0.75, 0.35), twist=-70, elbow=150, wrist=10),
        **head(tilt=-6),
    }


_gait_action(124, "walking_with_phone", "Walking_with_Phone", "WalkAndRun", "Walking",
             "walks while talking on a phone held to the ear", period=1.2, hip=21, arm_pose=_phone_ear)  # fmt: skip
_gait_action(551, "carry_heavy_object_walk", "Carry_Heavy_Object_Walk", "WalkAndRun", "Walking",
             "carries a heavy box in front with both arms while walking", period=1.3, hip=18, lean=-4, knee_base=8,
             side_sway=4, pelvis_roll=5, arm_pose=lambda p: arms(d=(0.3, -0.55, 0.75), twist=-60, elbow=75,
                                                                 wrist=-15))  # fmt: skip
_gait_action(21, "walk_fight_forward", "Walk_Fight_Forward", "WalkAndRun", "Walking",
             "steps forward in a fighting guard with fists up", period=1.2, hip=16, knee_base=18, hip_bias=8,
             lean=8, arm_pose=lambda p: _guard())  # fmt: skip
_gait_action(121, "thoughtful_walk", "Thoughtful_Walk", "WalkAndRun", "Walking",
             "walks slowly, deep in thought, hand on chin", period=1.4, hip=18, head_nod=15,
             arm_pose=lambda p: {**arm("l", d=(0.3, -0.85, 0.3), twist=-60, elbow=95),
                                 **arm("r", d=(0.25, -0.6, 0.7), twist=-75, elbow=150, wrist=20)})  # fmt: skip

# ---- WalkAndRun: running ----
_RUN = dict(
    stance=0.36,
    hip=24,
    hip_bias=6,
    drive=28,
    knee_load=22,
    knee_base=8,
    knee_swing=100,
    ankle_push=22,
    toe_up=10,
    arm_swing=34,
    arm_out=10,
    elbow=80,
    elbow_swing=20,
    lean=10,
    pelvis_yaw=7,
    bounce=0.05,
    side_sway=1.0,
)
_gait_action(14, "run_02", "Run_02", "WalkAndRun", "Running", "a person runs forward at a steady pace",
             **{**_RUN, "period": 0.73})  # fmt: skip
_gait_action(15, "run_03", "Run_03", "WalkAndRun", "Running", "runs forward with relaxed arms",
             **{**_RUN, "period": 0.77, "hip": 22, "arm_swing": 26, "elbow": 70, "lean": 7})  # fmt: skip
_gait_action(16, "run_fast", "RunFast", "WalkAndRun", "Running", "runs fast, a quick running stride",
             **{**_RUN, "period": 0.63, "hip": 27, "drive": 34, "knee_swing": 115, "arm_swing": 42, "lean": 14,
                "bounce": 0.06})  # fmt: skip
_gait_action(509, "lean_forward_sprint", "Lean_Forward_Sprint", "WalkAndRun", "Running",
             "sprints at top speed leaning forward, pumping the arms",
             **{**_RUN, "period": 0.6, "hip": 28, "hip_bias": 10, "drive": 40, "knee_swing": 120, "arm_swing": 50,
                "lean": 22, "stance": 0.32, "bounce": 0.07, "head_nod": -8})  # fmt: skip


def _hello_run_arms(p):
    f = p.shape[0]
    h = _hip_profile(np.mod(p, 1.0), 0.36)
    a = np.radians(34 * h)
    d = np.stack([np.full(f, 0.17), -np.cos(a), -np.sin(a)], axis=-1)
    return {**arm("l", d=d, elbow=80), **_wave_arm("r", 90 + 30 * np.sin(2 * np.pi * 2.5 * p), high=0.6)}


_gait_action(110, "hello_run", "Hello_Run", "WalkAndRun", "Running", "runs forward while waving hello with one hand",
             **{**_RUN, "period": 0.77, "arm_pose": _hello_run_arms})  # fmt: skip

# ---- BodyMovements: stylised walks ----
_gait_action(62, "penguin_walk", "penguin_walk", "BodyMovements", "Acting",
             "waddles like a penguin with stiff legs and arms out", period=0.8, hip=10, knee_swing=20, knee_load=2,
             pelvis_roll=10, side_sway=14, pelvis_yaw=2,
             arm_pose=lambda p: arms(d=(0.6, -1.0, -0.05), elbow=2, wrist=-40))  # fmt: skip
_gait_action(113, "mummy_stagger", "Mummy_Stagger", "BodyMovements", "Acting",
             "staggers stiffly like a mummy with both arms stretched forward", period=1.6, hip=16, knee_swing=25,
             side_sway=10, pelvis_roll=8, head_nod=10,
             arm_pose=lambda p: arms(d=(0.15, -0.05, 1.0), elbow=5, wrist=15))  # fmt: skip
_gait_action(40, "excited_walk_m", "Excited_Walk_M", "BodyMovements", "Acting",
             "an excited, bouncy walk with pumping arms", period=0.9, hip=26, knee_load=20, knee_swing=70,
             arm_swing=40, elbow=60, lean=0, head_nod=-6)  # fmt: skip


# ---- DailyActions: idles ----
@_register(0, "idle", "Idle", "DailyActions", "Idle", True, 4.0, "stands still in a relaxed idle, breathing")
def _idle(d):
    a = _pose(trunk(bend=1), head(nod=2))
    b = _pose(trunk(bend=-1, side=0.5), head(nod=0, turn=2), arms(d=(0.24, -1.0, 0.04), elbow=10))
    return _Motion(_keys(d, [(0, a), (d / 2, b), (d, a)], True))


@_register(11, "idle_02", "Idle_02", "DailyActions", "Idle", True, 5.0, "idles, shifting weight from foot to foot")
def _idle2(d):
    a = _pose(hips(roll=-3), leg("l", knee=2, abd=3), leg("r", knee=12, abd=1), trunk(side=2), head(tilt=-2))
    b = _pose(hips(roll=3), leg("r", knee=2, abd=3), leg("l", knee=12, abd=1), trunk(side=-2), head(tilt=2))
    return _Motion(_keys(d, [(0, a), (d / 2, b), (d, a)], True))


@_register(12, "idle_03", "Idle_03", "DailyActions", "Idle", True, 4.0, "stands with arms crossed, idle")
def _idle3(d):
    crossed = arms(d=(0.35, -0.6, 0.45), twist=-60, elbow=120)
    a = _pose(crossed, head(turn=-5), legs(abd=5))
    b = _pose(crossed, head(turn=8, nod=4), legs(abd=5), trunk(bend=-2))
    return _Motion(_keys(d, [(0, a), (d / 2, b), (d, a)], True))


@_register(2, "alert", "Alert", "DailyActions", "LookingAround", True, 3.0, "alert, looks around warily")
def _alert(d):
    base = (legs(knee=12, abd=5), arms(d=(0.35, -0.9, 0.2), elbow=30))
    a = _pose(*base, head(turn=-35), trunk(twist=-10, bend=6))
    b = _pose(*base, head(turn=35), trunk(twist=10, bend=6))
    return _Motion(_keys(d, [(0, a), (d / 2, b), (d, a)], True))


@_register(333, "look_around_dumbfounded", "Look_Around_Dumbfounded", "DailyActions", "LookingAround", False, 3.5,
           "looks around dumbfounded, confused and lost")  # fmt: skip
def _dumbfounded(d):
    open_arms = arms(d=(0.5, -0.8, 0.3), twist=-80, elbow=70, wrist=-20)
    n = _pose()
    return _Motion(_keys(d, [(0, n), (0.6, _pose(open_arms, head(turn=-40, tilt=5))),
                             (1.6, _pose(open_arms, head(turn=40, tilt=-5))), (2.5, _pose(open_arms, head(nod=-10))),
                             (d, n)], False))  # fmt: skip


@_register(31, "catching_breath", "Catching_Breath", "BodyMovements", "Acting", True, 2.0,
           "bent over with hands on knees, catching breath after running")  # fmt: skip
def _breath(d):
    def p(b):
        return _pose(
            trunk(bend=40 + b), head(nod=-25), legs(flex=25, knee=30), arms(d=(0.1, -0.9, 0.55), twist=-20, elbow=20)
        )

    return _Motion(_keys(d, [(0, p(0)), (d / 2, p(6)), (d, p(0))], True))


# ---- DailyActions: interacting ----
@_register(28, "big_wave_hello", "Big_Wave_Hello", "DailyActions", "Interacting", False, 3.0,
           "waves hello with a big, wide arm wave overhead")  # fmt: skip
def _big_wave(d):
    n = _pose()

    def up(lat):
        return _pose(
            arm("r", d=(lat, 1.0, 0.25), twist=-90, elbow=20), trunk(side=3 if lat > 0.5 else -2), head(turn=-5)
        )

    keys = [(0, n), (0.5, up(0.55)), (0.9, up(1.2)), (1.3, up(0.1)), (1.7, up(1.2)), (2.1, up(0.2)), (d, n)]
    return _Motion(_keys(d, keys, False))


@_register(290, "wave_one_hand", "Wave_One_Hand", "DailyActions", "Interacting", False, 2.5,
           "waves one hand to say hi or goodbye")  # fmt: skip
def _wave_one(d):
    n = _pose()
    keys = [(0, n)] + [(0.5 + 0.3 * i, _pose(_wave_arm("r", 60 if i % 2 else 110), head(turn=-4))) for i in range(5)]
    return _Motion(_keys(d, keys + [(d, n)], False))


@_register(291, "wave_for_help", "Wave_for_Help", "DailyActions", "Interacting", True, 2.0,
           "waves both arms overhead frantically to call for help")  # fmt: skip
def _wave_help(d):
    a = _pose(arm("l", d=(1.0, 1.0, 0.2), elbow=10), arm("r", d=(0.2, 1.0, 0.2), elbow=10), head(nod=-15))
    b = _pose(arm("l", d=(0.2, 1.0, 0.2), elbow=10), arm("r", d=(1.0, 1.0, 0.2), elbow=10), head(nod=-15))
    return _Motion(_keys(d, [(0, a), (0.5, b), (1.0, a), (1.5, b), (d, a)], True))


@_register(
    25, "agree_gesture", "Agree_Gesture", "DailyActions", "Interacting", False, 2.0, "nods the head yes, agreeing"
)
def _agree(d):
    n = _pose()
    keys = [(0, n), (0.4, _pose(head(nod=18))), (0.7, _pose(head(nod=-5))), (1.0, _pose(head(nod=18))),
            (1.3, _pose(head(nod=-3))), (d, n)]  # fmt: skip
    return _Motion(_keys(d, keys, False))


@_register(41, "formal_bow", "Formal_Bow", "DailyActions", "Interacting", False, 3.0,
           "bows formally from the waist, a polite greeting")  # fmt: skip
def _bow(d):
    n = _pose(arms(d=(0.08, -1.0, 0.0), elbow=5))
    down = _pose(trunk(bend=55), head(nod=10), hips(pitch=15), arms(d=(0.05, -1.0, 0.35), elbow=5))
    return _Motion(_keys(d, [(0, n), (1.0, down), (1.8, down), (d, n)], False))


@_register(317, "shrug", "Shrug", "DailyActions", "Interacting", False, 2.0, "shrugs the shoulders, I don't know")
def _shrug(d):
    n = _pose()
    s = _pose(arms(d=(0.45, -0.8, 0.25), twist=-80, elbow=85, wrist=-25, shrug=14), head(tilt=8, nod=-4))
    return _Motion(_keys(d, [(0, n), (0.6, s), (1.2, s), (d, n)], False))


@_register(298, "cheer_with_both_hands_up", "Cheer_with_Both_Hands_Up", "DailyActions", "Interacting", True, 1.6,
           "cheers with both hands raised high, celebrating")  # fmt: skip
def _cheer_up(d):
    a = _pose(arms(d=(0.45, 1.0, 0.15), elbow=10), head(nod=-15), trunk(bend=-5))
    b = _pose(arms(d=(0.6, 1.0, 0.25), elbow=40), head(nod=-10), trunk(bend=-2), legs(knee=15))
    return _Motion(_keys(d, [(0, a), (d / 2, b), (d, a)], True))


@_register(313, "talk_with_hands_open", "Talk_with_Hands_Open", "DailyActions", "Interacting", True, 3.0,
           "talks and explains with open hands gesturing")  # fmt: skip
def _talk(d):
    a = _pose(arms(d=(0.35, -0.75, 0.5), twist=-70, elbow=70, wrist=-15), head(nod=3))
    b = _pose(arm("l", d=(0.5, -0.6, 0.6), twist=-80, elbow=60, wrist=-25),
              arm("r", d=(0.25, -0.85, 0.35), twist=-60, elbow=85), head(turn=8, tilt=3))  # fmt: skip
    c = _pose(arm("r", d=(0.5, -0.6, 0.6), twist=-80, elbow=60, wrist=-25),
              arm("l", d=(0.25, -0.85, 0.35), twist=-60, elbow=85), head(turn=-8, tilt=-3))  # fmt: skip
    return _Motion(_keys(d, [(0, a), (0.9, b), (1.9, c), (d, a)], True))


@_register(36, "confused_scratch", "Confused_Scratch", "DailyActions", "Idle", False, 3.0,
           "scratches the head, confused and puzzled")  # fmt: skip
def _scratch(d):
    n = _pose()
    s1 = _pose(arm("r", d=(0.7, 0.45, 0.25), twist=-90, elbow=145, wrist=20), head(tilt=-10, nod=5))
    s2 = _pose(arm("r", d=(0.7, 0.55, 0.25), twist=-90, elbow=135, wrist=20), head(tilt=-12, nod=5))
    return _Motion(_keys(d, [(0, n), (0.7, s1), (1.0, s2), (1.3, s1), (1.6, s2), (2.0, s1), (d, n)], False))


@_register(50, "phone_call_gesture", "Phone_Call_Gesture", "DailyActions", "Interacting", True, 3.0,
           "talks on a phone held to the ear")  # fmt: skip
def _phone(d):
    a = _pose(arm("r", d=(0.55, -0.75, 0.35), twist=-70, elbow=150, wrist=10), head(tilt=-6),
              arm("l", d=(0.3, -0.8, 0.3), twist=-50, elbow=60))  # fmt: skip
    b = _pose(arm("r", d=(0.55, -0.75, 0.35), twist=-70, elbow=150, wrist=10), head(tilt=-3, turn=10),
              arm("l", d=(0.4, -0.7, 0.5), twist=-70, elbow=75, wrist=-20))  # fmt: skip
    return _Motion(_keys(d, [(0, a), (d / 2, b), (d, a)], True))


@_register(26, "angry_stomp", "Angry_Stomp", "DailyActions", "Interacting", False, 2.4,
           "stomps a foot angrily with clenched fists")  # fmt: skip
def _stomp(d):
    fists = arms(d=(0.3, -0.9, 0.1), twist=-20, elbow=45, shrug=6)
    n = _pose()
    up = _pose(fists, leg("r", flex=45, knee=70), trunk(bend=8), head(nod=10))
    hit = _pose(fists, leg("r", flex=8, knee=10), trunk(bend=14), head(nod=14))
    keys = [(0, n), (0.4, up), (0.6, hit), (0.95, up), (1.15, hit), (1.6, hit), (d, n)]
    return _Motion(_keys(d, keys, False), plant="l")


@_register(342, "stand_and_drink", "Stand_and_Drink", "DailyActions", "Drinking", False, 3.5,
           "stands and drinks from a cup or bottle")  # fmt: skip
def _drink(d):
    n = _pose()
    lift = _pose(arm("r", d=(0.3, -0.7, 0.6), twist=-80, elbow=140, wrist=10), head(nod=-5))
    sip = _pose(arm("r", d=(0.4, -0.35, 0.75), twist=-80, elbow=150, wrist=20), head(nod=-25), trunk(bend=-4))
    return _Motion(_keys(d, [(0, n), (0.8, lift), (1.4, sip), (2.3, sip), (2.9, lift), (d, n)], False))


# ---- DailyActions: sitting, lying, workouts ----
def _seated(**kw) -> Pose:
    return {**legs(flex=90, knee=90, abd=6), **trunk(bend=-6 + kw.get("bend", 0)), **arms(d=(0.2, -0.7, 0.7),
            twist=-30, elbow=40)}  # fmt: skip


@_register(33, "chair_sit_idle_m", "Chair_Sit_Idle_M", "DailyActions", "Idle", True, 4.0,
           "sits on a chair, idle and relaxed")  # fmt: skip
def _sit_idle(d):
    a = _pose(_seated(), head(nod=2))
    b = _pose(_seated(bend=3), head(turn=10, nod=5))
    return _Motion(_keys(d, [(0, a), (d / 2, b), (d, a)], True))


@_register(57, "stand_to_sit_transition_m", "Stand_to_Sit_Transition_M", "DailyActions", "Transitioning", False, 2.0,
           "sits down on a chair from standing")  # fmt: skip
def _stand_to_sit(d):
    mid = _pose(legs(flex=60, knee=75, abd=4), trunk(bend=35), arms(d=(0.2, -0.8, 0.5), elbow=30), head(nod=-15))
    return _Motion(_keys(d, [(0, _pose()), (0.9, mid), (1.6, _pose(_seated())), (d, _pose(_seated()))], False))


@_register(53, "sit_to_stand_transition_m", "Sit_to_Stand_Transition_M", "DailyActions", "Transitioning", False, 2.0,
           "stands up from sitting on a chair")  # fmt: skip
def _sit_to_stand(d):
    mid = _pose(legs(flex=60, knee=75, abd=4), trunk(bend=38), arms(d=(0.2, -0.8, 0.5), elbow=30), head(nod=-15))
    return _Motion(_keys(d, [(0, _pose(_seated())), (0.3, _pose(_seated())), (0.9, mid), (d, _pose())], False))


@_register(363, "sit_cross_legged_on_floor", "Sit_Cross_Legged_on_Floor", "DailyActions", "Transitioning", True, 4.0,
           "sits cross-legged on the floor")  # fmt: skip
def _cross_legged(d):
    def p(b):
        return _pose(leg("l", flex=80, knee=140, abd=55, twist=-30, level=False),
                     leg("r", flex=80, knee=140, abd=55, twist=-30, level=False), trunk(bend=5 + b), head(nod=b),
                     arms(d=(0.35, -0.85, 0.45), twist=-20, elbow=35))  # fmt: skip

    return _Motion(_keys(d, [(0, p(0)), (d / 2, p(4)), (d, p(0))], True), ground="body")


@_register(267, "sleep_normally", "Sleep_Normally", "DailyActions", "Sleeping", True, 4.0,
           "lies on the back asleep, breathing slowly")  # fmt: skip
def _sleep(d):
    def p(b):
        return _pose(hips(pitch=-90), legs(flex=b * 0.2, knee=4), trunk(bend=-b * 0.5), head(nod=-5, turn=15),
                     arms(d=(0.3, -1.0, 0.0), elbow=15))  # fmt: skip

    return _Motion(_keys(d, [(0, p(0)), (d / 2, p(3)), (d, p(0))], True), ground="body")


@_register(319, "air_squat", "air_squat", "DailyActions", "WorkingOut", True, 2.4,
           "does bodyweight squats, bending the knees deeply")  # fmt: skip
def _squat(d):
    up = _pose(legs(abd=8), arms(d=(0.15, -0.2, 1.0), elbow=5))
    down = _pose(legs(flex=95, knee=115, abd=14), trunk(bend=30), head(nod=-25), arms(d=(0.15, -0.05, 1.0), elbow=5))
    return _Motion(_keys(d, [(0, up), (d / 2, down), (d, up)], True))


@_register(326, "jumping_jacks", "jumping_jacks", "DailyActions", "WorkingOut", True, 1.2,
           "does jumping jacks, arms and legs out and in")  # fmt: skip
def _jacks(d):
    closed = _pose(legs(knee=12), arms(d=(0.15, -1.0, 0.0), elbow=5))
    opened = _pose(legs(knee=6, abd=14), arms(d=(0.3, 1.0, 0.0), elbow=5))
    rot = _keys(d, [(0, closed), (0.3, opened), (0.6, closed), (0.9, opened), (d, closed)], True)
    return _Motion(rot, air=[(0.05, 0.25, 0.06), (0.35, 0.55, 0.06), (0.65, 0.85, 0.06), (0.95, 1.15, 0.06)])


@_register(320, "bicep_curl", "bicep_curl", "DailyActions", "WorkingOut", True, 2.0,
           "curls dumbbells, bending the elbows to lift the weights")  # fmt: skip
def _curl(d):
    down = _pose(arms(d=(0.15, -1.0, 0.08), twist=-20, elbow=8), legs(abd=4))
    up = _pose(arms(d=(0.15, -1.0, 0.15), twist=-20, elbow=140), legs(abd=4), trunk(bend=-3))
    return _Motion(_keys(d, [(0, down), (d / 2, up), (d, down)], True))


# ---- BodyMovements: jumps and gestures ----
def _jump(d, arm_up: Pose, legs_air: Pose | None = None, apex=0.35, t_off=0.7, t_land=1.25):
    n = _pose()
    crouch = _pose(legs(flex=55, knee=90), trunk(bend=28), arms(d=(0.15, -0.9, -0.45), elbow=10), head(nod=-10))
    push = _pose(legs(knee=2, ankle=30), trunk(bend=-3), arm_up)
    air = _pose(legs_air or legs(flex=20, knee=35), arm_up)
    land = _pose(legs(flex=45, knee=70), trunk(bend=20), arms(d=(0.4, -0.6, 0.4), elbow=20))
    keys = [(0, n), (0.45, crouch), (t_off, push), ((t_off + t_land) / 2, air), (t_land, push), (t_land + 0.2, land),
            (d, n)]  # fmt: skip
    return _Motion(_keys(d, keys, False), air=[(t_off, t_land, apex)])


@_register(466, "regular_jump", "Regular_Jump", "BodyMovements", "Jumping", False, 2.2,
           "jumps straight up into the air and lands")  # fmt: skip
def _regular_jump(d):
    return _jump(d, arms(d=(0.2, 0.6, 0.6), elbow=15))


@_register(460, "jump_with_arms_open", "Jump_with_Arms_Open", "BodyMovements", "Jumping", False, 2.2,
           "jumps with both arms flung open wide")  # fmt: skip
def _jump_open(d):
    return _jump(d, arms(d=(1.0, 0.5, 0.1), elbow=5))


@_register(461, "jump_with_arms_and_legs_open", "Jump_with_Arms_and_Legs_Open", "BodyMovements", "Jumping", False,
           2.2, "a star jump with arms and legs spread open")  # fmt: skip
def _star_jump(d):
    return _jump(d, arms(d=(1.0, 0.8, 0.05), elbow=5), legs(abd=25, knee=5), apex=0.4)


@_register(417, "hop_with_arms_raised", "Hop_with_Arms_Raised", "BodyMovements", "Acting", True, 1.0,
           "hops up and down repeatedly with arms raised")  # fmt: skip
def _hop(d):
    up = arms(d=(0.35, 1.0, 0.15), elbow=15)
    low = _pose(up, legs(flex=25, knee=40))
    high = _pose(up, legs(knee=4, ankle=25))
    return _Motion(_keys(d, [(0, low), (0.25, high), (0.5, low), (0.75, high), (d, low)], True),
                   air=[(0.12, 0.38, 0.12), (0.62, 0.88, 0.12)])  # fmt: skip


@_register(44, "happy_jump_f", "Happy_jump_f", "BodyMovements", "Acting", False, 2.2,
           "jumps for joy, happy and excited")  # fmt: skip
def _happy_jump(d):
    return _jump(d, arms(d=(0.6, 1.0, 0.3), elbow=30), legs(flex=10, knee=80), apex=0.3)


@_register(388, "show_both_arm_muscles", "Show_Both_Arm_Muscles", "BodyMovements", "Acting", False, 2.5,
           "flexes both biceps, showing off arm muscles")  # fmt: skip
def _flex(d):
    n = _pose()
    f = _pose(arms(d=(1.0, 0.2, 0.05), twist=-90, elbow=120, shrug=5), trunk(bend=-4), head(nod=-5), legs(abd=7))
    f2 = _pose(arms(d=(1.0, 0.25, 0.05), twist=-90, elbow=135, shrug=8), trunk(bend=-5), head(nod=-6), legs(abd=7))
    return _Motion(_keys(d, [(0, n), (0.6, f), (1.0, f2), (1.4, f), (1.8, f2), (d, n)], False))


@_register(403, "victory_fist_pump", "Victory_Fist_Pump", "BodyMovements", "Acting", False, 2.0,
           "pumps a fist in victory, yes!")  # fmt: skip
def _fist_pump(d):
    n = _pose()
    up = _pose(arm("r", d=(0.5, -0.3, 0.6), twist=-80, elbow=120), trunk(bend=6), head(nod=5), legs(knee=10))
    down = _pose(arm("r", d=(0.3, -0.9, 0.3), twist=-60, elbow=130), trunk(bend=14), legs(knee=22), head(nod=10))
    return _Motion(_keys(d, [(0, n), (0.5, up), (0.8, down), (1.1, up), (1.4, down), (d, n)], False))


@_register(59, "victory_cheer", "Victory_Cheer", "BodyMovements", "Acting", False, 2.5,
           "cheers in victory, throwing both fists in the air")  # fmt: skip
def _victory(d):
    n = _pose()
    up = _pose(arms(d=(0.4, 1.0, 0.1), elbow=15), head(nod=-20), trunk(bend=-8))
    pump = _pose(arms(d=(0.6, 0.8, 0.2), elbow=60), head(nod=-12), trunk(bend=-4), legs(knee=10))
    return _Motion(_keys(d, [(0, n), (0.5, up), (0.8, pump), (1.1, up), (1.4, pump), (1.7, up), (d, n)], False))


@_register(408, "jazz_hands", "Jazz_Hands", "BodyMovements", "Acting", True, 1.2,
           "shows jazz hands, shaking open palms beside the face")  # fmt: skip
def _jazz_hands(d):
    a = _pose(arms(d=(0.7, -0.2, 0.6), twist=-90, elbow=110, wrist=-30), legs(knee=10), head(tilt=4))
    b = _pose(arms(d=(0.8, -0.1, 0.55), twist=-90, elbow=100, wrist=-10), legs(knee=14), head(tilt=-4))
    return _Motion(_keys(d, [(0, a), (0.3, b), (0.6, a), (0.9, b), (d, a)], True))


@_register(409, "finger_wag_no", "Finger_Wag_No", "BodyMovements", "Acting", False, 2.2,
           "wags a finger, saying no no no")  # fmt: skip
def _finger_wag(d):
    n = _pose()
    keys = [(0, n)] + [(0.5 + 0.25 * i, _pose(arm("r", d=(0.3, -0.5, 0.8), twist=-90, elbow=110 + (18 if i % 2 else
            -18)), head(turn=-8 if i % 2 else 8))) for i in range(5)] + [(d, n)]  # fmt: skip
    return _Motion(_keys(d, keys, False))


@_register(51, "shouting_angrily", "Shouting_Angrily", "BodyMovements", "Acting", False, 2.5,
           "shouts angrily, leaning forward with fists clenched")  # fmt: skip
def _shout(d):
    n = _pose()
    s = _pose(arms(d=(0.45, -0.8, 0.1), twist=-30, elbow=60, shrug=8), trunk(bend=18), head(nod=-22), legs(knee=12))
    s2 = _pose(arms(d=(0.5, -0.7, 0.15), twist=-30, elbow=70, shrug=10), trunk(bend=22), head(nod=-26), legs(knee=15))
    return _Motion(_keys(d, [(0, n), (0.5, s), (1.0, s2), (1.5, s), (d, n)], False))


@_register(385, "boxing_warmup", "Boxing_Warmup", "BodyMovements", "Acting", True, 1.4,
           "bounces on the toes warming up for boxing")  # fmt: skip
def _warmup(d):
    a = _pose(_guard(), legs(knee=15, abd=5, ankle=10), hips(yaw=10), trunk(twist=5))
    b = _pose(_guard(), legs(knee=25, abd=5, ankle=5), hips(yaw=-10), trunk(twist=-5))
    return _Motion(_keys(d, [(0, a), (0.35, b), (0.7, a), (1.05, b), (d, a)], True))


# ---- Fighting ----
@_register(89, "combat_stance", "Combat_Stance", "Fighting", "AttackingwithWeapon", True, 2.0,
           "stands in a combat stance, ready to fight")  # fmt: skip
def _combat(d):
    a = _pose(_guard(), _fight_legs(15), hips(yaw=-15), trunk(twist=10))
    b = _pose(_guard(), _fight_legs(22), hips(yaw=-15), trunk(twist=12, bend=10))
    return _Motion(_keys(d, [(0, a), (d / 2, b), (d, a)], True))


def _strike(d, hit: Pose, hold=0.15, t_hit=0.45, plant="avg") -> _Motion:
    g = _pose(_guard(), _fight_legs(), hips(yaw=-15), trunk(twist=10))
    h = _pose(_guard(), _fight_legs(), hit)
    return _Motion(_keys(d, [(0, g), (t_hit, h), (t_hit + hold, h), (d, g)], False), plant=plant)


@_register(191, "left_jab_from_guard", "Left_Jab_from_Guard", "Fighting", "Punching", False, 1.2,
           "throws a quick left jab punch from a boxing guard")  # fmt: skip
def _left_jab(d):
    return _strike(d, {**arm("l", d=(0.05, 0.08, 1.0), twist=-80, elbow=3), **hips(yaw=-20), **trunk(twist=-12)},
                   t_hit=0.35)  # fmt: skip


@_register(192, "right_jab_from_guard", "Right_Jab_from_Guard", "Fighting", "Punching", False, 1.3,
           "throws a straight right punch from a boxing guard")  # fmt: skip
def _right_jab(d):
    return _strike(d, {**arm("r", d=(-0.1, 0.08, 1.0), twist=-80, elbow=3), **hips(yaw=15), **trunk(twist=20)})


@_register(193, "left_hook_from_guard", "Left_Hook_from_Guard", "Fighting", "Punching", False, 1.3,
           "throws a left hook punch from a boxing guard")  # fmt: skip
def _left_hook(d):
    return _strike(d, {**arm("l", d=(0.6, 0.05, 0.8), elbow=90), **hips(yaw=15), **trunk(twist=25)})


@_register(194, "right_uppercut_from_guard", "Right_Uppercut_from_Guard", "Fighting", "Punching", False, 1.4,
           "throws a right uppercut punch upward from a boxing guard")  # fmt: skip
def _uppercut(d):
    hit = {**arm("r", d=(0.2, -0.6, 0.75), twist=-85, elbow=100), **hips(yaw=10), **trunk(twist=18, bend=-5)}
    return _strike(d, {**hit, **legs(knee=8)})


@_register(198, "punch_combo", "Punch_Combo", "Fighting", "Punching", False, 2.0,
           "a fast combination of punches: jab, cross and hook")  # fmt: skip
def _punch_combo(d):
    g = _pose(_guard(), _fight_legs(), hips(yaw=-15), trunk(twist=10))
    jab = _pose(_guard(), _fight_legs(), arm("l", d=(0.05, 0.08, 1.0), twist=-80, elbow=3), hips(yaw=-20))
    cross = _pose(_guard(), _fight_legs(), arm("r", d=(-0.1, 0.08, 1.0), twist=-80, elbow=3), hips(yaw=15),
                  trunk(twist=20))  # fmt: skip
    hook = _pose(_guard(), _fight_legs(), arm("l", d=(0.6, 0.05, 0.8), elbow=90), hips(yaw=15), trunk(twist=25))
    keys = [(0, g), (0.3, jab), (0.5, g), (0.8, cross), (1.0, g), (1.3, hook), (d, g)]
    return _Motion(_keys(d, keys, False))


@_register(92, "double_combo_attack", "Double_Combo_Attack", "Fighting", "AttackingwithWeapon", False, 1.8,
           "a double combo attack: two quick strikes in a row")  # fmt: skip
def _double_combo(d):
    g = _pose(_guard(), _fight_legs(), hips(yaw=-15), trunk(twist=10))
    s1 = _pose(_fight_legs(18), arm("r", d=(0.2, 0.2, 1.0), twist=-60, elbow=10), arm("l", d=(0.3, -0.8, 0.3),
               elbow=60), hips(yaw=20), trunk(twist=25, bend=10))  # fmt: skip
    s2 = _pose(_fight_legs(18), arm("r", d=(0.9, -0.3, 0.5), twist=-30, elbow=10), arm("l", d=(0.3, -0.8, 0.3),
               elbow=60), hips(yaw=-25), trunk(twist=-20, bend=12))  # fmt: skip
    return _Motion(_keys(d, [(0, g), (0.4, s1), (0.55, s1), (0.95, s2), (1.1, s2), (d, g)], False))


@_register(87, "boxing_practice", "Boxing_Practice", "Fighting", "Punching", True, 2.4,
           "boxing practice, throwing repeated jabs and crosses")  # fmt: skip
def _boxing(d):
    g = _pose(_guard(), _fight_legs(), hips(yaw=-15), trunk(twist=10))
    jab = _pose(_guard(), _fight_legs(), arm("l", d=(0.05, 0.08, 1.0), twist=-80, elbow=3), hips(yaw=-20))
    cross = _pose(_guard(), _fight_legs(), arm("r", d=(-0.1, 0.08, 1.0), twist=-80, elbow=3), hips(yaw=15),
                  trunk(twist=20))  # fmt: skip
    keys = [(0, g), (0.25, jab), (0.5, g), (0.8, cross), (1.1, g), (1.35, jab), (1.6, g), (1.9, cross), (2.15, g)]
    return _Motion(_keys(d, keys + [(d, g)], True))


@_register(214, "punch_forward_with_both_fists", "Punch_Forward_with_Both_Fists", "Fighting", "Punching", False, 1.5,
           "punches forward with both fists at once")  # fmt: skip
def _double_punch(d):
    g = _pose(_guard(), legs(knee=15, abd=6))
    h = _pose(arms(d=(0.1, 0.05, 1.0), twist=-80, elbow=3), legs(knee=20, abd=6), trunk(bend=10))
    return _Motion(_keys(d, [(0, g), (0.45, h), (0.65, h), (d, g)], False))


@_register(212, "elbow_strike", "Elbow_Strike", "Fighting", "Punching", False, 1.4,
           "strikes with the elbow, a close-range elbow attack")  # fmt: skip
def _elbow(d):
    return _strike(d, {**arm("r", d=(0.6, 0.05, 0.8), elbow=150), **hips(yaw=15), **trunk(twist=30)})


def _kick(d, kick_leg: Pose, t_kick=0.55, hold=0.15, extra: Pose | None = None) -> _Motion:
    g = _pose(_guard(), _fight_legs())
    chamber = _pose(_guard(), leg("l", knee=18), leg("r", flex=80, knee=110), trunk(bend=-5))
    k = _pose(_guard(), leg("l", knee=10, abd=4), kick_leg, extra or {})
    keys = [(0, g), (t_kick - 0.25, chamber), (t_kick, k), (t_kick + hold, k), (t_kick + hold + 0.25, chamber), (d, g)]
    return _Motion(_keys(d, keys, False), plant="l")


@_register(103, "simple_kick", "Simple_Kick", "Fighting", "AttackingwithWeapon", False, 1.6,
           "a simple front kick with the right leg")  # fmt: skip
def _simple_kick(d):
    return _kick(d, leg("r", flex=75, knee=8, ankle=30), extra=trunk(bend=-10))


@_register(206, "spartan_kick", "Spartan_Kick", "Fighting", "Punching", False, 1.7,
           "a powerful push kick straight forward, this is Sparta")  # fmt: skip
def _spartan(d):
    return _kick(d, leg("r", flex=85, knee=5, ankle=-10), extra=trunk(bend=-18), hold=0.25)


@_register(207, "roundhouse_kick", "Roundhouse_Kick", "Fighting", "Punching", False, 1.8,
           "a spinning roundhouse kick with the right leg")  # fmt: skip
def _roundhouse(d):
    return _kick(d, {**leg("r", flex=40, knee=10, abd=65, twist=-30, ankle=30), **hips(yaw=60, roll=-10)},
                 extra=trunk(side=18, twist=-20))  # fmt: skip


@_register(215, "high_kick", "High_Kick", "Fighting", "Punching", False, 1.7, "a high kick, leg raised above the head")
def _high_kick(d):
    return _kick(d, leg("r", flex=110, knee=4, ankle=20), extra=trunk(bend=-15))


@_register(211, "boxing_guard_step_knee_strike", "Boxing_Guard_Step_Knee_Strike", "Fighting", "Punching", False, 1.5,
           "steps in from a boxing guard and drives a knee strike")  # fmt: skip
def _knee_strike(d):
    return _kick(d, leg("r", flex=100, knee=120, ankle=30), extra=trunk(bend=12), t_kick=0.5)


@_register(138, "block1", "Block1", "Fighting", "Blocking", False, 1.4, "raises both arms to block an attack")
def _block(d):
    g = _pose(_guard(), _fight_legs())
    b = _pose(arms(d=(0.4, -0.1, 0.9), twist=-90, elbow=110, wrist=10), _fight_legs(22), trunk(bend=12),
              head(nod=15))  # fmt: skip
    return _Motion(_keys(d, [(0, g), (0.3, b), (0.8, b), (d, g)], False))


@_register(178, "hit_reaction", "Hit_Reaction", "Fighting", "GettingHit", False, 1.5,
           "reacts to being hit in the body, recoils and recovers")  # fmt: skip
def _hit(d):
    n = _pose()
    h = _pose(trunk(bend=25, twist=8), head(nod=20), arms(d=(0.3, -0.8, 0.5), elbow=50), legs(knee=25, flex=20))
    return _Motion(_keys(d, [(0, n), (0.15, h), (0.5, h), (d, n)], False))


@_register(174, "face_punch_reaction", "Face_Punch_Reaction", "Fighting", "GettingHit", False, 1.6,
           "reels back from a blow to the face, head snapping back")  # fmt: skip
def _face_hit(d):
    n = _pose()
    h = _pose(trunk(bend=-14, twist=-15), head(nod=-30, turn=-25), arms(d=(0.6, -0.6, 0.2), elbow=30), legs(knee=15))
    return _Motion(_keys(d, [(0, n), (0.12, h), (0.5, h), (d, n)], False))


@_register(8, "dead", "Dead", "Fighting", "Dying", False, 2.5, "dies and falls backward to the ground, dead")
def _dead(d):
    n = _pose()
    buckle = _pose(legs(flex=45, knee=70), trunk(bend=10), head(nod=20), arms(d=(0.5, -0.8, 0.1), elbow=20))
    fall = _pose(hips(pitch=-50), legs(flex=50, knee=40), trunk(bend=-5), arms(d=(0.8, 0.0, 0.0), elbow=10))
    lie = _pose(hips(pitch=-90), legs(flex=5, knee=6), trunk(bend=-2), head(turn=25, nod=-5),
                arms(d=(0.8, -0.3, 0.0), elbow=15))  # fmt: skip
    keys = [(0, n), (0.6, buckle), (1.2, fall), (1.7, lie), (d, lie)]
    return _Motion(_keys(d, keys, False), ground="body")


@_register(156, "stand_dodge", "Stand_Dodge", "Fighting", "Transitioning", False, 1.4,
           "dodges to the side, ducking out of the way")  # fmt: skip
def _dodge(d):
    g = _pose(_guard(), _fight_legs())
    dg = _pose(_guard(), legs(knee=35, flex=25, abd=8), trunk(side=-25, bend=20), hips(roll=8))
    return _Motion(_keys(d, [(0, g), (0.35, dg), (0.7, dg), (d, g)], False))


@_register(88, "chest_pound_taunt", "Chest_Pound_Taunt", "Fighting", "Transitioning", False, 2.4,
           "pounds the chest with the fists, taunting like a gorilla")  # fmt: skip
def _chest_pound(d):
    n = _pose(legs(abd=8, knee=10))
    a = _pose(legs(abd=8, knee=12), arm("l", d=(0.3, -0.5, 0.8), twist=-40, elbow=140), arm("r", d=(0.4, -0.6, 0.5),
              twist=-40, elbow=100), trunk(bend=-8), head(nod=-15))  # fmt: skip
    b = _pose(legs(abd=8, knee=12), arm("r", d=(0.3, -0.5, 0.8), twist=-40, elbow=140), arm("l", d=(0.4, -0.6, 0.5),
              twist=-40, elbow=100), trunk(bend=-8), head(nod=-15))  # fmt: skip
    return _Motion(_keys(d, [(0, n), (0.5, a), (0.75, b), (1.0, a), (1.25, b), (1.5, a), (d, n)], False))


# ---- Dancing ----
def _dance(d: float, beats: list[np.ndarray], beat: float = 0.5, **kw) -> _Motion:
    keys = [(i * beat, p) for i, p in enumerate(beats)]
    return _Motion(_keys(d, keys + [(d, beats[0])], True), **kw)


@_register(22, "funny_dancing_01", "FunnyDancing_01", "Dancing", "Dancing", True, 4.0,
           "a goofy funny dance, wiggling hips and flapping arms")  # fmt: skip
def _funny1(d):
    a = _pose(hips(roll=8, yaw=10), legs(knee=20), arms(d=(0.8, -0.2, 0.3), twist=-60, elbow=90), head(tilt=10))
    b = _pose(hips(roll=-8, yaw=-10), legs(knee=20), arms(d=(0.8, 0.3, 0.3), twist=-60, elbow=60), head(tilt=-10))
    c = _pose(hips(roll=8), legs(knee=30), arms(d=(0.5, -0.5, 0.5), twist=-80, elbow=120), trunk(bend=15))
    e = _pose(hips(roll=-8), legs(knee=10), arms(d=(0.9, 0.2, 0.0), elbow=10), trunk(bend=-5), head(nod=-10))
    return _dance(d, [a, b, a, b, c, e, c, e])


@_register(23, "funny_dancing_02", "FunnyDancing_02", "Dancing", "Dancing", True, 4.0,
           "a silly chicken dance with elbows flapping")  # fmt: skip
def _funny2(d):
    a = _pose(arms(d=(0.6, -0.7, -0.2), twist=-30, elbow=140, wrist=40), legs(knee=25), trunk(bend=10), head(nod=10))
    b = _pose(arms(d=(1.0, -0.1, -0.1), twist=-30, elbow=140, wrist=40), legs(knee=10), trunk(bend=5), head(nod=-5))
    c = _pose(arms(d=(0.6, -0.7, -0.2), twist=-30, elbow=140, wrist=40), leg("l", knee=10),
              leg("r", flex=30, knee=60), hips(yaw=15))  # fmt: skip
    e = _pose(arms(d=(0.6, -0.7, -0.2), twist=-30, elbow=140, wrist=40), leg("r", knee=10),
              leg("l", flex=30, knee=60), hips(yaw=-15))  # fmt: skip
    return _dance(d, [a, b, a, b, c, a, e, a])


@_register(24, "funny_dancing_03", "FunnyDancing_03", "Dancing", "Dancing", True, 4.0,
           "a funny dance with big arm swings side to side")  # fmt: skip
def _funny3(d):
    def p(s):
        return _pose(arm("l", d=(0.3 + 0.5 * s, 0.6, 0.4 - 0.3 * s), elbow=30), arm("r", d=(0.3 - 0.5 * s, 0.6,
                     0.4 + 0.3 * s), elbow=30), trunk(side=12 * s, twist=10 * s), hips(roll=-6 * s),
                     legs(knee=15), head(tilt=8 * s))  # fmt: skip

    return _dance(d, [p(1), p(-1), p(1), p(-1), p(0.5), p(-0.5), p(1), p(-1)])


@_register(591, "hip_hop_dance", "Hip_Hop_Dance", "Dancing", "Dancing", True, 4.0,
           "a hip hop dance with bouncing knees and arm hits")  # fmt: skip
def _hiphop(d):
    a = _pose(legs(knee=30, flex=20, abd=10), trunk(bend=15), arms(d=(0.4, -0.7, 0.4), twist=-40, elbow=90),
              head(nod=10))  # fmt: skip
    b = _pose(legs(knee=8, abd=10), trunk(bend=0, twist=15), arm("r", d=(0.9, 0.3, 0.3), elbow=10),
              arm("l", d=(0.3, -0.8, 0.4), elbow=100), head(turn=20))  # fmt: skip
    c = _pose(legs(knee=8, abd=10), trunk(bend=0, twist=-15), arm("l", d=(0.9, 0.3, 0.3), elbow=10),
              arm("r", d=(0.3, -0.8, 0.4), elbow=100), head(turn=-20))  # fmt: skip
    return _dance(d, [a, b, a, c, a, b, a, c])


@_register(596, "ymca_dance", "ymca_dance", "Dancing", "Dancing", True, 4.0,
           "the YMCA dance, spelling letters with the arms")  # fmt: skip
def _ymca(d):
    y = _pose(arms(d=(0.5, 1.0, 0.1), elbow=5), legs(knee=10))
    m = _pose(arms(d=(0.7, 0.6, 0.2), twist=-90, elbow=150), legs(knee=20))
    c = _pose(arm("r", d=(1.0, 0.5, 0.3), twist=-90, elbow=60), arm("l", d=(0.9, -0.3, 0.3), twist=-90, elbow=60),
              trunk(side=15), legs(knee=10))  # fmt: skip
    a = _pose(arms(d=(0.2, 1.0, 0.2), elbow=20), legs(knee=20))
    return _dance(d, [y, y, m, m, c, c, a, a])


@_register(74, "gangnam_groove", "Gangnam_Groove", "Dancing", "Dancing", True, 2.0,
           "the horse riding dance, hopping with crossed wrists in front")  # fmt: skip
def _gangnam(d):
    hands = arms(d=(0.05, -0.5, 1.0), twist=-80, elbow=60, wrist=10)
    a = _pose(hands, leg("l", flex=30, knee=45, abd=12), leg("r", flex=10, knee=20, abd=12), trunk(bend=10))
    b = _pose(hands, leg("r", flex=30, knee=45, abd=12), leg("l", flex=10, knee=20, abd=12), trunk(bend=10))
    return _dance(d, [a, a, b, b], beat=0.5)


@_register(63, "arm_circle_shuffle", "Arm_Circle_Shuffle", "Dancing", "Dancing", True, 3.2,
           "shuffles the feet while circling the arms")  # fmt: skip
def _arm_circle(d):
    beats = []
    for i in range(8):
        a = 2 * np.pi * i / 8
        beats.append(_pose(arms(d=(0.6, np.sin(a), 0.2 + 0.6 * np.cos(a)), elbow=20), hips(yaw=10 * np.sin(a)),
                           leg("l", knee=15 + 10 * np.sin(a)), leg("r", knee=15 - 10 * np.sin(a))))  # fmt: skip
    return _dance(d, beats, beat=d / 8)


@_register(54, "squat_stance", "Squat_Stance", "Dancing", "Dancing", True, 2.0,
           "a wide squat stance, bouncing low with arms bent")  # fmt: skip
def _squat_stance(d):
    a = _pose(legs(flex=55, knee=80, abd=28), trunk(bend=12), arms(d=(0.6, -0.5, 0.5), twist=-60, elbow=90))
    b = _pose(legs(flex=40, knee=55, abd=28), trunk(bend=6), arms(d=(0.7, -0.3, 0.5), twist=-60, elbow=100))
    return _dance(d, [a, b, a, b])


@_register(70, "cardio_dance", "Cardio_Dance", "Dancing", "Dancing", True, 2.0,
           "an energetic cardio dance workout with knee lifts and arm punches")  # fmt: skip
def _cardio(d):
    a = _pose(leg("l", flex=70, knee=90), leg("r", knee=8), arms(d=(0.3, 1.0, 0.3), elbow=20))
    b = _pose(legs(knee=15), arms(d=(0.3, -0.6, 0.7), twist=-60, elbow=110))
    c = _pose(leg("r", flex=70, knee=90), leg("l", knee=8), arms(d=(0.3, 1.0, 0.3), elbow=20))
    return _dance(d, [a, b, c, b])


@_register(595, "jazz_danc", "jazz_danc", "Dancing", "Dancing", True, 4.0,
           "a jazz dance with kicks, spread hands and hip rolls")  # fmt: skip
def _jazz(d):
    a = _pose(arms(d=(1.0, 0.4, 0.2), elbow=5, wrist=-30), hips(roll=8), leg("r", flex=10, knee=30, ankle=30))
    b = _pose(arms(d=(0.6, -0.4, 0.6), twist=-80, elbow=90, wrist=-30), hips(roll=-8), legs(knee=20))
    c = _pose(arm("l", d=(0.3, 1.0, 0.1), elbow=5), arm("r", d=(1.0, -0.4, 0.1), elbow=5), trunk(side=-15),
              leg("l", flex=40, knee=10))  # fmt: skip
    e = _pose(arms(d=(0.7, -0.2, 0.6), twist=-90, elbow=110, wrist=-30), legs(knee=25), trunk(bend=10))
    return _dance(d, [a, b, c, e, a, b, c, e])


# ---------------------------------------------------------------------------------------------------------------------
# Public API

WALKING_ID = 30  # Casual_Walk: the rig task's basic walking animation
RUNNING_ID = 14  # Run_02: the rig task's basic running animation


def is_valid_action(action_id: object) -> bool:
    return isinstance(action_id, int) and not isinstance(action_id, bool) and action_id in ACTIONS


@functools.cache
def get_clip(action_id: int) -> Clip:
    """The clip for a library action (built on first use, then cached; treat the arrays as read-only)."""
    if not is_valid_action(action_id):
        raise KeyError(f"unknown action id {action_id!r}")
    a = ACTIONS[action_id]
    clip = _finish(_BUILDERS[action_id](), a.name, a.loop, meta={"action_id": a.action_id, "key": a.key})
    clip.rotations.setflags(write=False)
    clip.root.setflags(write=False)
    return clip


def search(text: str = "", category: str | None = None) -> list[Action]:
    """Actions whose name or key contains `text` (case-insensitive), optionally in one category, by id."""
    t = text.strip().lower()
    out = []
    for a in sorted(ACTIONS.values(), key=lambda a: a.action_id):
        if category and a.category.lower() != category.lower():
            continue
        if t and t not in a.name.lower() and t not in a.key.lower():
            continue
        out.append(a)
    return out
