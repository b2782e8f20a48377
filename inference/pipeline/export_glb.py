"""Binary glTF 2.0 writer: one mesh, one PBR material, PNGs embedded as they were encoded.

Written directly rather than through trimesh because trimesh re-encodes every texture on export, writes
tangents only as a custom `_TANGENT` attribute and writes no normals unless asked. Here the GLB gets
POSITION (with the min/max glTF requires), unit NORMAL, TEXCOORD_0 and TANGENT (the frame the normal map
was baked in, so viewers need not guess one) and uint32 indices.
"""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path

import numpy as np

from inference.pipeline.surface import (
    CLAY_METALLIC,
    CLAY_RGBA,
    CLAY_ROUGHNESS,
    MATERIAL_NAME,
    METALLIC,
    ROUGHNESS,
    Material,
    Surface,
)

_FLOAT, _UINT32 = 5126, 5125
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963
_LINEAR, _LINEAR_MIPMAP_LINEAR, _REPEAT = 9729, 9987, 10497


class _Builder:
    """Accumulates 4-byte-aligned buffer views and accessors over one binary chunk."""

    def __init__(self) -> None:
        self.blob = bytearray()
        self.views: list[dict] = []
        self.accessors: list[dict] = []

    def view(self, data: bytes, target: int | None = None) -> int:
        self.blob += b"\0" * (-len(self.blob) % 4)
        view = {"buffer": 0, "byteOffset": len(self.blob), "byteLength": len(data)}
        if target is not None:
            view["target"] = target
        self.blob += data
        self.views.append(view)
        return len(self.views) - 1

    def accessor(self, array: np.ndarray, kind: str, target: int, with_bounds: bool = False) -> int:
        component = _UINT32 if array.dtype == np.uint32 else _FLOAT
        acc = {
            "bufferView": self.view(np.ascontiguousarray(array).tobytes(), target),
            "componentType": component,
            "count": int(len(array)),
            "type": kind,
        }
        if with_bounds:
            acc["min"] = np.atleast_1d(array.min(axis=0)).tolist()
            acc["max"] = np.atleast_1d(array.max(axis=0)).tolist()
        self.accessors.append(acc)
        return len(self.accessors) - 1


def glb_bytes(surface: Surface, material: Material) -> bytes:
    """The GLB file content for `surface` (its triangles) with `material`."""
    b = _Builder()
    positions = surface.vertices.astype(np.float32)
    normals = surface.normals / np.linalg.norm(surface.normals, axis=1, keepdims=True)
    attributes = {
        "POSITION": b.accessor(positions, "VEC3", _ARRAY_BUFFER, with_bounds=True),
        "NORMAL": b.accessor(normals.astype(np.float32), "VEC3", _ARRAY_BUFFER),
    }
    doc: dict = {"asset": {"version": "2.0", "generator": "MeshFoundry"}}
    if surface.uv is not None:
        # glTF puts v = 0 at the top of the image; the surface uses v = 0 at the bottom. Written whenever the
        # surface has UVs (a converted model keeps its UVs even without a texture).
        uv = np.column_stack([surface.uv[:, 0], 1.0 - surface.uv[:, 1]]).astype(np.float32)
        attributes["TEXCOORD_0"] = b.accessor(uv, "VEC2", _ARRAY_BUFFER)
    if material.textured and surface.uv is not None:
        if surface.tangents is not None and "normal" in material.png:
            attributes["TANGENT"] = b.accessor(surface.tangents.astype(np.float32), "VEC4", _ARRAY_BUFFER)
        gltf_material, images = _textured_material(material)
        doc["images"] = [{"bufferView": b.view(data), "mimeType": "image/png"} for data in images]
        doc["samplers"] = [
            {"magFilter": _LINEAR, "minFilter": _LINEAR_MIPMAP_LINEAR, "wrapS": _REPEAT, "wrapT": _REPEAT}
        ]
        doc["textures"] = [{"sampler": 0, "source": i} for i in range(len(images))]
    else:
        gltf_material = {
            "name": MATERIAL_NAME,
            "pbrMetallicRoughness": {
                "baseColorFactor": [c / 255 for c in CLAY_RGBA],
                "metallicFactor": CLAY_METALLIC,
                "roughnessFactor": CLAY_ROUGHNESS,
            },
        }
    indices = b.accessor(surface.triangles.reshape(-1).astype(np.uint32), "SCALAR", _ELEMENT_ARRAY_BUFFER)
    doc.update(
        {
            "scene": 0,
            "scenes": [{"nodes": [0]}],
            "nodes": [{"mesh": 0, "name": "model"}],
            "meshes": [
                {"name": "model", "primitives": [{"attributes": attributes, "indices": indices, "material": 0}]}
            ],
            "materials": [gltf_material],
            "accessors": b.accessors,
            "bufferViews": b.views,
        }
    )
    b.blob += b"\0" * (-len(b.blob) % 4)
    doc["buffers"] = [{"byteLength": len(b.blob)}]
    text = json.dumps(doc, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)
    total = 12 + 8 + len(text) + 8 + len(b.blob)
    return b"".join(
        [
            struct.pack("<4sII", b"glTF", 2, total),
            struct.pack("<I4s", len(text), b"JSON"),
            text,
            struct.pack("<I4s", len(b.blob), b"BIN\0"),
            bytes(b.blob),
        ]
    )


def _textured_material(material: Material) -> tuple[dict, list[bytes]]:
    images = [material.png["base_color"]]
    pbr: dict = {"baseColorTexture": {"index": 0}}
    if "metallic_roughness" in material.png:
        images.append(material.png["metallic_roughness"])
        # With a packed texture the factors multiply it, so they are 1.
        pbr.update({"metallicRoughnessTexture": {"index": 1}, "metallicFactor": 1.0, "roughnessFactor": 1.0})
    else:
        pbr.update({"metallicFactor": METALLIC, "roughnessFactor": ROUGHNESS})
    gltf_material = {"name": MATERIAL_NAME, "pbrMetallicRoughness": pbr}
    if "normal" in material.png:
        images.append(material.png["normal"])
        gltf_material["normalTexture"] = {"index": len(images) - 1}
    return gltf_material, images


def export_glb(path: Path, surface: Surface, material: Material) -> None:
    Path(path).write_bytes(glb_bytes(surface, material))


def gltf_from_glb(data: bytes) -> str:
    """A GLB written by `glb_bytes` as a single-file glTF: its JSON with the binary buffer embedded as a base64
    data URI (images stay in buffer views, so they come along)."""
    json_length = struct.unpack_from("<I", data, 12)[0]
    doc = json.loads(data[20 : 20 + json_length])
    blob_length = struct.unpack_from("<I", data, 20 + json_length)[0]
    blob = data[20 + json_length + 8 : 20 + json_length + 8 + blob_length]
    doc["buffers"] = [
        {"byteLength": len(blob), "uri": "data:application/octet-stream;base64," + base64.b64encode(blob).decode()}
    ]
    return json.dumps(doc, separators=(",", ":"))


def export_gltf(path: Path, surface: Surface, material: Material) -> None:
    """The same content as `export_glb`, as a single-file .gltf (a resize keeps a caller's .gltf a .gltf)."""
    Path(path).write_text(gltf_from_glb(glb_bytes(surface, material)))
