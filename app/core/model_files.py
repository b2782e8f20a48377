"""Recognising a caller's 3D model file from its first bytes, before anything is charged.

The accepted formats are Meshy's: GLB, glTF (embedded buffers), OBJ, binary FBX and STL. An ASCII FBX, or anything
else, is refused with Meshy's message (`Invalid model file extension: .3dm`). The API sniffs an inline upload at
create, the worker a fetched one; the worker then reads the file for real (inference/pipeline/model_input.py).
"""

from __future__ import annotations

import math
import re
import struct
from posixpath import splitext
from urllib.parse import unquote, urlsplit

from app.core.fetch import FetchRefused

MODEL_FORMATS = ("glb", "gltf", "obj", "fbx", "stl")
FBX_BINARY_MAGIC = b"Kaydara FBX Binary  \x00"
GLB_MAGIC = b"glTF"
ASCII_FBX = "ASCII FBX is not supported; export binary FBX"
NOT_A_MODEL = "the file is not a GLB, glTF, OBJ, FBX or STL model"
_OBJ_LINE = re.compile(rb"^[ \t]*(v|vt|vn|f|o|g|s|mtllib|usemtl|#)([ \t]|\r?$)", re.MULTILINE)
_OBJ_VERTEX = re.compile(rb"^[ \t]*v[ \t]", re.MULTILINE)
_EXTENSION = re.compile(r"[a-z0-9]{1,16}")


def check_model_extension(url: str) -> None:
    """A URL whose path names an extension Meshy does not read is a 400 at once, as on Meshy."""
    ext = _extension(url)
    if ext and ext not in MODEL_FORMATS:
        raise FetchRefused(f"Invalid model file extension: .{ext}")


def _extension(name_hint: str | None) -> str:
    """The lower-case extension of a URL's path or a file name ("" when none, or when it is not a plain word)."""
    if not name_hint or name_hint.startswith("data:"):
        return ""
    path = urlsplit(name_hint).path if "://" in name_hint else name_hint
    ext = splitext(unquote(path))[1].lower().lstrip(".")
    return ext if _EXTENSION.fullmatch(ext) else ""


def _plausible_binary_stl(head: bytes, strict: bool) -> bool:
    """Binary STL: 80-byte header, uint32 count, then 50-byte facets. When `head` is the whole file its size must
    be 84 + 50n; when it is only the start, the first facet must hold finite, sane floats (and, without an .stl
    name to go on, a zero attribute word)."""
    if len(head) < 84:
        return False
    (count,) = struct.unpack_from("<I", head, 80)
    if count == 0:
        return False
    if len(head) == 84 + 50 * count:
        return True
    if len(head) < 84 + 50 or len(head) > 84 + 50 * count:
        return False
    floats = struct.unpack_from("<12f", head, 84)
    attribute = struct.unpack_from("<H", head, 84 + 48)[0]
    sane = all(math.isfinite(x) and abs(x) < 1e9 for x in floats)
    return sane and (not strict or attribute == 0)


def sniff_model(content_head: bytes, name_hint: str | None = None) -> str:
    """The real format among MODEL_FORMATS from the first bytes of a file (the whole file is fine too), with the URL
    or file name's extension as a hint; `FetchRefused` saying why not."""
    if not content_head:
        raise FetchRefused("the model file is empty (0 bytes)")
    ext = _extension(name_hint)
    head = content_head[:65536]
    stripped = head.removeprefix(b"\xef\xbb\xbf").lstrip()
    if head.startswith(GLB_MAGIC):
        return "glb"
    if head.startswith(FBX_BINARY_MAGIC):
        return "fbx"
    if stripped.startswith(b"; FBX") or b"FBXHeaderExtension" in head[:4096]:
        raise FetchRefused(ASCII_FBX)
    if stripped.startswith(b"{") and (ext == "gltf" or b'"asset"' in content_head):
        return "gltf"
    if len(content_head) >= 84:
        (count,) = struct.unpack_from("<I", content_head, 80)
        if count > 0 and len(content_head) == 84 + 50 * count:
            return "stl"
    if stripped[:5].lower() == b"solid" and b"facet" in head:
        return "stl"
    text = b"\x00" not in head[:4096]
    if text and _OBJ_LINE.search(head[:4096]) and (_OBJ_VERTEX.search(head) or ext == "obj"):
        return "obj"
    if _plausible_binary_stl(content_head, strict=ext != "stl"):
        return "stl"
    if ext and ext not in MODEL_FORMATS:
        raise FetchRefused(f"Invalid model file extension: .{ext}")
    raise FetchRefused(NOT_A_MODEL)
