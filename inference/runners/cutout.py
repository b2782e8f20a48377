"""Background removal for the image-to-3d runners: u2netp (U-2-Net's small salient-object model) on onnxruntime.

Pre- and post-processing follow rembg's u2net session exactly (resize to 320x320 with LANCZOS, divide by the
maximum, ImageNet mean/std, NCHW float32; output 0 channel 0, min-max normalised, quantised to 8 bits and resized
back to the input size with LANCZOS), so masks match what `rembg` gives with the same model file. One deliberate
difference: when the model's raw output never gets near "object" (a blank or uniform picture), min-max
normalisation would blow pure noise up into a random mask, so `Cutout.mask` returns all zeros instead.

`load_rgba` decodes an input picture and rejects unusable ones with `InputRejected`; `foreground` picks the alpha
(the picture's own, or the model's) and rejects pictures with no clear object.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps, UnidentifiedImageError

from inference.runners.base import InputRejected

INPUT_SIZE = (320, 320)
MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])
# u2netp's raw (sigmoid) output peaks near 1 on any salient object and stays under 0.01 on blank pictures.
NO_OBJECT_PEAK = 0.05
# A picture's own alpha counts when at least this share of its pixels is (mostly) transparent.
OWN_ALPHA_SHARE = 0.02
# Foreground coverage outside [MIN_COVER, MAX_COVER] of the picture means no usable object.
MIN_COVER, MAX_COVER = 0.005, 0.98


class Cutout:
    """u2netp background removal. The ONNX session is created on first use (thread-safe) and shared."""

    def __init__(self, model_path: Path) -> None:
        self.model_path = Path(model_path)
        self._session: ort.InferenceSession | None = None
        self._lock = threading.Lock()

    def _get_session(self) -> ort.InferenceSession:
        with self._lock:
            if self._session is None:
                options = ort.SessionOptions()
                options.intra_op_num_threads = 2
                options.inter_op_num_threads = 1
                self._session = ort.InferenceSession(str(self.model_path), options, providers=["CPUExecutionProvider"])
            return self._session

    def mask(self, rgb: np.ndarray) -> np.ndarray:
        """Foreground probability (float32 HxW in [0, 1], input size) for a uint8 HxWx3 picture."""
        height, width = rgb.shape[:2]
        image = Image.fromarray(np.ascontiguousarray(rgb[..., :3], dtype=np.uint8), "RGB")
        small = np.asarray(image.resize(INPUT_SIZE, Image.Resampling.LANCZOS), dtype=np.float64)
        small = small / max(float(small.max()), 1e-6)
        tensor = ((small - MEAN) / STD).transpose(2, 0, 1)[None].astype(np.float32)
        session = self._get_session()
        pred = session.run(None, {session.get_inputs()[0].name: tensor})[0][0, 0]
        hi, lo = float(pred.max()), float(pred.min())
        if hi < NO_OBJECT_PEAK or hi - lo < 1e-6:
            return np.zeros((height, width), dtype=np.float32)
        pred = (pred - lo) / (hi - lo)
        quantised = Image.fromarray((pred * 255).astype(np.uint8), "L")
        full = quantised.resize((width, height), Image.Resampling.LANCZOS)
        return np.asarray(full, dtype=np.float32) / 255.0


WORK_LONG_SIDE = 2048  # every picture is reduced to this before any processing: bounded memory and time


def load_rgba(
    path: Path, *, min_side: int = 32, max_side: int = 8192, work_side: int | None = WORK_LONG_SIDE
) -> np.ndarray:
    """Decode a picture (EXIF orientation applied) to uint8 HxWx4, or raise `InputRejected` saying why not.

    Pictures whose long side exceeds `work_side` are reduced while decoding (JPEG's draft mode decodes at a fraction
    of the size), so an 8000x8000 upload costs about what a 2048x2048 one does.
    """
    try:
        handle = open(path, "rb")  # noqa: SIM115 (closed below; a vanished input is the caller's, not ours)
    except FileNotFoundError:
        raise InputRejected("an input image is no longer available (its task was deleted or expired)") from None
    with handle:
        try:
            image = Image.open(handle)
        except Image.DecompressionBombError:
            raise InputRejected("the image is too large to process") from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
            raise InputRejected("the file is not an image that can be read (PNG or JPEG expected)") from None
        with image:
            width, height = image.size
            if width < min_side or height < min_side:
                raise InputRejected(f"image is {width}x{height} pixels; it must be at least {min_side}x{min_side}")
            if width > max_side or height > max_side:
                raise InputRejected(
                    f"image is {width}x{height} pixels; it must be at most {max_side} pixels on each side"
                )
            try:
                if work_side is not None and max(width, height) > work_side:
                    image.draft(image.mode, (work_side, work_side))  # JPEG: decode at 1/2, 1/4 or 1/8 scale
                    image.load()
                    _shrink(image, work_side)
                image.load()
                upright = ImageOps.exif_transpose(image)
                rgba = _to_rgba(upright)
            except (OSError, ValueError, SyntaxError, EOFError, IndexError):
                raise InputRejected("the image is damaged or incomplete and could not be decoded") from None
    return rgba


def _shrink(image: Image.Image, side: int) -> None:
    """Reduce in place to at most `side` on the long side; modes PIL cannot filter keep their decoded size."""
    try:
        image.thumbnail((side, side), Image.Resampling.LANCZOS)
    except (ValueError, OSError):
        pass


def _to_rgba(image: Image.Image) -> np.ndarray:
    """uint8 RGBA; 16-bit and float greyscale are scaled into 8 bits (PIL's own conversion clips them)."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        grey = np.asarray(image, dtype=np.float64)
        peak = float(grey.max(initial=0.0))
        if image.mode == "F" and peak <= 1.0:
            grey = grey * 255.0
        elif peak > 255.0:
            grey = grey / 257.0
        grey = np.clip(np.rint(grey), 0, 255).astype(np.uint8)
        return np.dstack([grey, grey, grey, np.full_like(grey, 255)])
    return np.asarray(image.convert("RGBA"), dtype=np.uint8).copy()


def foreground(rgba: np.ndarray, cutout: Cutout | None) -> tuple[np.ndarray, np.ndarray]:
    """(rgb uint8 HxWx3, alpha float32 HxW in [0, 1]) of the picture's object.

    The picture's own alpha is used when a meaningful share of it is transparent; otherwise `cutout` computes one
    (a `RuntimeError` if there is none). Raises `InputRejected` when the object covers almost none or almost all
    of the picture.
    """
    rgb = np.ascontiguousarray(rgba[..., :3])
    own = rgba[..., 3].astype(np.float32) / 255.0 if rgba.shape[2] == 4 else None
    if own is not None and float(np.mean(own < 0.5)) >= OWN_ALPHA_SHARE:
        alpha = own
    else:
        if cutout is None:
            raise RuntimeError("the picture has no transparency and no background-removal model is configured")
        alpha = cutout.mask(rgb)
    cover = float(np.mean(alpha >= 0.5))
    if cover < MIN_COVER:
        raise InputRejected("no object found in the image: it looks like all background")
    if cover > MAX_COVER:
        raise InputRejected(
            "no object found in the image: it fills the whole picture with no clear background around an object"
        )
    return rgb, alpha.astype(np.float32, copy=False)
