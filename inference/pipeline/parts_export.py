"""Writers for multi-part results (segmentation and part completion): a GLB with one named node per part, one GLB
per part, and a preview coloured by part.

Each part is its own glTF mesh and node (`part_00`, `part_01`...), positions in the model's frame (no node
transforms), with NORMAL, and either a palette colour (one material per part, `PALETTE`, fixed so part k always has
the same colour in every output) or the model's own look: TEXCOORD_0 and one shared PBR material whose base colour,
packed metallic-roughness and normal images are embedded once (factors baked in, as `model_ops` reads them), or
COLOR_0 for a vertex-coloured model.
"""

from __future__ import annotations

import io
import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from inference.pipeline.clean import safe_vertex_normals
from inference.pipeline.export_glb import (
    _ARRAY_BUFFER,
    _ELEMENT_ARRAY_BUFFER,
    _LINEAR,
    _LINEAR_MIPMAP_LINEAR,
    _REPEAT,
    _Builder,
)
from inference.pipeline.model_input import LoadedModel
from inference.pipeline.surface import METALLIC, ROUGHNESS
from inference.pipeline.thumbnail import render, write_thumbnails

# 32 distinct, mid-saturation colours (Glasbey-like order: neighbours in the list differ strongly).
PALETTE = np.array(
    [
        (230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
        (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255), (170, 110, 40),
        (255, 250, 200), (128, 0, 0), (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128),
        (128, 128, 128), (255, 225, 25), (100, 149, 237), (255, 99, 71), (46, 139, 87), (218, 165, 32),
        (106, 90, 205), (199, 21, 133), (72, 209, 204), (244, 164, 96), (154, 205, 50), (176, 196, 222),
        (139, 69, 19), (255, 20, 147),
    ],
    dtype=np.uint8,
)  # fmt: skip
PART_METALLIC, PART_ROUGHNESS = 0.0, 0.7


def part_name(index: int) -> str:
    return f"part_{index:02d}"


def palette_colour(index: int) -> np.ndarray:
    """RGB uint8 of part `index` (the palette repeats after 32)."""
    return PALETTE[index % len(PALETTE)]


@dataclass(frozen=True)
class Look:
    """A material shared by parts that keep the model's look: PNG bytes of base_color, metallic_roughness (glTF's
    packed G roughness, B metallic) and normal (those present)."""

    png: dict[str, bytes]


@dataclass(frozen=True)
class Part:
    """One part: triangles over its own vertices, per-vertex normals, and its look: `uv` with `look` (textured),
    `colours` (V, 3) uint8 vertex colours, or neither (the palette colour `rgb`)."""

    name: str
    vertices: np.ndarray
    faces: np.ndarray
    normals: np.ndarray
    rgb: np.ndarray
    uv: np.ndarray | None = None
    colours: np.ndarray | None = None
    look: Look | None = None

    @classmethod
    def plain(cls, index: int, vertices: np.ndarray, faces: np.ndarray, name: str | None = None) -> Part:
        """A palette-coloured part with smooth normals."""
        vertices = np.asarray(vertices, dtype=np.float64)
        faces = np.asarray(faces, dtype=np.int64)
        return cls(
            name or part_name(index), vertices, faces, safe_vertex_normals(vertices, faces), palette_colour(index)
        )


def parts_from_labels(model: LoadedModel, labels: np.ndarray, *, keep_material: bool) -> list[Part]:
    """The model's faces split by `labels` (0..n-1) into parts named part_00...; each keeps the model's own
    vertices (UV seams and all) and, with `keep_material`, its UVs and texture (or vertex colours)."""
    from inference.pipeline.model_ops import _images, _Input  # the model's look, read as remesh/convert read it

    surface = _Input.of(model, None)
    look = None
    if keep_material and surface.maps is not None:
        look = Look({key: _png(image) for key, image in _images(surface.maps).items() if key in _GLTF_MAPS})
    colours = surface.colours if keep_material and surface.maps is None else None
    normals = surface.normals
    parts = []
    for index in range(int(labels.max()) + 1):
        faces = surface.faces[labels == index]
        used, local = np.unique(faces, return_inverse=True)
        parts.append(
            Part(
                name=part_name(index),
                vertices=surface.vertices[used],
                faces=local.reshape(-1, 3),
                normals=normals[used],
                rgb=palette_colour(index),
                uv=surface.uv[used] if look is not None and surface.uv is not None else None,
                colours=colours[used] if colours is not None else None,
                look=look,
            )
        )
    return parts


_GLTF_MAPS = ("base_color", "metallic_roughness", "normal")


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------- GLB


def parts_glb_bytes(parts: list[Part]) -> bytes:
    """A GLB with one node (named as the part) and one mesh per part."""
    b = _Builder()
    doc: dict = {"asset": {"version": "2.0", "generator": "MeshFoundry"}}
    materials: list[dict] = []
    images: list[dict] = []
    textures: list[dict] = []
    shared: dict[int, int] = {}  # id(look) -> material index
    meshes, nodes = [], []
    for part in parts:
        if len(part.faces) == 0:
            continue
        normals = part.normals / np.maximum(np.linalg.norm(part.normals, axis=1, keepdims=True), 1e-12)
        attributes = {
            "POSITION": b.accessor(part.vertices.astype(np.float32), "VEC3", _ARRAY_BUFFER, with_bounds=True),
            "NORMAL": b.accessor(normals.astype(np.float32), "VEC3", _ARRAY_BUFFER),
        }
        if part.look is not None and part.uv is not None:
            uv = np.column_stack([part.uv[:, 0], 1.0 - part.uv[:, 1]]).astype(np.float32)
            attributes["TEXCOORD_0"] = b.accessor(uv, "VEC2", _ARRAY_BUFFER)
            if id(part.look) not in shared:
                shared[id(part.look)] = len(materials)
                materials.append(_look_material(part.look, b, images, textures))
            material = shared[id(part.look)]
        else:
            if part.colours is not None:
                colours = (part.colours[:, :3].astype(np.float32) / 255.0).astype(np.float32)
                attributes["COLOR_0"] = b.accessor(colours, "VEC3", _ARRAY_BUFFER)
                factor = [1.0, 1.0, 1.0, 1.0]
            else:
                factor = [float(c) / 255.0 for c in part.rgb[:3]] + [1.0]
            material = len(materials)
            materials.append(
                {
                    "name": part.name,
                    "pbrMetallicRoughness": {
                        "baseColorFactor": factor,
                        "metallicFactor": PART_METALLIC,
                        "roughnessFactor": PART_ROUGHNESS,
                    },
                }
            )
        indices = b.accessor(part.faces.reshape(-1).astype(np.uint32), "SCALAR", _ELEMENT_ARRAY_BUFFER)
        meshes.append(
            {"name": part.name, "primitives": [{"attributes": attributes, "indices": indices, "material": material}]}
        )
        nodes.append({"mesh": len(meshes) - 1, "name": part.name})
    if images:
        doc["images"] = images
        doc["textures"] = textures
        doc["samplers"] = [
            {"magFilter": _LINEAR, "minFilter": _LINEAR_MIPMAP_LINEAR, "wrapS": _REPEAT, "wrapT": _REPEAT}
        ]
    doc.update(
        {
            "scene": 0,
            "scenes": [{"nodes": list(range(len(nodes)))}],
            "nodes": nodes,
            "meshes": meshes,
            "materials": materials,
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


def _look_material(look: Look, b: _Builder, images: list[dict], textures: list[dict]) -> dict:
    def texture(key: str) -> int:
        images.append({"bufferView": b.view(look.png[key]), "mimeType": "image/png"})
        textures.append({"sampler": 0, "source": len(images) - 1})
        return len(textures) - 1

    pbr: dict = {"baseColorTexture": {"index": texture("base_color")}}
    if "metallic_roughness" in look.png:
        pbr.update({"metallicRoughnessTexture": {"index": texture("metallic_roughness")}, "metallicFactor": 1.0})
        pbr["roughnessFactor"] = 1.0
    else:
        pbr.update({"metallicFactor": METALLIC, "roughnessFactor": ROUGHNESS})
    material = {"name": "material_0", "pbrMetallicRoughness": pbr}
    if "normal" in look.png:
        material["normalTexture"] = {"index": texture("normal")}
    return material


def write_parts(parts: list[Part], out_dir: Path, *, combined: str, suffix: str = "") -> list[str]:
    """Write `combined` (all parts) and one `part_XX{suffix}.glb` per part in `out_dir`; returns the per-part names
    in part order."""
    out_dir = Path(out_dir)
    (out_dir / combined).write_bytes(parts_glb_bytes(parts))
    names = []
    for index, part in enumerate(parts):
        name = f"{part_name(index)}{suffix}.glb"
        (out_dir / name).write_bytes(parts_glb_bytes([part]))
        names.append(name)
    return names


def write_preview(parts: list[Part], out_dir: Path) -> str:
    """`preview.png`: all parts, each in its palette colour (by position), flat-shaded per face."""
    vertices, faces, colours, normals, offset = [], [], [], [], 0
    for index, part in enumerate(parts):
        if len(part.faces) == 0:
            continue
        vertices.append(part.vertices)
        faces.append(part.faces + offset)
        normals.append(part.normals)
        colours.append(np.broadcast_to(palette_colour(index) / 255.0, part.vertices.shape))
        offset += len(part.vertices)
    rgb, alpha = render(
        np.concatenate(vertices), np.concatenate(faces), np.concatenate(normals), colors=np.concatenate(colours)
    )
    thumbnail, _ = write_thumbnails(rgb, alpha, Path(out_dir), with_alpha=False)
    return thumbnail
