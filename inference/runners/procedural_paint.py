"""Vertex colouring for the procedural runner's refine stage: a palette from the texture prompt, or an image.

Colour words in the prompt pick the palette ("red", "gold", "wooden"...), a few material words also pick a
pattern (wood grain, mottled stone, brushed metal), and prompts without any known word get a palette from
a hash of the words and seed. Colour varies smoothly with height and a seeded sum of sine waves, so the
result is deterministic, visibly textured, and different for different prompts. Nothing here is learned.
"""

from __future__ import annotations

import colorsys
import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

# Two shades per word (dark, light) in linear-ish 0..1 sRGB; the pattern blends between them.
COLOR_WORDS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "red": ((0.55, 0.05, 0.05), (0.9, 0.15, 0.12)),
    "green": ((0.1, 0.35, 0.1), (0.35, 0.7, 0.25)),
    "blue": ((0.05, 0.15, 0.5), (0.2, 0.45, 0.9)),
    "gold": ((0.6, 0.42, 0.08), (0.98, 0.82, 0.35)),
    "golden": ((0.6, 0.42, 0.08), (0.98, 0.82, 0.35)),
    "wood": ((0.36, 0.2, 0.09), (0.66, 0.45, 0.25)),
    "wooden": ((0.36, 0.2, 0.09), (0.66, 0.45, 0.25)),
    "stone": ((0.35, 0.34, 0.32), (0.62, 0.6, 0.56)),
    "rock": ((0.33, 0.31, 0.29), (0.58, 0.55, 0.5)),
    "metal": ((0.42, 0.44, 0.47), (0.78, 0.8, 0.83)),
    "metallic": ((0.42, 0.44, 0.47), (0.78, 0.8, 0.83)),
    "steel": ((0.4, 0.42, 0.45), (0.75, 0.77, 0.8)),
    "silver": ((0.6, 0.62, 0.65), (0.9, 0.91, 0.93)),
    "white": ((0.78, 0.78, 0.76), (0.97, 0.97, 0.95)),
    "black": ((0.03, 0.03, 0.035), (0.18, 0.18, 0.2)),
    "pink": ((0.8, 0.4, 0.55), (0.98, 0.7, 0.8)),
    "purple": ((0.3, 0.1, 0.45), (0.6, 0.35, 0.8)),
    "orange": ((0.75, 0.3, 0.03), (1.0, 0.6, 0.15)),
    "yellow": ((0.75, 0.6, 0.05), (1.0, 0.92, 0.3)),
    "brown": ((0.3, 0.18, 0.08), (0.55, 0.35, 0.18)),
    "grey": ((0.35, 0.35, 0.36), (0.65, 0.65, 0.66)),
    "gray": ((0.35, 0.35, 0.36), (0.65, 0.65, 0.66)),
    "cyan": ((0.05, 0.45, 0.5), (0.35, 0.85, 0.9)),
    "teal": ((0.02, 0.3, 0.3), (0.2, 0.6, 0.58)),
}
PATTERN_WORDS = {
    "wood": "wood",
    "wooden": "wood",
    "oak": "wood",
    "timber": "wood",
    "stone": "stone",
    "rock": "stone",
    "marble": "stone",
    "granite": "stone",
    "concrete": "stone",
    "metal": "metal",
    "metallic": "metal",
    "steel": "metal",
    "iron": "metal",
    "chrome": "metal",
    "gold": "metal",
    "golden": "metal",
    "silver": "metal",
    "bronze": "metal",
}


def palette_for(words: list[str], seed: int) -> tuple[list[np.ndarray], str]:
    """(list of colour pairs as (2, 3) arrays, pattern name) for the prompt words."""
    pairs = [np.array(COLOR_WORDS[w], dtype=float) for w in words if w in COLOR_WORDS]
    pattern = next((PATTERN_WORDS[w] for w in words if w in PATTERN_WORDS), "smooth")
    if not pairs:
        # No colour word: derive two harmonious hues from the words and seed, so it is still deterministic.
        digest = hashlib.sha256((" ".join(words) + f"|{seed}|paint").encode()).digest()
        hue = digest[0] / 255.0
        for i, shift in enumerate((0.0, 0.08 + digest[1] / 255.0 * 0.4)):
            sat = 0.45 + digest[2 + i] / 255.0 * 0.4
            dark = colorsys.hsv_to_rgb((hue + shift) % 1.0, sat, 0.35 + digest[4 + i] / 255.0 * 0.15)
            light = colorsys.hsv_to_rgb((hue + shift) % 1.0, sat * 0.8, 0.75 + digest[6 + i] / 255.0 * 0.2)
            pairs.append(np.array([dark, light]))
    return pairs, pattern


def _waves(points: np.ndarray, rng: np.random.Generator, freq: float, count: int = 6) -> np.ndarray:
    """Smooth band-limited noise in [-1, 1]: a seeded sum of plane waves (cheap, deterministic, no tables)."""
    dirs = rng.normal(size=(count, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    k = dirs * (freq * rng.uniform(0.6, 1.4, size=(count, 1)) * 2 * np.pi)
    phase = rng.uniform(0, 2 * np.pi, size=count)
    amp = rng.uniform(0.5, 1.0, size=count)
    total = np.sin(points @ k.T + phase) @ amp
    return total / amp.sum()


def paint(vertices: np.ndarray, words: list[str], seed: int) -> tuple[np.ndarray, dict]:
    """Per-vertex RGB (uint8) for a mesh, plus a small description for the runner's metadata."""
    pairs, pattern = palette_for(words, seed)
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(f"{seed}|{' '.join(words)}".encode()).digest()[:8]))
    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    size = float(np.max(hi - lo)) or 1.0
    p = (vertices - lo) / size
    height = (vertices[:, 1] - lo[1]) / max(hi[1] - lo[1], 1e-9)
    low = _waves(p, rng, 1.5)
    if pattern == "wood":
        # Growth rings around the vertical axis, warped by low-frequency noise.
        radial = np.hypot(p[:, 0] - p[:, 0].mean(), p[:, 2] - p[:, 2].mean())
        mix = 0.5 + 0.5 * np.sin((radial * 25 + p[:, 1] * 3 + low * 1.5) * 2 * np.pi)
    elif pattern == "stone":
        mix = np.clip(0.5 + 0.35 * _waves(p, rng, 6.0, 8) + 0.25 * _waves(p, rng, 16.0, 8), 0, 1)
    elif pattern == "metal":
        mix = np.clip(0.55 + 0.2 * low + 0.25 * _waves(p, rng, 3.0), 0, 1)
    else:
        mix = np.clip(0.3 + 0.5 * height + 0.3 * low, 0, 1)
    primary = pairs[0][0] + (pairs[0][1] - pairs[0][0]) * mix[:, None]
    colour = primary
    if len(pairs) > 1:
        # A second colour word takes over the lower part ("red car with black wheels"), with a noisy edge.
        second = pairs[1][0] + (pairs[1][1] - pairs[1][0]) * mix[:, None]
        edge = np.clip((0.3 + 0.08 * low - height) / 0.06, 0, 1)[:, None]
        colour = primary * (1 - edge) + second * edge
    rgb = np.clip(np.rint(colour * 255), 0, 255).astype(np.uint8)
    return rgb, {"pattern": pattern, "palette": [np.round(pair[1], 3).tolist() for pair in pairs]}


def project_image(vertices: np.ndarray, image_path: Path) -> np.ndarray:
    """Planar front projection (along z) of an image onto the mesh, fitted to its x/y bounds.

    The back receives the same image mirrored, which suits roughly symmetric objects seen from the front.
    """
    with Image.open(image_path) as im:
        img = np.asarray(im.convert("RGB"), dtype=np.float32)
    h, w = img.shape[:2]
    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    u = (vertices[:, 0] - lo[0]) / max(hi[0] - lo[0], 1e-9)
    v = (vertices[:, 1] - lo[1]) / max(hi[1] - lo[1], 1e-9)
    x = np.clip(u * (w - 1), 0, w - 1)
    y = np.clip((1 - v) * (h - 1), 0, h - 1)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
    bottom = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
    return np.clip(np.rint(top * (1 - fy) + bottom * fy), 0, 255).astype(np.uint8)
