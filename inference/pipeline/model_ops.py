"""Meshy's remesh, convert and resize on a model the caller already has (`LoadedModel`), its look preserved.

All three reuse the deliverables pipeline (`inference.pipeline.deliverables`) and its writers, so the files are
named and built exactly as a generation task's (model.glb, model.obj + model.mtl, texture_0.png, preview.png...):

- `remesh` hands the (optionally resized) surface to `build_deliverables` to remesh (triangles or quads), unwrap
  and bake. A textured input becomes a `texture.TexturedSource`: each texel of the new surface samples the
  input's own maps (base colour, and metallic/roughness/normal when it has them) at the closest input-surface
  point, so the textures survive at texel resolution rather than as vertex colours. Vertex-coloured inputs bake
  from their colours; untextured ones come out clay.
- `convert` and `resize` keep the surface as it is (vertices, triangles, UVs and texture images untouched, apart
  from resize's uniform scale and offset) and write it through `deliverables.write_surface`.

Mappings chosen where Meshy leaves them open:

- `decimation_mode` (1 ultra, 2 high, 3 medium, 4 low "adaptive polycount", overriding `target_polycount`): a
  share of the input's triangles, `DECIMATION_SHARE` = 50 %, 25 %, 10 %, 3 %, clamped to 100..300,000 (for quad
  topology the quad count is half that, a quad being two triangles).
- `auto_size` (Meshy estimates the real-world size with a model; there is no such model here): the longest side
  becomes `AUTO_SIZE_M` = 1 m.
- `origin_at` (`bottom`, the default, or `center`) applies whenever the model is resized: bottom puts the bounding
  box's lowest point at y = 0 and centres it in x and z; center puts the box's centre at the origin. Without a
  resize option the position is left alone (the older remesh docs: `origin_at` alone has no effect).

Sizes are metres, as glTF's units are; +Y is up (`LoadedModel` is +Y up).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import trimesh
from PIL import Image

from inference.pipeline import texture
from inference.pipeline.clean import MERGE_TOLERANCE, NoSurface, safe_vertex_normals, unique_rows
from inference.pipeline.deliverables import Deliverables, ExportFailed, build_deliverables, write_surface
from inference.pipeline.export_glb import gltf_from_glb
from inference.pipeline.model_input import LoadedModel, OpResult
from inference.pipeline.remesh import MAX_POLYCOUNT, MIN_POLYCOUNT
from inference.pipeline.surface import Surface
from inference.runners.base import InputRejected

Progress = Callable[[float], None]

# What remesh and convert can write (Meshy's list less `blend`, which the API refuses), in canonical order.
OUTPUT_FORMATS = ("glb", "obj", "fbx", "stl", "usdz", "3mf")
# Resize writes one format: GLB for an input task, else the caller's own (which may be an embedded .gltf).
RESIZE_FORMATS = ("glb", "gltf", "obj", "fbx", "stl", "usdz", "3mf")
DEFAULT_POLYCOUNT = 30_000
DECIMATION_SHARE = {1: 0.50, 2: 0.25, 3: 0.10, 4: 0.03}
AUTO_SIZE_M = 1.0
ORIGINS = ("bottom", "center")
# Where a file split a vertex only for its UVs the two normals agree, and are averaged; a larger angle between a
# split vertex's normal and the welded one is a hard edge, and kept.
HARD_EDGE_COS = float(np.cos(np.radians(45.0)))


def remesh(model: LoadedModel, params: Mapping[str, Any], out_dir: Path, progress: Progress) -> OpResult:
    """Meshy `/remesh`. params: target_formats (default ["glb"]), topology (triangle | quad), target_polycount
    (100..300,000, default 30,000), decimation_mode (1..4, overrides the polycount), resize_height /
    resize_longest_side (metres) / auto_size (at most one) with origin_at (bottom | center), convert_format_only
    (only convert: no remesh), alpha_thumbnail."""
    formats = _formats(params.get("target_formats"), OUTPUT_FORMATS, default=("glb",))
    topology = _choice(params, "topology", ("triangle", "quad"), "triangle")
    resize = _resize_option(params, required=False)
    target = _target(params, len(model.mesh.faces), quads=topology == "quad")
    if params.get("convert_format_only"):
        return _keep_surface(_Input.of(model, resize), formats, params, out_dir, progress)
    # Remeshed in the input's units and resized afterwards, so the result's own bounds get the asked size.
    surface = _Input.of(model, None)
    place = None if resize is None else functools.partial(_resized, option=resize)
    progress(0.0)
    source = None
    if surface.maps is not None:
        normals = surface.normals if surface.maps.normal is not None else None
        source = texture.TexturedSource(surface.vertices, surface.faces, surface.uv, surface.maps, normals)
        geometry = trimesh.Trimesh(surface.vertices, surface.faces, process=False)
    else:
        # Vertex colours (uniform ones too: mode "refine" bakes them) or nothing, which gives the clay look.
        geometry = trimesh.Trimesh(surface.vertices, surface.faces, vertex_colors=surface.colours, process=False)
    progress(0.1)
    pipeline = {
        "mode": "refine",
        "should_remesh": True,
        "target_polycount": target,
        "topology": topology,
        "target_formats": formats,
        "alpha_thumbnail": bool(params.get("alpha_thumbnail")),
    }
    try:
        with _conversion_errors():
            built = build_deliverables(
                geometry, pipeline, out_dir, _span(progress, 0.1, 1.0), source=source, place=place
            )
    except NoSurface as exc:
        raise InputRejected("the model has no surface to remesh (every face is degenerate)") from exc
    return _result(built)


def convert(model: LoadedModel, params: Mapping[str, Any], out_dir: Path, progress: Progress) -> OpResult:
    """Meshy `/convert`: `target_formats` (required; glb, fbx, obj, usdz, stl, 3mf). The surface, its UVs and its
    texture images are kept as they are; `model_files` lists only the files written."""
    if not params.get("target_formats"):
        raise InputRejected("target_formats is required: list the formats to convert the model to")
    formats = _formats(params["target_formats"], OUTPUT_FORMATS, default=())
    return _keep_surface(_Input.of(model, None), formats, params, out_dir, progress)


def resize(model: LoadedModel, params: Mapping[str, Any], out_dir: Path, progress: Progress) -> OpResult:
    """Meshy `/resize`: exactly one of resize_height (m), resize_longest_side (m), auto_size; origin_at bottom
    (default) | center. Writes one format, `params["output_format"]` (default: the input's own), textures kept."""
    option = _resize_option(params, required=True)
    fmt = str(params.get("output_format") or model.source_format).lower().lstrip(".")
    if fmt not in RESIZE_FORMATS:
        raise InputRejected(f"a resized model cannot be written as {fmt!r}; use one of {', '.join(RESIZE_FORMATS)}")
    return _keep_surface(_Input.of(model, option), [fmt], params, out_dir, progress)


# --- the input's surface and look ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Resize:
    kind: str  # "height" | "longest_side" | "auto"
    metres: float
    origin: str


@dataclass(frozen=True)
class _Input:
    """The caller's surface as arrays (after any resize), its per-vertex `uv` when it has UVs, and its look: `maps`
    for a textured (or flat-coloured material) model, which then always has `uv` (all zeros for a flat colour);
    `colours` (V, 3) uint8 for a vertex-coloured one."""

    vertices: np.ndarray
    faces: np.ndarray
    uv: np.ndarray | None
    maps: texture.SourceMaps | None
    colours: np.ndarray | None
    mesh: trimesh.Trimesh

    @functools.cached_property
    def normals(self) -> np.ndarray:
        """Vertex normals (unchanged by resizing, which scales uniformly), computed when first needed."""
        return _normals(self.mesh, np.asarray(self.mesh.vertices, dtype=np.float64), self.faces)

    @classmethod
    def of(cls, model: LoadedModel, resize: _Resize | None) -> _Input:
        mesh = model.mesh
        vertices = np.asarray(mesh.vertices, dtype=np.float64)
        faces = np.asarray(mesh.faces, dtype=np.int64)
        if not np.isfinite(vertices).all():
            raise InputRejected("the model has vertices with invalid (infinite or NaN) coordinates")
        if resize is not None:
            used = np.unique(faces)
            vertices = _resized(vertices, resize, used if len(used) < len(vertices) else None)
        visual = mesh.visual
        uv = np.nan_to_num(np.asarray(visual.uv, dtype=np.float64)[:, :2]) if model.has_uv else None
        maps, colours = None, None
        material = getattr(visual, "material", None)
        if material is not None:
            maps = _maps(material)
            if maps is not None and uv is None:
                # A texture without UVs cannot be placed: keep its average colour on every vertex.
                mean = maps.base_color.reshape(-1, 3).mean(axis=0)
                maps = _flat(np.rint(mean).astype(np.uint8), maps)
                uv = np.zeros((len(vertices), 2))
        elif getattr(visual, "kind", None) in ("vertex", "face"):
            colours = np.asarray(visual.vertex_colors)[:, :3].astype(np.uint8)
        kept = mesh.vertex_attributes.get("color")  # vertex colours beside UVs (the loader keeps them there)
        if maps is None and colours is None and kept is not None and len(kept) == len(vertices):
            colours = _rgb8(np.asarray(kept))
        return cls(vertices, faces, uv, maps, colours, mesh)


def _rgb8(colours: np.ndarray) -> np.ndarray:
    """(V, 3) uint8 from uint8 or 0..1 float RGB(A) colours."""
    if not np.issubdtype(colours.dtype, np.integer):
        colours = np.rint(np.clip(colours, 0.0, 1.0) * 255.0)
    return np.asarray(colours)[:, :3].astype(np.uint8)


def _maps(material: Any) -> texture.SourceMaps | None:
    """The maps of a trimesh `PBRMaterial` or `SimpleMaterial` (OBJ), or None when it sets no colour at all.

    A material without a base colour texture but with a colour (factor, or an OBJ's Kd) becomes 1x1 maps, read
    through all-zero UVs. glTF's rules apply: the base colour factor multiplies the texture, and an absent
    metallic or roughness factor means 1 when the material has a metallicRoughness texture or the other factor.
    A material with neither gets no metallic/roughness maps (the pipeline's matte default). An OBJ's Kd is
    ignored when it has a map_Kd (trimesh's OBJ writer sets Kd 0.4, which most viewers do not multiply).
    """
    if hasattr(material, "baseColorTexture"):  # PBRMaterial
        image = material.baseColorTexture
        factor = None if material.baseColorFactor is None else np.asarray(material.baseColorFactor)[:3]
    else:  # SimpleMaterial
        image = getattr(material, "image", None)
        diffuse = getattr(material, "diffuse", None)
        factor = None if image is not None or diffuse is None else np.asarray(diffuse)[:3]
    mr_image = getattr(material, "metallicRoughnessTexture", None)
    metallic_factor = getattr(material, "metallicFactor", None)
    roughness_factor = getattr(material, "roughnessFactor", None)
    normal_image = getattr(material, "normalTexture", None)
    if image is None and factor is None:
        return None
    if image is not None:
        base = np.asarray(image.convert("RGB"), dtype=np.uint8)
    else:
        base = np.full((1, 1, 3), 255, dtype=np.uint8)
    if factor is not None:
        # trimesh stores colours as uint8; a float factor is glTF's 0..1.
        factor = factor / 255.0 if np.issubdtype(factor.dtype, np.integer) else factor.astype(np.float64)
        if not np.allclose(factor, 1.0, atol=1 / 255):
            base = np.clip(np.rint(base * factor), 0, 255).astype(np.uint8)
    metallic = roughness = None
    if mr_image is not None or metallic_factor is not None or roughness_factor is not None:
        packed = (
            np.asarray(mr_image.convert("RGB"), dtype=np.float64) if mr_image is not None else np.full((1, 1, 3), 255.0)
        )
        mf = 1.0 if metallic_factor is None else float(metallic_factor)
        rf = 1.0 if roughness_factor is None else float(roughness_factor)
        metallic = np.clip(np.rint(packed[..., 2] * mf), 0, 255).astype(np.uint8)
        roughness = np.clip(np.rint(packed[..., 1] * rf), 0, 255).astype(np.uint8)
    normal = None if normal_image is None else np.asarray(normal_image.convert("RGB"), dtype=np.uint8)
    return texture.SourceMaps(base, metallic, roughness, normal)


def _flat(colour: np.ndarray, maps: texture.SourceMaps) -> texture.SourceMaps:
    """`maps` reduced to one texel each (for zero UVs): `colour`, and the metallic/roughness averages."""

    def one(image: np.ndarray | None) -> np.ndarray | None:
        return None if image is None else np.full((1, 1), round(float(image.mean())), dtype=np.uint8)

    return texture.SourceMaps(colour.reshape(1, 1, 3), one(maps.metallic), one(maps.roughness), None)


def _normals(mesh: trimesh.Trimesh, vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """The file's vertex normals when the loader kept them, else smooth normals that stay smooth across UV seams
    (vertices split only for their UVs) and hard where the file split vertices for a crease."""
    cache = getattr(mesh, "_cache", None)  # trimesh keeps normals read from the file there, computed ones too
    try:
        kept = np.asarray(cache["vertex_normals"], dtype=np.float64) if "vertex_normals" in cache else None
    except Exception:  # noqa: BLE001 (a cache that cannot answer just means no file normals)
        kept = None
    if kept is not None and kept.shape == vertices.shape and np.isfinite(kept).all():
        length = np.linalg.norm(kept, axis=1)
        if np.all(length > 1e-6):
            return kept / length[:, None]
    split = safe_vertex_normals(vertices, faces)
    first, inverse = unique_rows(np.round(vertices / MERGE_TOLERANCE).astype(np.int64))
    welded = safe_vertex_normals(vertices[first], inverse[faces])[inverse]
    smooth = np.einsum("ij,ij->i", welded, split) > HARD_EDGE_COS
    return np.where(smooth[:, None], welded, split)


# --- writing ------------------------------------------------------------------------------------------------------


def _keep_surface(
    surface: _Input, formats: list[str], params: Mapping[str, Any], out_dir: Path, progress: Progress
) -> OpResult:
    """Write the input surface unchanged in `formats`: with its own UVs and maps when textured, baked from its
    vertex colours when vertex-coloured (the pipeline without remeshing: welded, unwrapped, baked exactly)."""
    alpha = bool(params.get("alpha_thumbnail"))
    if surface.colours is not None:
        gltf = "gltf" in formats
        pipeline = {
            "mode": "refine",
            "should_remesh": False,
            "target_formats": ["glb" if f == "gltf" else f for f in formats],
            "alpha_thumbnail": alpha,
        }
        mesh = trimesh.Trimesh(surface.vertices, surface.faces, vertex_colors=surface.colours, process=False)
        with _conversion_errors():
            built = build_deliverables(mesh, pipeline, out_dir, progress)
        result = _result(built)
        if gltf:
            glb = Path(out_dir) / result.model_files.pop("glb")
            (Path(out_dir) / "model.gltf").write_text(gltf_from_glb(glb.read_bytes()))
            glb.unlink()
            result.model_files["gltf"] = "model.gltf"
        return result
    images: dict[str, Image.Image] = {}
    tangents = None
    if surface.maps is not None:
        images = _images(surface.maps)
        if surface.maps.normal is not None:
            uvm = texture.UVMesh(surface.vertices, surface.faces, surface.uv, surface.normals, surface.faces[:0, 0])
            tangents = texture.vertex_tangents(uvm)
    # UVs stay even without a texture: the caller may have the maps elsewhere (an OBJ whose MTL did not come along).
    shape = Surface.from_triangles(surface.vertices, surface.normals, surface.faces, uv=surface.uv, tangents=tangents)
    with _conversion_errors():
        written = write_surface(shape, images, {"alpha_thumbnail": alpha}, out_dir, formats, progress)
    return _result(written)


def _images(maps: texture.SourceMaps) -> dict[str, Image.Image]:
    """The maps as the writers take them: base_color, metallic, roughness, glTF's packed metallic_roughness
    (G roughness, B metallic), normal."""
    images = {"base_color": Image.fromarray(maps.base_color, "RGB")}
    if maps.pbr:
        metallic, roughness = maps.metallic, maps.roughness
        images["metallic"] = Image.fromarray(metallic, "L")
        images["roughness"] = Image.fromarray(roughness, "L")
        if metallic.shape != roughness.shape:
            metallic = np.asarray(Image.fromarray(metallic, "L").resize(roughness.shape[::-1]))
        packed = np.stack([np.zeros_like(roughness), roughness, metallic], axis=-1)
        images["metallic_roughness"] = Image.fromarray(packed, "RGB")
    if maps.normal is not None:
        images["normal"] = Image.fromarray(maps.normal, "RGB")
    return images


def _result(built: Deliverables) -> OpResult:
    return OpResult(
        model_files=dict(built.model_files),
        texture_files=[dict(group) for group in built.texture_files],
        thumbnail=built.thumbnail,
        alpha_thumbnail=built.alpha_thumbnail,
        extra={"faces": built.faces},
    )


@contextmanager
def _conversion_errors() -> Iterator[None]:
    """A writer failing becomes Meshy's `format_conversion_failed`."""
    try:
        yield
    except ExportFailed as exc:
        raise InputRejected(
            f"the model could not be converted to {exc.fmt.upper()}", code="format_conversion_failed"
        ) from exc


def _span(progress: Progress, start: float, end: float) -> Progress:
    return lambda fraction: progress(start + (end - start) * max(0.0, min(1.0, fraction)))


# --- parameters ---------------------------------------------------------------------------------------------------


def _formats(value: Any, allowed: tuple[str, ...], default: Iterable[str]) -> list[str]:
    """The formats asked for, in canonical order; an unknown or unsupported one is refused."""
    if value is None:
        value = list(default)
    if isinstance(value, str):
        value = [value]
    names = {str(v).lower().lstrip(".") for v in value}
    unknown = sorted(names - set(allowed))
    if unknown:
        raise InputRejected(f"target_formats: {unknown[0]!r} is not available here; use {', '.join(allowed)}")
    chosen = [fmt for fmt in allowed if fmt in names] or list(default)
    if not chosen:
        raise InputRejected("target_formats is empty: list at least one format")
    return chosen


def _choice(params: Mapping[str, Any], key: str, allowed: tuple[str, ...], default: str) -> str:
    value = params.get(key)
    if value in (None, ""):
        return default
    if str(value).lower() not in allowed:
        raise InputRejected(f"{key} must be one of {', '.join(allowed)}, not {value!r}")
    return str(value).lower()


def _integer(params: Mapping[str, Any], key: str) -> int | None:
    value = params.get(key)
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if isinstance(value, bool) or not np.isfinite(number) or number != int(number):
        raise InputRejected(f"{key} must be a whole number, not {value!r}")
    return int(number)


def _target(params: Mapping[str, Any], input_faces: int, quads: bool) -> int:
    """The polygon count to remesh to: decimation_mode's share of the input triangles (halved for quads, each
    being two triangles) when given, else target_polycount."""
    mode = _integer(params, "decimation_mode")
    if mode is not None:
        if mode not in DECIMATION_SHARE:
            raise InputRejected(f"decimation_mode must be 1, 2, 3 or 4, not {mode}")
        target = input_faces * DECIMATION_SHARE[mode] / (2 if quads else 1)
        return int(np.clip(round(target), MIN_POLYCOUNT, MAX_POLYCOUNT))
    count = _integer(params, "target_polycount")
    if count is None:
        return DEFAULT_POLYCOUNT
    if not MIN_POLYCOUNT <= count <= MAX_POLYCOUNT:
        raise InputRejected(f"target_polycount must be between {MIN_POLYCOUNT} and {MAX_POLYCOUNT}, not {count}")
    return count


def _length(params: Mapping[str, Any], key: str) -> float:
    """A size in metres; 0 or absent means not asked for."""
    value = params.get(key)
    if value in (None, "", False):
        return 0.0
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if isinstance(value, bool) or not np.isfinite(number) or number < 0:
        raise InputRejected(f"{key} must be a positive number of metres, not {value!r}")
    return number


def _resize_option(params: Mapping[str, Any], *, required: bool) -> _Resize | None:
    """The one resize option given (resize_height, resize_longest_side or auto_size), or None."""
    height, longest = _length(params, "resize_height"), _length(params, "resize_longest_side")
    auto = params.get("auto_size")
    if auto not in (None, True, False):
        raise InputRejected(f"auto_size must be true or false, not {auto!r}")
    given = [
        option
        for option, on in (
            (_Resize("height", height, ""), height > 0),
            (_Resize("longest_side", longest, ""), longest > 0),
            (_Resize("auto", AUTO_SIZE_M, ""), bool(auto)),
        )
        if on
    ]
    if len(given) > 1:
        raise InputRejected("resize_height, resize_longest_side and auto_size are mutually exclusive: give only one")
    if not given:
        if required:
            raise InputRejected("give one of resize_height, resize_longest_side or auto_size")
        return None
    origin = _choice(params, "origin_at", ORIGINS, "bottom")
    return _Resize(given[0].kind, given[0].metres, origin)


def _resized(vertices: np.ndarray, option: _Resize, used: np.ndarray | None = None) -> np.ndarray:
    """Scale uniformly to the asked size and place the origin, judged on the bounds of the `used` vertices (all
    by default)."""
    bounded = vertices if used is None else vertices[used]
    lo, hi = bounded.min(axis=0), bounded.max(axis=0)
    extent = hi - lo
    current = float(extent[1]) if option.kind == "height" else float(extent.max())
    if current <= 0:
        what = "no height" if option.kind == "height" else "no extent"
        raise InputRejected(f"the model has {what}, so it cannot be resized")
    scale = option.metres / current
    anchor = (lo + hi) / 2
    if option.origin == "bottom":
        anchor[1] = lo[1]
    return (vertices - anchor) * scale
