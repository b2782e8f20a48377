"""The talking-head reference animator: a portrait made to speak a recording, on the CPU.

Not a generative model. A real face detector (OpenCV's Viola-Jones cascades, shipped with opencv-contrib) finds the
face and eyes; the audio's loudness drives the jaw (a smooth displacement field that opens the mouth, with a dark
mouth interior drawn in the gap) and its spectrum the mouth's width (bright sounds spread the lips, dark ones round
them); blinks come every 2-5 s and the head sways and nods slightly; the emotion bends the mouth corners, brows and
eyelids. `ref_scale` keeps the result closer to the portrait (smaller motion), `emo_scale` strengthens the emotion.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from inference.video.media import Audio

FPS = 25
EMOTIONS = ("angry", "contempt", "disgusted", "fear", "happy", "neutral", "sad", "surprised")
CROP_SIZE = 512
MAX_SIDE = 1024


class NoFace(ValueError):
    """No face in the portrait."""


class SilentAudio(ValueError):
    """The recording holds no audible sound."""


@dataclass(frozen=True)
class Face:
    x: float
    y: float
    w: float
    h: float
    eyes: tuple[tuple[float, float, float], ...]  # (cx, cy, radius), left then right in the image
    eyes_found: bool

    @property
    def mouth(self) -> tuple[float, float, float]:
        """(centre x, centre y, half width)."""
        cx = (self.eyes[0][0] + self.eyes[1][0]) / 2
        return cx, self.y + 0.79 * self.h, 0.19 * self.w

    @property
    def chin_y(self) -> float:
        return self.y + 1.05 * self.h

    def scaled(self, sx: float, sy: float, ox: float = 0.0, oy: float = 0.0) -> Face:
        eyes = tuple(((cx - ox) * sx, (cy - oy) * sy, r * sx) for cx, cy, r in self.eyes)
        return Face((self.x - ox) * sx, (self.y - oy) * sy, self.w * sx, self.h * sy, eyes, self.eyes_found)


@functools.cache
def _cascade(name: str) -> cv2.CascadeClassifier:
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + name)
    if cascade.empty():
        raise RuntimeError(f"OpenCV's {name} is missing from this installation")
    return cascade


def detect_face(rgb: np.ndarray) -> Face:
    """The largest frontal face and its eyes; NoFace when there is none."""
    gray = cv2.equalizeHist(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    side = min(gray.shape)
    found = ()
    for name in ("haarcascade_frontalface_default.xml", "haarcascade_frontalface_alt2.xml"):
        found = _cascade(name).detectMultiScale(gray, 1.1, 5, minSize=(max(24, side // 12),) * 2)
        if len(found):
            break
    if not len(found):
        raise NoFace("no face was found in the image: use a frontal portrait with the face clearly visible")
    x, y, w, h = (float(v) for v in max(found, key=lambda f: f[2] * f[3]))
    roi = gray[int(y) : int(y + 0.6 * h), int(x) : int(x + w)]
    eyes = _cascade("haarcascade_eye.xml").detectMultiScale(roi, 1.1, 5, minSize=(max(6, int(w / 10)),) * 2)
    picked = sorted(sorted(eyes, key=lambda e: -e[2] * e[3])[:2], key=lambda e: e[0])
    if len(picked) == 2 and abs((picked[0][0] + picked[0][2] / 2) - (picked[1][0] + picked[1][2] / 2)) > 0.2 * w:
        centres = tuple((x + ex + ew / 2, y + ey + eh / 2, ew / 2) for ex, ey, ew, eh in picked)
        return Face(x, y, w, h, centres, True)
    estimate = ((x + 0.31 * w, y + 0.40 * h, 0.09 * w), (x + 0.69 * w, y + 0.40 * h, 0.09 * w))
    return Face(x, y, w, h, estimate, False)


def frame_count(duration_s: float, fps: int = FPS) -> int:
    return max(1, math.ceil(duration_s * fps - 1e-6))


def audio_tracks(audio: Audio, n_frames: int, fps: int = FPS) -> tuple[np.ndarray, np.ndarray]:
    """Per video frame: mouth opening 0..1 (loudness, smoothed with a fast attack and a slower release) and
    brightness 0..1 (share of energy in 1-4 kHz against 100 Hz-4 kHz: spread lips for bright sounds)."""
    sr = audio.sample_rate
    hop = sr / fps
    window = int(2 * hop)
    padded = np.concatenate([np.zeros(window, np.float32), audio.samples, np.zeros(window, np.float32)])
    freqs = np.fft.rfftfreq(window, 1.0 / sr)
    low, high = (freqs >= 100) & (freqs < 1000), (freqs >= 1000) & (freqs < 4000)
    hann = np.hanning(window).astype(np.float32)
    rms = np.zeros(n_frames, np.float32)
    bright = np.zeros(n_frames, np.float32)
    for i in range(n_frames):
        start = int(window + i * hop - hop / 2)
        chunk = padded[start : start + window]
        if len(chunk) < window:
            chunk = np.pad(chunk, (0, window - len(chunk)))
        rms[i] = float(np.sqrt(np.mean(chunk**2)))
        spectrum = np.abs(np.fft.rfft(chunk * hann)) ** 2
        lo, hi = spectrum[low].sum(), spectrum[high].sum()
        bright[i] = hi / (lo + hi + 1e-12)
    peak = float(np.percentile(rms, 95))
    if peak < 1e-3:  # below -60 dBFS: nothing to say
        raise SilentAudio("the audio is silent")
    floor = max(float(np.percentile(rms, 10)) * 1.5, peak * 0.05)
    level = np.clip((rms - floor) / max(peak - floor, 1e-6), 0.0, 1.0) ** 0.7
    opening = np.zeros_like(level)
    state = 0.0
    for i, target in enumerate(level):
        state += (target - state) * (0.65 if target > state else 0.35)
        opening[i] = state
    return opening, np.where(level > 0.05, bright, 0.3)


@dataclass(frozen=True)
class Expression:
    corners: float = 0.0  # mouth corners up (+) / down (-), in face widths
    asym: float = 0.0  # one-sided corner lift (contempt)
    brows: float = 0.0  # brows up (+) / down (-), in face heights
    brows_in: float = 0.0  # brows drawn together (angry), in face widths
    lids: float = 0.0  # eyelids lowered 0..1 (squint)
    widen: float = 0.0  # eyes opened wider 0..1
    jaw: float = 0.0  # jaw held open 0..1
    spread: float = 0.0  # lips spread (+) / pursed (-)


EXPRESSIONS = {
    "neutral": Expression(),
    "happy": Expression(corners=0.05, lids=0.18, spread=0.25),
    "sad": Expression(corners=-0.04, brows=0.015, lids=0.25),
    "angry": Expression(corners=-0.015, brows=-0.035, brows_in=0.02, lids=0.1),
    "surprised": Expression(brows=0.05, widen=0.6, jaw=0.3, spread=-0.2),
    "fear": Expression(brows=0.035, widen=0.45, corners=-0.01, spread=0.15),
    "disgusted": Expression(corners=-0.02, brows=-0.02, lids=0.2, asym=0.015),
    "contempt": Expression(asym=0.035),
}


def _blinks(n_frames: int, fps: int, rng: np.random.Generator) -> np.ndarray:
    closed = np.zeros(n_frames, np.float32)
    t = rng.uniform(0.8, 2.5)
    shape = np.array([0.45, 1.0, 1.0, 0.55, 0.2], np.float32)  # ~0.2 s at 25 fps
    while t * fps < n_frames:
        start = int(t * fps)
        end = min(n_frames, start + len(shape))
        closed[start:end] = np.maximum(closed[start:end], shape[: end - start])
        t += rng.uniform(2.0, 5.0)
    return closed


def _gauss(v: np.ndarray, centre: float, sigma: float) -> np.ndarray:
    return np.exp(-(((v - centre) / max(sigma, 1e-3)) ** 2))


def prepare_portrait(rgb: np.ndarray, face: Face, crop: bool) -> tuple[np.ndarray, Face]:
    """The frame: a square around the face (`crop`) at 512², or the whole portrait with its longest side at most
    1024; both sides even (H.264's 4:2:0)."""
    h, w = rgb.shape[:2]
    if crop:
        side = min(int(2.2 * max(face.w, face.h)), w, h)
        cx, cy = face.x + face.w / 2, face.y + face.h * 0.55
        x0 = int(np.clip(cx - side / 2, 0, w - side))
        y0 = int(np.clip(cy - side / 2, 0, h - side))
        out = cv2.resize(rgb[y0 : y0 + side, x0 : x0 + side], (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_AREA)
        s = CROP_SIZE / side
        return out, face.scaled(s, s, x0, y0)
    scale = min(1.0, MAX_SIDE / max(h, w))
    nw, nh = max(2, int(w * scale) // 2 * 2), max(2, int(h * scale) // 2 * 2)
    out = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA) if (nw, nh) != (w, h) else rgb
    return np.ascontiguousarray(out), face.scaled(nw / w, nh / h)


def animate(
    rgb: np.ndarray, face: Face, opening: np.ndarray, brightness: np.ndarray, *, emotion: str = "neutral",
    ref_scale: float = 3.0, emo_scale: float = 6.0, seed: int = 0, fps: int = FPS,
) -> Iterator[np.ndarray]:  # fmt: skip
    """One RGB uint8 frame per entry of `opening`."""
    h, w = rgb.shape[:2]
    rng = np.random.default_rng(seed)
    amp = float(np.clip(1.3 - 0.06 * ref_scale, 0.5, 1.3))
    expr = EXPRESSIONS.get(emotion, EXPRESSIONS["neutral"])
    emo = float(np.clip(emo_scale / 6.0, 0.0, 1.7))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    mx, my, mw = face.mouth
    fw, fh = face.w, face.h
    chin = face.chin_y
    # Jaw: everything between the mouth line and the chin moves down, most at the chin, fading out below it.
    across = _gauss(xx, mx, mw * 1.6)
    ramp = np.clip((yy - my) / max(chin - my, 1.0), 0.0, 1.0)
    below = np.exp(-np.maximum(0.0, yy - chin) / (0.12 * fh))
    jaw_field = across * ramp * below
    corner_l = _gauss(xx, mx - mw, 0.09 * fw) * _gauss(yy, my, 0.07 * fh)
    corner_r = _gauss(xx, mx + mw, 0.09 * fw) * _gauss(yy, my, 0.07 * fh)
    brow_y = min(e[1] for e in face.eyes) - 0.13 * fh
    brow_band = _gauss(yy, brow_y, 0.07 * fh) * _gauss(xx, mx, 0.45 * fw)
    brow_side = np.tanh((xx - mx) / (0.25 * fw))
    eye_fields = [(_gauss(xx, cx, 1.6 * r) * _gauss(yy, cy, 1.3 * r), cy) for cx, cy, r in face.eyes]
    # Still displacements of the emotion (held through the clip).
    base_dy = -(expr.corners * fw * emo) * (corner_l + corner_r) - expr.asym * fw * emo * corner_r
    base_dy = base_dy - expr.brows * fh * emo * brow_band
    base_dx = expr.brows_in * fw * emo * brow_band * brow_side
    base_dx = base_dx + expr.spread * 0.06 * fw * emo * (corner_r - corner_l)
    blinks = _blinks(len(opening), fps, rng)
    phases = rng.uniform(0, 2 * math.pi, 4)
    skin = _skin_colour(rgb, face)
    for i, open_ in enumerate(opening):
        t = i / fps
        jaw = amp * (0.10 * fh) * float(np.clip(open_ + expr.jaw * emo * 0.3, 0.0, 1.2))
        spread = (brightness[i] - 0.3) * 0.08 * fw * amp * float(open_ > 0.05)
        dy = base_dy + jaw * jaw_field
        dx = base_dx + spread * (corner_r - corner_l)
        map_y = yy - dy
        map_x = xx - dx
        for field, cy in eye_fields:  # widen: sample closer to the eye's centre (it grows)
            if expr.widen:
                map_y = map_y - field * (yy - cy) * 0.22 * expr.widen * emo
        frame = cv2.remap(
            rgb, map_x.astype(np.float32), map_y.astype(np.float32), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        _mouth_interior(frame, mx, my, mw * (1.0 + spread / max(mw, 1.0)), jaw)
        lid = float(np.clip(expr.lids * emo * 0.6 + blinks[i], 0.0, 1.0))
        if lid > 0.02:
            for cx, cy, r in face.eyes:
                _eyelid(frame, cx, cy, r, lid, skin)
        angle = amp * (1.2 * math.sin(2 * math.pi * 0.21 * t + phases[0]) + 0.6 * math.sin(2 * math.pi * 0.53 * t
                                                                                             + phases[1]))  # fmt: skip
        nod = amp * 0.012 * fh * (math.sin(2 * math.pi * 0.37 * t + phases[2]) + 1.5 * float(open_))
        sway = amp * 0.010 * fw * math.sin(2 * math.pi * 0.17 * t + phases[3])
        centre = (face.x + fw / 2, face.y + fh)
        matrix = cv2.getRotationMatrix2D(centre, angle, 1.0)
        matrix[0, 2] += sway
        matrix[1, 2] += nod
        yield cv2.warpAffine(frame, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _skin_colour(rgb: np.ndarray, face: Face) -> np.ndarray:
    x0, x1 = int(face.x + 0.35 * face.w), int(face.x + 0.65 * face.w)
    y0, y1 = int(face.y + 0.55 * face.h), int(face.y + 0.68 * face.h)  # the cheeks and nose, between eyes and mouth
    patch = rgb[max(0, y0) : max(y0 + 1, y1), max(0, x0) : max(x0 + 1, x1)].reshape(-1, 3)
    return np.median(patch, axis=0) if len(patch) else np.array([200, 160, 140], np.float32)


def _blend(frame: np.ndarray, mask: np.ndarray, colour: np.ndarray, alpha: float, at: tuple[int, int]) -> None:
    """Blend `colour` into `frame` through `mask`, whose top-left corner sits at `at` (x, y); clipped to the frame."""
    x, y = at
    h, w = mask.shape
    fx0, fy0, fx1, fy1 = max(0, x), max(0, y), min(frame.shape[1], x + w), min(frame.shape[0], y + h)
    if fx0 >= fx1 or fy0 >= fy1:
        return
    weight = (mask[fy0 - y : fy1 - y, fx0 - x : fx1 - x].astype(np.float32) / 255.0 * alpha)[..., None]
    region = frame[fy0:fy1, fx0:fx1]
    region[:] = (region * (1 - weight) + colour * weight).astype(np.uint8)


def _ellipse_mask(half_w: float, half_h: float, blur: float, pad: float = 3.0) -> tuple[np.ndarray, int, int]:
    """A feathered filled ellipse in its own small canvas; (mask, its centre's offset x, y in the canvas)."""
    margin = int(pad * blur) + 2
    cx, cy = int(half_w) + margin, int(half_h) + margin
    mask = np.zeros((2 * cy + 1, 2 * cx + 1), np.uint8)
    cv2.ellipse(mask, (cx, cy), (max(1, int(half_w)), max(1, int(half_h))), 0, 0, 360, 255, -1, cv2.LINE_AA)
    return cv2.GaussianBlur(mask, (0, 0), blur), cx, cy


def _mouth_interior(frame: np.ndarray, mx: float, my: float, mw: float, jaw: float) -> None:
    """The gap between the lips: dark, with a hint of upper teeth when it is wide open."""
    gap = jaw * 0.55
    if gap < 1.0:
        return
    centre_x, centre_y = int(round(mx)), int(round(my + gap * 0.45))
    half_w, half_h = max(1.0, mw * 0.62), max(1.0, gap * 0.5)
    mask, ox, oy = _ellipse_mask(half_w, half_h, max(0.8, gap * 0.08))
    _blend(frame, mask, np.array([45, 18, 22], np.float32), 0.9, (centre_x - ox, centre_y - oy))
    if gap > 6:
        teeth, tx, ty = _ellipse_mask(half_w * 0.7, max(1.0, gap * 0.12), 1.0)
        _blend(frame, teeth, np.array([225, 220, 210], np.float32), 0.7,
               (centre_x - tx, int(centre_y - half_h * 0.55) - ty))  # fmt: skip


def _eyelid(frame: np.ndarray, cx: float, cy: float, r: float, closed: float, skin: np.ndarray) -> None:
    """Lower the upper lid over the eye: skin-coloured, from the top of the eye down by `closed` of its height."""
    top = cy - 0.7 * r
    bottom = top + 1.4 * r * closed
    mask, ox, oy = _ellipse_mask(1.15 * r, max(1.0, (bottom - top) / 2), max(0.8, r * 0.15))
    _blend(frame, mask, skin.astype(np.float32), 0.95, (int(cx) - ox, int((top + bottom) / 2) - oy))
