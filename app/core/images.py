"""Checking an image a caller sent before anything is charged: real JPEG/PNG, complete, not absurdly sized."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from app.core.fetch import FetchRefused, sniff

IMAGE_TYPES = ("image/png", "image/jpeg")
MIN_SIDE = 32
MAX_SIDE = 8192  # the workers refuse longer sides too (inference.runners.cutout.load_rgba)
MAX_PIXELS = 25_000_000  # 5000 x 5000: decoding one costs ~100 MB and a fraction of a second


@dataclass(frozen=True)
class ImageInfo:
    media_type: str
    width: int
    height: int

    @property
    def extension(self) -> str:
        return ".png" if self.media_type == "image/png" else ".jpg"


def inspect_image(content: bytes) -> ImageInfo:
    """Sniff and fully decode `content`; FetchRefused (a message for the caller) when it is not a usable image."""
    if not content:
        raise FetchRefused("the image is empty (0 bytes)")
    media_type = sniff(content, IMAGE_TYPES)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(content)) as image:
                width, height = image.size
                if width * height > MAX_PIXELS or max(width, height) > MAX_SIDE:
                    raise FetchRefused(
                        f"the image is {width}x{height} pixels; at most {MAX_PIXELS} pixels and {MAX_SIDE} on a side"
                    )
                image.load()  # a truncated file fails here, not at open
    except FetchRefused:
        raise
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as exc:  # fmt: skip
        raise FetchRefused("the image is truncated or corrupt") from exc
    if min(width, height) < MIN_SIDE:
        raise FetchRefused(f"the image is {width}x{height} pixels; it must be at least {MIN_SIDE}x{MIN_SIDE}")
    return ImageInfo(media_type, width, height)
