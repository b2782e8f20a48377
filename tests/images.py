"""Synthetic pictures for image-input tests: a known object on a plain background, as bytes or data URIs."""

from __future__ import annotations

import base64
import io

from PIL import Image, ImageDraw


def object_photo(size: int = 256, colour: tuple[int, int, int] = (200, 30, 30), fmt: str = "PNG") -> bytes:
    """A red mug-like object (a rounded body and a handle with a hole) centred on a light, slightly noisy ground."""
    image = Image.new("RGB", (size, size), (235, 235, 232))
    draw = ImageDraw.Draw(image)
    s = size / 256
    draw.rounded_rectangle((70 * s, 60 * s, 160 * s, 200 * s), radius=int(18 * s), fill=colour)
    draw.ellipse((140 * s, 90 * s, 200 * s, 170 * s), fill=colour)
    draw.ellipse((155 * s, 105 * s, 185 * s, 155 * s), fill=(235, 235, 232))
    draw.rectangle((80 * s, 70 * s, 100 * s, 190 * s), fill=tuple(min(255, c + 40) for c in colour))
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def blank(size: int = 256, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (255, 255, 255)).save(buffer, fmt)
    return buffer.getvalue()


def data_uri(content: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64,{base64.b64encode(content).decode()}"


def glb_box(size: float = 1.0) -> bytes:
    """A closed box as GLB bytes (for model inputs)."""
    import trimesh

    return trimesh.creation.box(extents=(size, size * 1.5, size * 0.5)).export(file_type="glb")


def model_data_uri(content: bytes) -> str:
    return data_uri(content, "application/octet-stream")
