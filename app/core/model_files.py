"""Recognising a caller's 3D model file from its first bytes, before anything is charged.

The accepted formats are Meshy's: GLB, glTF (embedded buffers), OBJ, binary FBX and STL. An ASCII FBX, or anything
else, is refused with Meshy's message (`Invalid model file extension: .3dm`). The worker reads the file for real.
"""

from __future__ import annotations

import re
import struct
from posixpath import splitext
from urllib.parse import unquote, urlsplit

from app.core.fetch import FetchRefused

MODEL_FORMATS = ("glb", "gltf", "obj", "fbx", "stl")
_OBJ_LINE = re.compile(rb"^\s*(v|vt|vn|f|o|g|s|mtllib|usemtl|#)(\s|$)", re.MULTILINE)


def extension_of(url_or_name: str) -> str:
    """The lower-case extension of a URL's path or a file name, without the dot ("" when there is none)."""
    path = urlsplit(url_or_name).path if "://" in url_or_name else url_or_name
    return splitext(unquote(path))[1].lower().lstrip(".")


def check_model_extension(url: str) -> None:
    """A URL whose path names an extension Meshy does not read is a 400 at once, as on Meshy."""
    ext = extension_of(url)
    if ext and ext not in MODEL_FORMATS:
        raise FetchRefused(f"Invalid model file extension: .{ext}")


def sniff_model(content: bytes, name_hint: str | None = None) -> str:
    """The real format of a model file among MODEL_FORMATS, or FetchRefused saying why not."""
    if not content:
        raise FetchRefused("the model file is empty (0 bytes)")
    head = content[:4096]
    if head.startswith(b"glTF"):
        return "glb"
    if head.startswith(b"Kaydara FBX Binary"):
        return "fbx"
    if head.lstrip().startswith(b"; FBX") or b"FBXHeaderExtension" in head:
        raise FetchRefused("ASCII FBX is not supported; export the model as binary FBX")
    stripped = head.lstrip()
    if stripped.startswith(b"{") and b'"asset"' in content[:65536]:
        return "gltf"
    if len(content) >= 84:
        (count,) = struct.unpack_from("<I", content, 80)
        if len(content) == 84 + 50 * count and count > 0:
            return "stl"
    if stripped[:5].lower() == b"solid" and b"facet" in content[:65536]:
        return "stl"
    if _OBJ_LINE.search(head) and re.search(rb"^\s*v\s", content[:1_000_000], re.MULTILINE):
        return "obj"
    ext = extension_of(name_hint or "")
    if ext and ext not in MODEL_FORMATS:
        raise FetchRefused(f"Invalid model file extension: .{ext}")
    raise FetchRefused("the file is not a GLB, glTF, OBJ, FBX or STL model")
