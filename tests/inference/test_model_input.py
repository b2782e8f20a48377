"""Reading a caller's 3D model: every accepted format read with its textures/UVs, and every bad file refused in plain
words (no crash, no path, nothing opened outside the file). Every input is built here."""

from __future__ import annotations

import base64
import io
import itertools
import json
import random
import re
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from app.core.fetch import FetchRefused
from app.core.model_files import sniff_model
from inference.pipeline import model_input
from inference.pipeline.export_fbx import AssimpNotFound, run_assimp
from inference.pipeline.model_input import (
    ASCII_FBX,
    COMPRESSED,
    CORRUPT,
    EXTERNAL_REFERENCE,
    FBX_FAILED,
    NO_MESH,
    NOT_A_MODEL,
    NOT_FINITE,
    OBJ_WITHOUT_MTL,
    LoadedModel,
    load_model,
    uv_coverage,
)
from inference.runners.base import InputRejected

# Files opened by this process while `_OPENED` is recording. An audit hook cannot be removed, so it is added only
# when a test needs it, once, and does nothing unless recording.
_OPENED: list[str] | None = None
_HOOKED = False


def _audit(event: str, args: tuple) -> None:
    if _OPENED is not None and event == "open" and isinstance(args[0], (str, bytes, Path)):
        _OPENED.append(str(args[0]))


def record_opens() -> None:
    global _HOOKED
    if not _HOOKED:
        sys.addaudithook(_audit)
        _HOOKED = True


# --- builders ------------------------------------------------------------------------------------------------------


def noise(size: int, seed: int = 0, mode: str = "RGB") -> Image.Image:
    channels = len(mode)
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, channels), dtype=np.uint8)
    return Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode)


def textured_sphere(subdivisions: int = 3, seed: int = 0, texture: int = 64) -> trimesh.Trimesh:
    mesh = trimesh.creation.icosphere(subdivisions=subdivisions)
    uv = (mesh.vertices[:, :2] + 1) / 2
    material = trimesh.visual.material.PBRMaterial(
        baseColorTexture=noise(texture, seed),
        metallicRoughnessTexture=noise(texture, seed + 1),
        normalTexture=noise(texture, seed + 2),
        metallicFactor=0.25,
        roughnessFactor=0.75,
    )
    mesh.visual = trimesh.visual.TextureVisuals(uv=uv, material=material)
    return mesh


def texels(image: Image.Image, uv: np.ndarray) -> np.ndarray:
    """The pixel each UV falls in (nearest; UV origin bottom-left)."""
    array = np.asarray(image)
    height, width = array.shape[:2]
    x = np.clip(np.floor(uv[:, 0] * width), 0, width - 1).astype(int)
    y = np.clip(np.floor((1 - uv[:, 1]) * height), 0, height - 1).astype(int)
    return array[y, x].astype(np.float64)


def split_glb(glb: bytes) -> tuple[dict, bytes]:
    length = struct.unpack_from("<I", glb, 12)[0]
    header = json.loads(glb[20 : 20 + length])
    rest = glb[20 + length :]
    return header, rest[8 : 8 + struct.unpack_from("<I", rest, 0)[0]] if rest else b""


def join_glb(header: dict, binary: bytes) -> bytes:
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 4)
    binary += b"\x00" * (-len(binary) % 4)
    body = struct.pack("<II", len(text), 0x4E4F534A) + text + struct.pack("<II", len(binary), 0x004E4942) + binary
    return struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body


def with_image(glb: bytes, blob: bytes) -> bytes:
    """The GLB with its first image's bytes replaced by `blob`."""
    header, binary = split_glb(glb)
    binary += b"\x00" * (-len(binary) % 4)
    header["bufferViews"].append({"buffer": 0, "byteOffset": len(binary), "byteLength": len(blob)})
    header["images"][0] = {"bufferView": len(header["bufferViews"]) - 1, "mimeType": "image/png"}
    binary += blob
    header["buffers"][0]["byteLength"] = len(binary)
    return join_glb(header, binary)


def png_header(width: int, height: int) -> bytes:
    """A tiny PNG declaring `width` x `height`: an IHDR and a few bytes of IDAT (a decompression bomb's shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    )


def binary_stl(triangles: np.ndarray, header: bytes = b"binary stl") -> bytes:
    record = np.zeros(len(triangles), dtype=[("n", "<f4", 3), ("v", "<f4", (3, 3)), ("a", "<u2")])
    record["v"] = triangles
    return header.ljust(80, b" ") + struct.pack("<I", len(triangles)) + record.tobytes()


def obj_text(mesh: trimesh.Trimesh, *, uv: np.ndarray | None = None, colours: bool = False, head: str = "") -> str:
    lines = [head] if head else []
    for i, (x, y, z) in enumerate(mesh.vertices):
        colour = " 1 0.5 0.25" if colours and i % 2 == 0 else (" 0 0.5 1" if colours else "")
        lines.append(f"v {x:.6f} {y:.6f} {z:.6f}{colour}")
    if uv is not None:
        lines += [f"vt {u:.6f} {v:.6f}" for u, v in uv]
        lines += [f"f {a + 1}/{a + 1} {b + 1}/{b + 1} {c + 1}/{c + 1}" for a, b, c in mesh.faces]
    else:
        lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in mesh.faces]
    return "\n".join(lines) + "\n"


def write(tmp_path: Path, name: str, content: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def rejected(path: Path, fmt: str, **kwargs: int) -> InputRejected:
    with pytest.raises(InputRejected) as caught:
        load_model(path, fmt, **kwargs)
    assert str(path.parent) not in str(caught.value) and not re.search(r"(^|\s)[/.~]+/", str(caught.value))
    return caught.value


@pytest.fixture(scope="module")
def sphere_glb() -> bytes:
    return textured_sphere().export(file_type="glb")


@pytest.fixture(scope="module")
def sphere_fbx(tmp_path_factory: pytest.TempPathFactory, sphere_glb: bytes) -> bytes:
    folder = tmp_path_factory.mktemp("fbx")
    (folder / "in.glb").write_bytes(sphere_glb)
    done = run_assimp("export", str(folder / "in.glb"), str(folder / "out.fbx"), "-ffbx", "--embed-textures")
    assert done.returncode == 0, done.stderr
    return (folder / "out.fbx").read_bytes()


# --- sniffing ------------------------------------------------------------------------------------------------------


class TestSniff:
    def test_each_format(self, sphere_glb: bytes, sphere_fbx: bytes) -> None:
        mesh = trimesh.creation.box()
        gltf = trimesh.Scene(mesh).export(file_type="gltf", embed_buffers=True)["model.gltf"]
        stl = mesh.export(file_type="stl")
        cases = {
            "glb": sphere_glb,
            "gltf": gltf,
            "fbx": sphere_fbx,
            "obj": obj_text(mesh).encode(),
            "stl": stl,
        }
        for fmt, content in cases.items():
            assert sniff_model(content, None) == fmt, fmt
            assert sniff_model(content[:4096], f"https://example.com/files/model.{fmt}?sig=1") == fmt, fmt
        assert sniff_model(mesh.export(file_type="stl_ascii").encode(), None) == "stl"
        assert sniff_model(b"# made by hand\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", "x.obj") == "obj"
        late_asset = json.dumps({"buffers": [{"uri": "data:;base64," + "A" * 100_000}], "asset": {"version": "2.0"}})
        assert sniff_model(late_asset.encode(), None) == "gltf"
        assert sniff_model(late_asset.encode()[:1000], "https://example.com/m.gltf") == "gltf"

    def test_binary_stl_from_its_head_or_despite_a_solid_header(self) -> None:
        triangles = trimesh.creation.icosphere(subdivisions=3).triangles
        content = binary_stl(triangles, header=b"solid exported by a CAD tool")
        assert sniff_model(content, None) == "stl"  # the size 84 + 50n decides, not the "solid" header
        assert sniff_model(content[:2048], "part.STL") == "stl"
        assert sniff_model(content[:2048], None) == "stl"  # a sane first facet with a zero attribute word

    def test_refusals(self) -> None:
        random = np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes()
        ascii_fbx = b"; FBX 7.4.0 project file\n; ------\n\nFBXHeaderExtension:  {\n}\n"
        with pytest.raises(FetchRefused, match=r"^ASCII FBX is not supported; export binary FBX$"):
            sniff_model(ascii_fbx, "model.fbx")
        with pytest.raises(FetchRefused, match=r"^Invalid model file extension: \.3dm$"):
            sniff_model(random, "model.3dm")
        with pytest.raises(FetchRefused, match=r"^Invalid model file extension: \.3dm$"):
            sniff_model(random, "https://example.com/a/model.3dm?token=abc")
        for hint in (None, "model.glb", "data:application/octet-stream;base64,AAAA", "noextension"):
            with pytest.raises(FetchRefused) as caught:
                sniff_model(random, hint)
            assert str(caught.value) == NOT_A_MODEL
        with pytest.raises(FetchRefused, match="empty"):
            sniff_model(b"", "model.glb")


# --- reading good files --------------------------------------------------------------------------------------------


class TestRead:
    def test_textured_glb_keeps_pbr_textures_and_uvs(self, tmp_path: Path, sphere_glb: bytes) -> None:
        source = textured_sphere()
        loaded = load_model(write(tmp_path, "m.glb", sphere_glb), "glb")
        assert isinstance(loaded, LoadedModel) and loaded.source_format == "glb" and loaded.notes == []
        assert len(loaded.mesh.faces) == len(source.faces) and loaded.has_uv
        assert np.allclose(loaded.mesh.vertices, source.vertices, atol=1e-6)
        assert np.allclose(loaded.mesh.visual.uv, source.visual.uv, atol=1e-6)
        material = loaded.mesh.visual.material
        assert isinstance(material, trimesh.visual.material.PBRMaterial)
        assert np.array_equal(np.asarray(loaded.base_color), np.asarray(noise(64, 0)))
        assert material.metallicRoughnessTexture.size == (64, 64) and material.normalTexture.size == (64, 64)
        assert material.metallicFactor == pytest.approx(0.25)
        assert uv_coverage(loaded.mesh) > 0.5

    def test_embedded_gltf(self, tmp_path: Path) -> None:
        files = trimesh.Scene(textured_sphere()).export(file_type="gltf", embed_buffers=True)
        assert list(files) == ["model.gltf"]
        loaded = load_model(write(tmp_path, "m.gltf", files["model.gltf"]), "gltf")
        assert loaded.has_uv and loaded.base_color.size == (64, 64) and len(loaded.mesh.faces) == 1280

    def test_quantized_uvs_are_read_as_floats(self, tmp_path: Path, sphere_glb: bytes) -> None:
        header, binary = split_glb(sphere_glb)
        accessor = header["accessors"][header["meshes"][0]["primitives"][0]["attributes"]["TEXCOORD_0"]]
        view = header["bufferViews"][accessor["bufferView"]]
        start = view.get("byteOffset", 0) + accessor.get("byteOffset", 0)
        uv = np.frombuffer(binary, "<f4", accessor["count"] * 2, start)
        quantized = np.round(uv * 65535).astype("<u2").tobytes()
        binary += b"\x00" * (-len(binary) % 4)
        header["bufferViews"].append({"buffer": 0, "byteOffset": len(binary), "byteLength": len(quantized)})
        binary += quantized
        header["buffers"][0]["byteLength"] = len(binary)
        accessor.update(bufferView=len(header["bufferViews"]) - 1, componentType=5123, normalized=True, byteOffset=0)
        header["extensionsRequired"] = ["KHR_mesh_quantization"]
        header["extensionsUsed"] = ["KHR_mesh_quantization", "KHR_texture_transform"]
        loaded = load_model(write(tmp_path, "q.glb", join_glb(header, binary)), "glb")
        assert np.allclose(loaded.mesh.visual.uv, textured_sphere().visual.uv, atol=1e-4)
        assert loaded.notes == ["the model's texture transforms (KHR_texture_transform) were not applied"]

    def test_nodes_become_one_mesh_with_transforms_and_one_atlas(self, tmp_path: Path) -> None:
        left = textured_sphere(seed=0)
        right = textured_sphere(subdivisions=2, seed=10, texture=32)
        scene = trimesh.Scene()
        scene.add_geometry(left, node_name="left")
        scene.add_geometry(right, node_name="right", transform=trimesh.transformations.translation_matrix([3, 0, 0]))
        loaded = load_model(write(tmp_path, "two.glb", scene.export(file_type="glb")), "glb")
        assert len(loaded.mesh.faces) == len(left.faces) + len(right.faces)
        assert np.allclose(loaded.mesh.bounds, [[-1, -1, -1], [4, 1, 1]], atol=1e-6)
        assert loaded.has_uv and loaded.base_color is not None
        assert isinstance(loaded.mesh.visual.material, trimesh.visual.material.PBRMaterial)
        assert any("2 materials were merged" in note for note in loaded.notes)
        assert 0.0 <= loaded.mesh.visual.uv.min() and loaded.mesh.visual.uv.max() <= 1.0

    def test_atlas_keeps_every_texel_where_its_uv_points(self, tmp_path: Path) -> None:
        left = textured_sphere(seed=0)
        left.visual.material.baseColorFactor = [128, 255, 255, 128]  # baked in: sRGB texels, linear factor
        right = textured_sphere(subdivisions=2, seed=10, texture=32)
        plain = trimesh.creation.box()  # a third material: a colour, no texture
        plain.visual = trimesh.visual.TextureVisuals(
            uv=np.zeros((8, 2)), material=trimesh.visual.material.PBRMaterial(baseColorFactor=[1.0, 0.0, 0.0, 1.0])
        )
        scene = trimesh.Scene()
        for index, mesh in enumerate((left, right, plain)):
            scene.add_geometry(mesh, node_name=f"n{index}", geom_name=f"g{index}")
        loaded = load_model(write(tmp_path, "three.glb", scene.export(file_type="glb")), "glb")
        assert "3 materials were merged" in loaded.notes[0]
        material, uv = loaded.mesh.visual.material, loaded.mesh.visual.uv
        # the parts come in the scene graph's order: find it, then each vertex's atlas texel is its original texel
        order = next(
            parts
            for parts in itertools.permutations((left, right, plain))
            if np.allclose(np.vstack([m.vertices for m in parts]), loaded.mesh.vertices)
        )
        start = 0
        for mesh in order:
            end = start + len(mesh.vertices)
            if mesh is plain:
                assert (texels(material.baseColorTexture, uv[start:end]) == [255, 0, 0, 255]).all()
            for name in ("baseColorTexture", "metallicRoughnessTexture", "normalTexture"):
                if mesh is plain:
                    continue
                mode = "RGBA" if name == "baseColorTexture" else "RGB"
                source = getattr(mesh.visual.material, name)
                half = 128 / 255
                factors = {
                    "metallicRoughnessTexture": np.array([1.0, 0.75, 0.25]),
                    "baseColorTexture": np.array([half ** (1 / 2.2), 1.0, 1.0, half]) if mesh is left else 1.0,
                }.get(name, 1.0)
                # UVs on a texel boundary are ambiguous to sample: compare the others
                pixel = mesh.visual.uv * source.size
                clear = (np.abs(pixel - np.round(pixel)) > 1e-6).all(axis=1)
                assert clear.sum() > len(clear) // 2
                expected = np.round(texels(source.convert(mode), mesh.visual.uv[clear]) * factors)
                got = texels(getattr(material, name).convert(mode), uv[start:end][clear])
                assert np.array_equal(got, expected), name
            start = end
        assert material.metallicFactor == material.roughnessFactor == 1.0

    def test_atlas_is_scaled_to_fit(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(model_input, "ATLAS_SIDE", 64)
        scene = trimesh.Scene()
        for index in range(3):
            scene.add_geometry(textured_sphere(subdivisions=1, seed=index), node_name=f"n{index}")
        loaded = load_model(write(tmp_path, "fit.glb", scene.export(file_type="glb")), "glb")
        assert (
            max(loaded.base_color.size) <= 64
            and loaded.mesh.visual.material.normalTexture.size == loaded.base_color.size
        )
        assert 0 < loaded.mesh.visual.uv.min() and loaded.mesh.visual.uv.max() < 1

    def test_instances_share_their_material(self, tmp_path: Path) -> None:
        mesh = textured_sphere(subdivisions=2)
        header, binary = split_glb(mesh.export(file_type="glb"))
        assert len(header["meshes"]) == 1
        mirrored = np.diag([-1.0, 1.0, 1.0, 1.0])  # a mirrored instance: its winding must be flipped back
        mirrored[3, :3] = [5, 0, 0]  # glTF matrices are column-major
        header["nodes"] = [{"mesh": 0}, {"mesh": 0, "matrix": mirrored.ravel().tolist()}]
        header["scenes"] = [{"nodes": [0, 1]}]
        loaded = load_model(write(tmp_path, "inst.glb", join_glb(header, binary)), "glb")
        assert len(loaded.mesh.faces) == 2 * len(mesh.faces) and loaded.notes == []
        assert loaded.base_color.size == (64, 64)
        assert loaded.mesh.volume == pytest.approx(2 * mesh.volume, rel=1e-6)  # outward normals on both

    def test_obj_uvs_without_its_material_library(self, tmp_path: Path) -> None:
        global _OPENED
        record_opens()
        mesh = trimesh.creation.icosphere(subdivisions=2)
        uv = (mesh.vertices[:, :2] + 1) / 2
        write(tmp_path, "local.mtl", "newmtl m\nmap_Kd local.png\n")
        noise(8).save(tmp_path / "local.png")
        for library in ("/etc/passwd", "local.mtl"):
            path = write(tmp_path, "m.obj", obj_text(mesh, uv=uv, head=f"mtllib {library}\nusemtl m"))
            _OPENED = []
            try:
                loaded = load_model(path, "obj")
            finally:
                opened, _OPENED = _OPENED, None
            assert opened == [str(path)], opened  # the OBJ itself and nothing else
            assert loaded.has_uv and loaded.base_color is None and loaded.notes == [OBJ_WITHOUT_MTL]
            assert len(loaded.mesh.faces) == len(mesh.faces)
            assert uv_coverage(loaded.mesh) > 0.5

    def test_obj_vertex_colours(self, tmp_path: Path) -> None:
        mesh = trimesh.creation.box()
        loaded = load_model(write(tmp_path, "c.obj", obj_text(mesh, colours=True)), "obj")
        assert loaded.mesh.visual.kind == "vertex" and not loaded.has_uv and loaded.notes == []
        colours = loaded.mesh.visual.vertex_colors
        assert {tuple(c) for c in colours[:, :3]} == {(255, 128, 64), (0, 128, 255)}
        # UVs and colours together: the colours ride along as a vertex attribute
        both = load_model(write(tmp_path, "b.obj", obj_text(mesh, uv=mesh.vertices[:, :2], colours=True)), "obj")
        assert both.has_uv and both.mesh.vertex_attributes["color"].shape == (len(both.mesh.vertices), 4)

    def test_stl_binary_and_ascii_are_welded(self, tmp_path: Path) -> None:
        mesh = trimesh.creation.icosphere(subdivisions=2)
        for name, content in (("b.stl", mesh.export(file_type="stl")), ("a.stl", mesh.export(file_type="stl_ascii"))):
            loaded = load_model(write(tmp_path, name, content), "stl")
            assert len(loaded.mesh.faces) == len(mesh.faces) and len(loaded.mesh.vertices) == len(mesh.vertices)
            assert loaded.mesh.is_watertight and loaded.mesh.visual.kind is None

    def test_binary_fbx_through_assimp_keeps_its_embedded_texture(self, tmp_path: Path, sphere_fbx: bytes) -> None:
        loaded = load_model(write(tmp_path, "m.fbx", sphere_fbx), "fbx")
        assert len(loaded.mesh.faces) == 1280 and loaded.has_uv and loaded.notes == []
        assert np.allclose(loaded.mesh.bounds, [[-1, -1, -1], [1, 1, 1]], atol=1e-6)  # assimp kept the units
        assert np.array_equal(np.asarray(loaded.base_color), np.asarray(noise(64, 0)))

    def test_fbx_naming_a_texture_file_is_read_without_it(self, tmp_path: Path) -> None:
        mesh = trimesh.creation.box()
        noise(8).save(tmp_path / "secret.png")
        write(tmp_path, "src.mtl", f"newmtl m\nKd 1 1 1\nmap_Kd {tmp_path / 'secret.png'}\n")
        write(tmp_path, "src.obj", obj_text(mesh, uv=mesh.vertices[:, :2], head="mtllib src.mtl\nusemtl m"))
        assert run_assimp("export", str(tmp_path / "src.obj"), str(tmp_path / "ext.fbx"), "-ffbx").returncode == 0
        assert b"secret.png" in (tmp_path / "ext.fbx").read_bytes()
        loaded = load_model(tmp_path / "ext.fbx", "fbx")
        assert loaded.base_color is None and len(loaded.mesh.faces) == 12
        assert any("separate files were not provided" in note for note in loaded.notes)

    def test_an_unreadable_texture_is_left_out_with_a_note(self, tmp_path: Path, sphere_glb: bytes) -> None:
        buffer = io.BytesIO()
        noise(64).save(buffer, "PNG")
        png = buffer.getvalue()
        damaged = load_model(write(tmp_path, "d.glb", with_image(sphere_glb, png[: len(png) // 2])), "glb")
        assert damaged.base_color is None and damaged.has_uv
        assert damaged.notes == ["1 embedded texture image(s) are damaged and were left out"]
        buffer = io.BytesIO()
        noise(16).save(buffer, "GIF")
        other = load_model(write(tmp_path, "g.glb", with_image(sphere_glb, buffer.getvalue())), "glb")
        assert other.base_color is None and "not PNG, JPEG or WebP" in other.notes[0]


# --- refusing bad files --------------------------------------------------------------------------------------------


class TestRefuse:
    def test_truncated_or_random(self, tmp_path: Path, sphere_glb: bytes) -> None:
        for cut in (10, 100, len(sphere_glb) // 2, len(sphere_glb) - 3):
            assert str(rejected(write(tmp_path, "t.glb", sphere_glb[:cut]), "glb")) == CORRUPT
        random = np.random.default_rng(2).integers(0, 256, 4000, dtype=np.uint8).tobytes()
        for fmt in ("glb", "gltf", "obj", "stl"):
            assert str(rejected(write(tmp_path, f"r.{fmt}", b"glTF" + random), fmt)) in (CORRUPT, NO_MESH), fmt
        deep = b'{"asset": {"version": "2.0"}, "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        assert str(rejected(write(tmp_path, "deep.gltf", deep), "gltf")) == CORRUPT
        assert str(rejected(write(tmp_path, "t.stl", binary_stl(np.zeros((10, 3, 3)))[:-7]), "stl")) == CORRUPT

    def test_external_references(self, tmp_path: Path, sphere_glb: bytes) -> None:
        header, binary = split_glb(sphere_glb)
        header["buffers"].append({"uri": "/etc/passwd", "byteLength": 10})
        assert str(rejected(write(tmp_path, "b.glb", join_glb(header, binary)), "glb")) == EXTERNAL_REFERENCE
        header, binary = split_glb(sphere_glb)
        header["images"][0] = {"uri": "../texture.png"}
        assert str(rejected(write(tmp_path, "i.glb", join_glb(header, binary)), "glb")) == EXTERNAL_REFERENCE
        gltf = json.loads(
            trimesh.Scene(trimesh.creation.box()).export(file_type="gltf", embed_buffers=True)["model.gltf"]
        )
        gltf["buffers"][0]["uri"] = "https://example.com/model.bin"
        assert str(rejected(write(tmp_path, "e.gltf", json.dumps(gltf)), "gltf")) == EXTERNAL_REFERENCE

    def test_compressed_geometry(self, tmp_path: Path, sphere_glb: bytes) -> None:
        for extension in ("KHR_draco_mesh_compression", "EXT_meshopt_compression"):
            header, binary = split_glb(sphere_glb)
            header["extensionsUsed"] = header["extensionsRequired"] = [extension]
            assert str(rejected(write(tmp_path, "c.glb", join_glb(header, binary)), "glb")) == COMPRESSED
        header, binary = split_glb(sphere_glb)  # Draco declared only as used, and no fallback data
        header["extensionsUsed"] = ["KHR_draco_mesh_compression"]
        primitive = header["meshes"][0]["primitives"][0]
        primitive["extensions"] = {"KHR_draco_mesh_compression": {"bufferView": 0, "attributes": {"POSITION": 0}}}
        del header["accessors"][primitive["attributes"]["POSITION"]]["bufferView"]
        assert str(rejected(write(tmp_path, "d.glb", join_glb(header, binary)), "glb")) == COMPRESSED

    def test_accessor_promising_more_than_its_buffer(self, tmp_path: Path, sphere_glb: bytes) -> None:
        header, binary = split_glb(sphere_glb)
        position = header["meshes"][0]["primitives"][0]["attributes"]["POSITION"]
        header["accessors"][position]["count"] = 10_000_000
        assert str(rejected(write(tmp_path, "a.glb", join_glb(header, binary)), "glb")) == CORRUPT
        header, binary = split_glb(sphere_glb)
        header["accessors"][position]["count"] = 200_000_000  # bufferless: trimesh would allocate zeros
        del header["accessors"][position]["bufferView"]
        assert str(rejected(write(tmp_path, "z.glb", join_glb(header, binary)), "glb")) == CORRUPT
        header, binary = split_glb(sphere_glb)
        header["bufferViews"][0]["byteLength"] = len(binary) * 2
        assert str(rejected(write(tmp_path, "v.glb", join_glb(header, binary)), "glb")) == CORRUPT

    def test_node_cycle_and_empty_scene(self, tmp_path: Path, sphere_glb: bytes) -> None:
        header, binary = split_glb(sphere_glb)
        header["nodes"].append({"children": [0]})
        header["nodes"][0]["children"] = [len(header["nodes"]) - 1]
        assert str(rejected(write(tmp_path, "cycle.glb", join_glb(header, binary)), "glb")) == CORRUPT
        empty = {"asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": []}]}
        assert str(rejected(write(tmp_path, "empty.gltf", json.dumps(empty)), "gltf")) == NO_MESH
        assert str(rejected(write(tmp_path, "empty.glb", join_glb(empty, b"")), "glb")) == NO_MESH
        old = {"asset": {"version": "1.0"}, "scenes": []}
        assert "glTF 2.0" in str(rejected(write(tmp_path, "old.gltf", json.dumps(old)), "gltf"))
        points = trimesh.Scene(trimesh.PointCloud(np.random.default_rng(0).random((50, 3)))).export(file_type="glb")
        assert str(rejected(write(tmp_path, "points.glb", points), "glb")) == NO_MESH
        assert str(rejected(write(tmp_path, "empty.stl", binary_stl(np.zeros((0, 3, 3)))), "stl")) == NO_MESH
        assert str(rejected(write(tmp_path, "empty.obj", "# nothing\nv 0 0 0\n"), "obj")) == NO_MESH

    def test_texture_bombs_are_refused_before_decoding(self, tmp_path: Path, sphere_glb: bytes) -> None:
        bomb = png_header(20_000, 20_000)
        assert len(bomb) < 200
        message = str(rejected(write(tmp_path, "bomb.glb", with_image(sphere_glb, bomb)), "glb"))
        assert message == "an embedded texture image is 20000x20000 pixels; at most 8192x8192 are accepted"
        wide = with_image(sphere_glb, png_header(8193, 16))
        assert "8193x16" in str(rejected(write(tmp_path, "wide.glb", wide), "glb"))
        header, binary = split_glb(sphere_glb)  # a bomb in a data: URI of a glTF
        header["images"][0] = {"uri": "data:image/png;base64," + base64.b64encode(bomb).decode()}
        assert "20000x20000" in str(rejected(write(tmp_path, "bomb2.glb", join_glb(header, binary)), "glb"))
        header, binary = split_glb(sphere_glb)  # five 8192x8192 images: each fine, too many together
        header["images"] = [{"uri": "data:image/png;base64," + base64.b64encode(png_header(8192, 8192)).decode()}] * 5
        assert "megapixels" in str(rejected(write(tmp_path, "many.glb", join_glb(header, binary)), "glb"))

    def test_ascii_and_damaged_fbx(self, tmp_path: Path, sphere_fbx: bytes) -> None:
        ascii_fbx = "; FBX 7.4.0 project file\nFBXHeaderExtension:  {\n\tFBXHeaderVersion: 1003\n}\n"
        assert str(rejected(write(tmp_path, "a.fbx", ascii_fbx), "fbx")) == ASCII_FBX
        damaged = rejected(write(tmp_path, "d.fbx", sphere_fbx[: len(sphere_fbx) // 3]), "fbx")
        assert str(damaged) == FBX_FAILED and damaged.code == "format_conversion_failed"
        assert str(rejected(write(tmp_path, "n.fbx", b"not an fbx at all"), "fbx")) == CORRUPT

    def test_fbx_conversion_limits(self, tmp_path: Path, sphere_fbx: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
        path = write(tmp_path, "m.fbx", sphere_fbx)
        monkeypatch.setattr(model_input, "FBX_TIMEOUT_S", 0.001)
        slow = rejected(path, "fbx")
        assert "took more than" in str(slow) and slow.code == "format_conversion_failed"

        def missing() -> None:
            raise AssimpNotFound("no assimp here")

        monkeypatch.setattr(model_input, "assimp_binary", missing)
        with pytest.raises(AssimpNotFound):  # the server's fault: not blamed on the caller's file
            load_model(path, "fbx")

    def test_non_finite_positions(self, tmp_path: Path) -> None:
        obj = "v 0 0 0\nv 1 0 0\nv nan 1 0\nf 1 2 3\n"
        assert str(rejected(write(tmp_path, "nan.obj", obj), "obj")) == NOT_FINITE
        triangles = np.zeros((4, 3, 3))
        triangles[2, 1, 0] = np.inf
        assert str(rejected(write(tmp_path, "inf.stl", binary_stl(triangles)), "stl")) == NOT_FINITE
        mesh = trimesh.creation.box()
        glb = mesh.export(file_type="glb")
        header, binary = split_glb(glb)
        header["nodes"][0]["matrix"] = [float("nan")] * 16
        assert str(rejected(write(tmp_path, "nan.glb", join_glb(header, binary)), "glb")) == NOT_FINITE

    def test_bad_face_indices(self, tmp_path: Path) -> None:
        assert str(rejected(write(tmp_path, "i.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 9\n"), "obj")) == CORRUPT
        header, binary = split_glb(trimesh.creation.box().export(file_type="glb"))
        indices = header["accessors"][header["meshes"][0]["primitives"][0]["indices"]]
        view = header["bufferViews"][indices["bufferView"]]
        array = bytearray(binary)
        struct.pack_into("<I", array, view.get("byteOffset", 0), 1_000_000)
        assert str(rejected(write(tmp_path, "i.glb", join_glb(header, bytes(array))), "glb")) == CORRUPT

    def test_too_many_faces(self, tmp_path: Path) -> None:
        triangles = np.zeros((300_001, 3, 3), dtype=np.float32)
        triangles[:, 1, 0] = 1
        triangles[:, 2, 1] = 1
        message = str(rejected(write(tmp_path, "big.stl", binary_stl(triangles)), "stl"))
        assert message == "the model has 300001 faces; at most 300000 are accepted"
        # a GLB that instances one mesh many times is counted (and refused) before anything is built
        header, binary = split_glb(trimesh.creation.icosphere(subdivisions=4).export(file_type="glb"))  # 5120 faces
        header["nodes"] = [{"mesh": 0, "translation": [i, 0, 0]} for i in range(60)]
        header["scenes"] = [{"nodes": list(range(60))}]
        message = str(rejected(write(tmp_path, "inst.glb", join_glb(header, binary)), "glb"))
        assert message == "the model has 307200 faces; at most 300000 are accepted"
        many_vertices = "\n".join(f"v {i} 0 0" for i in range(40)) + "\nf 1 2 3\n"
        message = str(rejected(write(tmp_path, "v.obj", many_vertices), "obj", max_faces=10))
        assert message == "the model has 40 vertices; at most 30 are accepted"
        obj = obj_text(trimesh.creation.icosphere(subdivisions=2))
        assert "at most 100 are accepted" in str(rejected(write(tmp_path, "m.obj", obj), "obj", max_faces=100))
        assert load_model(write(tmp_path, "ok.obj", obj), "obj", max_faces=320).mesh.faces.shape == (320, 3)

    def test_unknown_format(self, tmp_path: Path) -> None:
        assert str(rejected(write(tmp_path, "m.3dm", b"whatever"), "3dm")) == NOT_A_MODEL
        with pytest.raises(InputRejected, match="no longer available"):
            load_model(tmp_path / "missing.glb", "glb")


def test_damaged_files_are_refused_or_read_never_a_crash(tmp_path: Path) -> None:
    """Random edits of valid files (JSON values of a GLB, bytes of a GLB, text of an OBJ and an ASCII STL): each one
    is read or refused with InputRejected, nothing else."""
    rng = random.Random(7)
    scene = trimesh.Scene()
    scene.add_geometry(textured_sphere(subdivisions=1, seed=0))
    scene.add_geometry(textured_sphere(subdivisions=1, seed=5), transform=np.diag([2.0, 2.0, 2.0, 1.0]))
    glb = scene.export(file_type="glb")
    obj = obj_text(trimesh.creation.box(), uv=np.zeros((8, 2)), colours=True).encode()
    stl = trimesh.creation.box().export(file_type="stl_ascii").encode()
    odd = [None, -1, 0, 1, 3, 2**31, 2**40, 1.5, "x", [], {}, [0], True, float("nan")]

    def edit_json(header: dict) -> None:
        node: object = header
        for _ in range(6):
            keys = list(node) if isinstance(node, dict) else list(range(len(node))) if isinstance(node, list) else []
            if not keys:
                return
            key = rng.choice(keys)
            child = node[key]  # type: ignore[index]
            if rng.random() < 0.3 or not isinstance(child, (dict, list)) or not child:
                node[key] = rng.choice(odd)  # type: ignore[index]
                return
            node = child

    def edit_bytes(data: bytes, count: int, alphabet: bytes | None = None) -> bytes:
        edited = bytearray(data)
        for _ in range(count):
            edited[rng.randrange(len(edited))] = rng.choice(alphabet) if alphabet else rng.randrange(256)
        return bytes(edited)

    path = tmp_path / "fuzz"
    read = 0
    for attempt in range(400):
        kind = attempt % 4
        if kind == 0:
            header, binary = split_glb(glb)
            for _ in range(rng.randint(1, 3)):
                edit_json(header)
            content, fmt = join_glb(header, binary), "glb"
        elif kind == 1:
            content, fmt = edit_bytes(glb, rng.randint(1, 20))[: rng.randint(20, len(glb))], "glb"
        elif kind == 2:
            content, fmt = edit_bytes(obj, rng.randint(1, 10), b"0123456789 /\n-.fvtnae"), "obj"
        else:
            content, fmt = edit_bytes(stl, rng.randint(1, 10), b"0123456789 \n-.efacetvrxnoml"), "stl"
        path.write_bytes(content)
        try:
            load_model(path, fmt)
            read += 1
        except InputRejected:
            pass
    assert 0 < read < 400


def test_limits_are_the_documented_ones() -> None:
    assert model_input.MAX_FACES == 300_000 and model_input.MODEL_FORMATS == ("glb", "gltf", "obj", "fbx", "stl")


# --- found by review: small files that would cost a worker gigabytes or hang a library --------------------------


def _bomb_glb(kind: str, copies: int) -> bytes:
    from inference.pipeline.model_input import _join_glb

    count = 30_000
    pos = np.random.default_rng(0).random((count, 3), dtype=np.float32).tobytes()
    view = {"buffer": 0, "byteOffset": 0, "byteLength": len(pos)}
    header: dict = {"asset": {"version": "2.0"}, "buffers": [{"byteLength": len(pos)}], "bufferViews": [view],
                    "accessors": [{"bufferView": 0, "componentType": 5126, "count": count, "type": "VEC3"}],
                    "nodes": [{"mesh": 0}], "scenes": [{"nodes": [0]}], "scene": 0}  # fmt: skip
    if kind == "unused-meshes":  # many meshes on one accessor; the scene uses one, trimesh builds them all
        header["meshes"] = [{"primitives": [{"attributes": {"POSITION": 0}}]} for _ in range(copies)]
    else:  # MAT4 accessors strided 4 bytes apart over one view: each a 16x copy when converted
        header["bufferViews"].append({**view, "byteStride": 4})
        header["accessors"] += [{"bufferView": 1, "componentType": 5126, "count": (len(pos) - 64) // 4 + 1,
                                 "type": "MAT4"} for _ in range(copies)]  # fmt: skip
        header["meshes"] = [{"primitives": [{"attributes": {"POSITION": 0}}]}]
    return bytes(_join_glb(header, bytearray(pos)))


@pytest.mark.parametrize("kind", ["unused-meshes", "overlapping-strides"])
def test_small_files_that_expand_are_refused_before_reading(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "bomb.glb"
    path.write_bytes(_bomb_glb(kind, 40))
    assert path.stat().st_size < 1_000_000
    with pytest.raises(InputRejected):
        load_model(path, "glb")


def test_out_of_range_and_sizeless_models_are_refused(tmp_path: Path) -> None:
    faces = [[0, 1, 2], [0, 2, 3], [0, 3, 1], [1, 3, 2]]
    for scale, message in ((3e38, "out of range"), (1e-9, "no size")):
        vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float64) * scale
        path = tmp_path / "tetra.glb"
        path.write_bytes(trimesh.Trimesh(vertices, faces, process=False).export(file_type="glb"))
        with pytest.raises(InputRejected, match=message):
            load_model(path, "glb")


def test_obj_polygons_count_as_their_triangles(tmp_path: Path) -> None:
    corners = 2000  # one face line of 2000 corners is 1998 triangles
    lines = [f"v {np.cos(a)} {np.sin(a)} 0" for a in np.linspace(0, 2 * np.pi, corners, endpoint=False)]
    lines.append("f " + " ".join(str(i + 1) for i in range(corners)))
    path = tmp_path / "fan.obj"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputRejected, match="1998 faces"):
        load_model(path, "obj", max_faces=1000)


def test_glb_face_count_reads_the_json_chunk_only(tmp_path: Path) -> None:
    from inference.pipeline.model_input import glb_face_count

    scene = trimesh.Scene([trimesh.creation.box(), trimesh.creation.icosphere(subdivisions=2)])
    path = tmp_path / "two.glb"
    scene.export(path)
    assert glb_face_count(path) == 12 + 320
