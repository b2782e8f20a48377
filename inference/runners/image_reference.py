"""CPU reference runners for text-to-image and image-to-image. They are NOT generative image models.

They exist so the 2D endpoints (queue, progress, deliverables, billing) run and can be tested without GPU weights,
and they say honestly what they are in every task's metadata (`"reference": true`).

`ProceduralImageRunner` (text-to-image) renders the procedural reference model for the prompt: the same
deterministic shape `ProceduralRunner` builds (a chair for "a red chair"), coloured by the prompt's colour words
with `procedural_paint`, and drawn with the pipeline's numpy rasteriser. A single image is the three-quarter view
of the thumbnails; multi-view is three straight side-on views (front, right, back) sharing one framing, so another
runner can carve a visual hull from them.

`ImageEditRunner` (image-to-image) does plain image processing on the first reference image: it cuts the subject
out (u2netp, or the image's own transparency), recolours it toward a colour named in the prompt while keeping its
luminance (so shading and detail survive), and composites it on a plain light background. Multi-view goes through
the image-to-3D reference (`ImageInflateRunner`) and renders that mesh from the front, right and back. Nothing here
invents content the inputs do not already have; the same inputs always give byte-identical PNGs.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import trimesh
from PIL import Image
from scipy import ndimage

from inference.pipeline import thumbnail
from inference.runners import cutout, image_inflate
from inference.runners.base import ASPECT_RATIOS, FractionProgress, ProgressCallback, RunnerArtifacts
from inference.runners.procedural import ProceduralRunner, prompt_words
from inference.runners.procedural_paint import COLOR_WORDS, paint

LONG_SIDE = 1024
# Front, right side, back: the views a visual-hull carver expects, all at elevation 0.
MULTI_VIEW_AZIMUTHS = (0.0, 90.0, 180.0)
# Multi-view cameras sit this many object sizes away, which makes the perspective negligible (about a pixel at
# 1024) so silhouettes from different sides agree like orthographic projections.
FAR_VIEW = 60.0
# Fraction of each canvas side left empty around the subject (the thumbnails' margin).
MARGIN = thumbnail.MARGIN
EDIT_BACKGROUND = np.array([0.96, 0.96, 0.96])


def canvas_size(aspect_ratio: str | None) -> tuple[int, int]:
    """(width, height) with the long side `LONG_SIDE`, e.g. "16:9" -> (1024, 576)."""
    key = aspect_ratio or "1:1"
    if key not in ASPECT_RATIOS:
        raise ValueError(f"unknown aspect_ratio {key!r}; expected one of {', '.join(ASPECT_RATIOS)}")
    w, h = ASPECT_RATIOS[key]
    if w >= h:
        return LONG_SIDE, int(round(LONG_SIDE * h / w))
    return int(round(LONG_SIDE * w / h)), LONG_SIDE


# --- rendering meshes --------------------------------------------------------------------------------------------


def _render_three_quarter(
    vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray, closed: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Square render from the thumbnails' default camera: the three-quarter view from front-above."""
    normals = trimesh.Trimesh(vertices, faces, process=False).vertex_normals
    return thumbnail.render(vertices, faces, normals, colors=colors, size=LONG_SIDE, closed=closed)


def _render_orbit(
    vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray, closed: bool, step: ProgressCallback
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Front, right and back views at elevation 0, square, with one framing shared by all three.

    `thumbnail.render` frames each call on the projected vertices and aims at their bounding-box centre. Extra
    vertices that no face uses steer that without drawing anything: the eight corners of a box that is square
    around the vertical axis (identical after any quarter turn, and enclosing the object, so they set the same
    framing from every side), plus two points on the line of sight, far in front of and behind the object, which
    push the camera `FAR_VIEW` object sizes away (nearly orthographic) while projecting onto the image centre.
    """
    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    centre = (lo + hi) / 2
    half = max(hi[0] - lo[0], hi[2] - lo[2]) / 2
    far = FAR_VIEW * max(float(np.max(hi - lo)), 1e-6)
    corners = np.array(
        [[centre[0] + sx * half, y, centre[2] + sz * half] for sx in (-1, 1) for y in (lo[1], hi[1]) for sz in (-1, 1)]
    )
    normals = trimesh.Trimesh(vertices, faces, process=False).vertex_normals
    pad_normals = np.tile([0.0, 1.0, 0.0], (len(corners) + 2, 1))
    pad_colors = np.zeros((len(corners) + 2, 3))
    views = []
    for i, azimuth in enumerate(MULTI_VIEW_AZIMUTHS):
        a = np.radians(azimuth)
        sight = np.array([np.sin(a), 0.0, np.cos(a)])
        padded = np.vstack([vertices, corners, centre + sight * far, centre - sight * far])
        views.append(
            thumbnail.render(
                padded,
                faces,
                np.vstack([normals, pad_normals]),
                colors=np.vstack([colors, pad_colors]),
                size=LONG_SIDE,
                closed=closed,
                azimuth_deg=azimuth,
                elevation_deg=0.0,
            )
        )
        step((i + 1) / len(MULTI_VIEW_AZIMUTHS))
    return views


def _is_closed(mesh: trimesh.Trimesh) -> bool:
    """Watertight with outward winding: then the renderer may cull back faces."""
    return bool(mesh.is_watertight and mesh.volume > 0)


# --- placing and writing images ----------------------------------------------------------------------------------


def _resize(rgb: np.ndarray, alpha: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Resample premultiplied float rgb and alpha (Lanczos, clipped so rgb never exceeds alpha)."""
    if rgb.shape[1] == width and rgb.shape[0] == height:
        return rgb, alpha

    def one(channel: np.ndarray) -> np.ndarray:
        im = Image.fromarray(np.ascontiguousarray(channel, dtype=np.float32), "F")
        return np.asarray(im.resize((width, height), Image.Resampling.LANCZOS), dtype=np.float32)

    a = np.clip(one(alpha), 0.0, 1.0)
    c = np.stack([one(rgb[..., k]) for k in range(3)], axis=-1)
    return np.clip(c, 0.0, a[..., None]), a


def _paste(rgb: np.ndarray, alpha: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Centre a premultiplied layer on a transparent (height, width) canvas, cropping what falls outside."""
    out_rgb = np.zeros((height, width, 3), dtype=np.float32)
    out_a = np.zeros((height, width), dtype=np.float32)
    h, w = alpha.shape
    top, left = (height - h) // 2, (width - w) // 2
    dy0, dx0 = max(top, 0), max(left, 0)
    sy0, sx0 = max(-top, 0), max(-left, 0)
    ch, cw = min(h - sy0, height - dy0), min(w - sx0, width - dx0)
    out_rgb[dy0 : dy0 + ch, dx0 : dx0 + cw] = rgb[sy0 : sy0 + ch, sx0 : sx0 + cw]
    out_a[dy0 : dy0 + ch, dx0 : dx0 + cw] = alpha[sy0 : sy0 + ch, sx0 : sx0 + cw]
    return out_rgb, out_a


def _bbox(alpha: np.ndarray) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right) inclusive of the covered pixels, or None when nothing is covered."""
    rows, cols = np.nonzero(alpha.max(axis=1) > 0)[0], np.nonzero(alpha.max(axis=0) > 0)[0]
    if len(rows) == 0:
        return None
    return int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])


def _fit_render(rgb: np.ndarray, alpha: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Fit a square render (object centred by the renderer) to a (width, height) canvas with the same margin.

    The square is scaled down only as far as the object needs to fit inside the canvas's margins, then centred:
    along the long side the background is extended, along the short side only empty background is cropped.
    """
    size = alpha.shape[0]
    box = _bbox(alpha)
    if box is None:
        return _paste(*_resize(rgb, alpha, min(width, height), min(width, height)), width, height)
    top, bottom, left, right = box
    # The renderer centres the object, so its extent around the centre is what has to fit.
    half_w = max(size / 2 - left, right + 1 - size / 2)
    half_h = max(size / 2 - top, bottom + 1 - size / 2)
    factor = min(1.0, (1 - 2 * MARGIN) * width / (2 * half_w), (1 - 2 * MARGIN) * height / (2 * half_h))
    scaled = max(int(round(size * factor)), 1)
    return _paste(*_resize(rgb, alpha, scaled, scaled), width, height)


def _gradient(width: int, height: int) -> np.ndarray:
    """The thumbnails' light vertical gradient, stretched over the whole canvas."""
    t = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    column = thumbnail.BACKGROUND_TOP * (1 - t) + thumbnail.BACKGROUND_BOTTOM * t
    return np.broadcast_to(column, (height, width, 3))


def _write(rgb: np.ndarray, alpha: np.ndarray, background: np.ndarray, transparent: bool, path: Path) -> Path:
    """Write a premultiplied layer as opaque RGB over `background`, or as straight-alpha RGBA."""
    a = alpha[..., None]
    if transparent:
        straight = np.where(a > 0, rgb / np.maximum(a, 1e-6), 0.0)
        image = Image.fromarray(np.concatenate([_to_u8(straight), _to_u8(alpha)[..., None]], axis=2), "RGBA")
    else:
        image = Image.fromarray(_to_u8(rgb + background * (1 - a)), "RGB")
    image.save(path, format="PNG", compress_level=4)
    return path


def _to_u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)


def _flag(params: Mapping[str, Any], key: str) -> bool:
    return bool(params.get(key) or False)


# --- text-to-image -----------------------------------------------------------------------------------------------


class ProceduralImageRunner:
    """Text-to-image reference: a render of the procedural model for the prompt (see the module docstring).

    Params: `prompt`, `seed` (default 0), `aspect_ratio` ("1:1" default; ignored for multi-view, which is square),
    `generate_multi_view`, `remove_background` (RGBA with a transparent background), `pose_mode` (recorded only:
    procedural shapes have no pose). Writes `image_0.png` (and `image_1.png`, `image_2.png` for multi-view).
    """

    name = "procedural-image"

    def __init__(self, step_delay_s: float = 0.0) -> None:
        self.step_delay_s = float(step_delay_s)

    def run(
        self,
        inputs: Mapping[str, Any],
        params: Mapping[str, Any],
        out_dir: Path,
        progress: ProgressCallback,
    ) -> RunnerArtifacts:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        steps = FractionProgress(progress, self.step_delay_s)
        prompt = str(params.get("prompt") or "")
        seed = int(params.get("seed") or 0)
        multi = _flag(params, "generate_multi_view")
        transparent = _flag(params, "remove_background")
        width, height = (LONG_SIDE, LONG_SIDE) if multi else canvas_size(params.get("aspect_ratio"))

        with tempfile.TemporaryDirectory(prefix="procedural-image-") as tmp:
            shape = ProceduralRunner().run(
                {}, {"mode": "preview", "prompt": prompt, "seed": seed}, Path(tmp), steps.span(0.0, 0.3)
            )
            mesh = trimesh.load(shape.mesh, force="mesh", process=False)
        vertices, faces = np.asarray(mesh.vertices), np.asarray(mesh.faces)
        colours, paint_info = paint(vertices, prompt_words(prompt), seed)
        colours = colours.astype(np.float32) / 255.0
        closed = _is_closed(mesh)
        steps.step(0.4)

        if multi:
            layers = _render_orbit(vertices, faces, colours, closed, steps.span(0.4, 0.85))
        else:
            layers = [_fit_render(*_render_three_quarter(vertices, faces, colours, closed), width, height)]
            steps.step(0.85)
        background = _gradient(width, height)
        images = tuple(
            _write(rgb, alpha, background, transparent, out_dir / f"image_{i}.png")
            for i, (rgb, alpha) in enumerate(layers)
        )
        steps.step(1.0)
        return RunnerArtifacts(
            images=images,
            metadata={
                "reference": True,
                "procedural": True,
                "family": shape.metadata.get("family"),
                "seed": seed,
                "width": width,
                "height": height,
                "aspect_ratio": "1:1" if multi else (params.get("aspect_ratio") or "1:1"),
                "views": [_view_name(a) for a in MULTI_VIEW_AZIMUTHS] if multi else ["three_quarter"],
                "remove_background": transparent,
                "pose_mode": params.get("pose_mode") or "",
                "pose_applied": False,
                **paint_info,
            },
        )


def _view_name(azimuth: float) -> str:
    return {0.0: "front", 90.0: "right", 180.0: "back"}[azimuth]


# --- image-to-image ----------------------------------------------------------------------------------------------

# Rec. 709 luma weights on sRGB values: luminance is linear in the colour, so mixing stops keeps it exact.
LUMA = np.array([0.2126, 0.7152, 0.0722])
GRAYSCALE_WORDS = {"grayscale", "greyscale", "monochrome", "desaturate", "desaturated", "colorless", "colourless"}
DARKER_WORDS = {"darker", "darken", "dark", "dim", "dimmer"}
BRIGHTER_WORDS = {"brighter", "brighten", "bright", "lighter", "lighten", "light"}
TONE_GAMMA = 1.4  # luminance exponent for "darker" (and its inverse for "brighter")
# Black and white are defined by luminance, so for them the luminance moves into these ranges (detail kept).
ACHROMATIC_RANGE = {"black": (0.0, 0.3), "white": (0.7, 1.0)}


def edit_plan(prompt: str) -> dict[str, Any]:
    """What the prompt asks of the colours: a target colour word, grayscale, and a tone ("darker"/"brighter")."""
    words = prompt_words(prompt)
    grayscale = any(w in GRAYSCALE_WORDS for w in words)
    consumed: set[int] = set()
    for i in range(len(words) - 2):
        if words[i] == "black" and words[i + 1] in ("and", "n") and words[i + 2] == "white":
            grayscale = True
            consumed.update((i, i + 2))
    colour = next((w for i, w in enumerate(words) if w in COLOR_WORDS and i not in consumed), None)
    darker = sum(w in DARKER_WORDS for w in words)
    brighter = sum(w in BRIGHTER_WORDS for w in words)
    tone = "darker" if darker > brighter else "brighter" if brighter > darker else None
    return {"colour": None if grayscale else colour, "grayscale": grayscale, "tone": tone}


def recolour(rgb: np.ndarray, plan: Mapping[str, Any]) -> np.ndarray:
    """Apply `edit_plan`'s result to float rgb (..., 3) in 0..1, keeping each pixel's luminance.

    A colour word turns the picture into a gradient map indexed by luminance: black, the word's dark shade, its
    light shade, white; every stop sits at its own luminance, so shading and detail survive and only hue and
    saturation change. Grayscale keeps the luminance alone; "darker"/"brighter" bend it with a gamma curve.
    """
    luma = rgb @ LUMA
    colour = plan.get("colour")
    if colour in ACHROMATIC_RANGE:
        lo, hi = ACHROMATIC_RANGE[colour]
        luma = lo + (hi - lo) * luma
    if plan.get("tone") == "darker":
        luma = luma**TONE_GAMMA
    elif plan.get("tone") == "brighter":
        luma = luma ** (1 / TONE_GAMMA)
    if colour is not None:
        dark, light = (np.asarray(c, dtype=np.float64) for c in COLOR_WORDS[colour])
        stops = np.array([np.zeros(3), dark, light, np.ones(3)])
        keys = stops @ LUMA
        out = np.stack([np.interp(luma, keys, stops[:, k]) for k in range(3)], axis=-1)
    elif plan.get("grayscale"):
        out = np.repeat(luma[..., None], 3, axis=-1)
    elif plan.get("tone") is not None:
        # Keep the hue: scale the colour to the new luminance; what clipping loses is made up by mixing in white.
        out = np.clip(rgb * (luma / np.maximum(rgb @ LUMA, 1e-6))[..., None], 0.0, 1.0)
        clipped = out @ LUMA
        towards_white = np.clip((luma - clipped) / np.maximum(1.0 - clipped, 1e-6), 0.0, 1.0)
        out = out + towards_white[..., None] * (1.0 - out)
    else:
        out = rgb
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def _subject(rgb_u8: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The cut-out cropped to its object: straight float rgb with clean edge colours, and alpha.

    Crops larger than twice the output are first reduced (premultiplied, so edges stay right). Soft-edge pixels
    mix the old background into their colour (a light halo on a white photo); they take the colour of the nearest
    solid object pixel instead, as alpha already says how much of them is object.
    """
    box = _bbox(np.where(alpha >= 1 / 255, alpha, 0.0))
    top, bottom, left, right = box if box is not None else (0, alpha.shape[0] - 1, 0, alpha.shape[1] - 1)
    a = alpha[top : bottom + 1, left : right + 1]
    rgb = rgb_u8[top : bottom + 1, left : right + 1].astype(np.float32) / 255.0
    h, w = a.shape
    if max(h, w) > 2 * LONG_SIDE:
        factor = 2 * LONG_SIDE / max(h, w)
        premultiplied, a = _resize(rgb * a[..., None], a, max(round(w * factor), 1), max(round(h * factor), 1))
        rgb = np.where(a[..., None] > 0, premultiplied / np.maximum(a[..., None], 1e-6), 0.0)
    core = a >= min(0.95, float(a.max()) * 0.95)
    if not core.all():
        _, (rows, cols) = ndimage.distance_transform_edt(~core, return_indices=True)
        rgb = rgb[rows, cols]
    return np.clip(rgb, 0.0, 1.0).astype(np.float32), a.astype(np.float32)


def _fit_subject(rgb: np.ndarray, alpha: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Scale a cropped subject (straight rgb + alpha) to fill the canvas inside the margin, centred."""
    h, w = alpha.shape
    factor = min((1 - 2 * MARGIN) * width / w, (1 - 2 * MARGIN) * height / h)
    scaled_w, scaled_h = max(int(round(w * factor)), 1), max(int(round(h * factor)), 1)
    return _paste(*_resize(rgb * alpha[..., None], alpha, scaled_w, scaled_h), width, height)


class ImageEditRunner:
    """Image-to-image reference: cut-out, prompt-driven recolouring, plain background (see the module docstring).

    Inputs: `images`, 1-5 picture paths; the first is the subject, the others are recorded but not used. Params:
    `prompt` (colour words recolour the subject; "darker", "brighter", "grayscale", "black and white" adjust it;
    anything else leaves it as it is), `aspect_ratio` ("1:1" default, single view only), `generate_multi_view`
    (front, right and back renders of the image-to-3D reference mesh), `remove_background` (RGBA output).
    Pictures without transparency need `cutout_model` (u2netp); pictures with a transparent background do not.
    """

    name = "image-edit"

    def __init__(self, cutout_model: Path | None, step_delay_s: float = 0.0) -> None:
        self.cutout_model = None if cutout_model is None else Path(cutout_model)
        self._cutout = None if cutout_model is None else cutout.Cutout(Path(cutout_model))
        self.step_delay_s = float(step_delay_s)

    def run(
        self,
        inputs: Mapping[str, Any],
        params: Mapping[str, Any],
        out_dir: Path,
        progress: ProgressCallback,
    ) -> RunnerArtifacts:
        images: Sequence[Path] = list(inputs.get("images") or ())
        if not images:
            raise ValueError("image-edit needs inputs['images'] (1 to 5 picture paths)")
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        steps = FractionProgress(progress, self.step_delay_s)
        multi = _flag(params, "generate_multi_view")
        transparent = _flag(params, "remove_background")
        width, height = (LONG_SIDE, LONG_SIDE) if multi else canvas_size(params.get("aspect_ratio"))

        rgba = cutout.load_rgba(Path(images[0]))
        steps.step(0.1)
        rgb, alpha = _subject(*cutout.foreground(rgba, self._cutout))
        steps.step(0.3)
        plan = edit_plan(str(params.get("prompt") or ""))
        rgb = recolour(rgb, plan)
        steps.step(0.4)

        if multi:
            layers = self._views(rgb, alpha, steps)
        else:
            layers = [_fit_subject(rgb, alpha, width, height)]
            steps.step(0.85)
        background = np.broadcast_to(EDIT_BACKGROUND, (height, width, 3))
        paths = tuple(
            _write(layer_rgb, layer_alpha, background, transparent, out_dir / f"image_{i}.png")
            for i, (layer_rgb, layer_alpha) in enumerate(layers)
        )
        steps.step(1.0)
        return RunnerArtifacts(
            images=paths,
            metadata={
                "reference": True,
                "width": width,
                "height": height,
                "aspect_ratio": "1:1" if multi else (params.get("aspect_ratio") or "1:1"),
                "views": [_view_name(a) for a in MULTI_VIEW_AZIMUTHS] if multi else ["input"],
                "remove_background": transparent,
                "recolour": plan["colour"],
                "grayscale": plan["grayscale"],
                "tone": plan["tone"],
                "reference_images": len(images),
                "reference_images_used": 1,
            },
        )

    def _views(
        self, rgb: np.ndarray, alpha: np.ndarray, steps: FractionProgress
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Front, right and back renders of the image-to-3D reference mesh built from the recoloured cut-out."""
        # A transparent border around the tight crop, so the picture reads as an object on a clear background.
        pad = max(alpha.shape) // 8 + 1
        rgba = np.pad(np.concatenate([_to_u8(rgb), _to_u8(alpha)[..., None]], axis=2), ((pad, pad), (pad, pad), (0, 0)))
        with tempfile.TemporaryDirectory(prefix="image-edit-") as tmp:
            subject = Path(tmp) / "subject.png"
            Image.fromarray(rgba, "RGBA").save(subject)
            shape = image_inflate.ImageInflateRunner(self.cutout_model).run(
                {"images": [subject]}, {"should_texture": True}, Path(tmp) / "mesh", steps.span(0.4, 0.7)
            )
            mesh = trimesh.load(shape.mesh, force="mesh", process=False)
        vertices, faces = np.asarray(mesh.vertices), np.asarray(mesh.faces)
        colours = np.asarray(mesh.visual.vertex_colors, dtype=np.float32)[:, :3] / 255.0
        return _render_orbit(vertices, faces, colours, _is_closed(mesh), steps.span(0.7, 0.9))
