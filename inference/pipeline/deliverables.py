"""Raw runner mesh -> Meshy's deliverables: model files, textures and thumbnails in one output folder.

`build_deliverables` is a pure function of its inputs (no DB, settings or network): load, clean, remesh to
`target_polycount` (triangles or quads, optionally mirror-symmetric), UV-unwrap once and bake when the mesh
carries varying vertex colours, then write every requested format from that one result. The writers and
the thumbnail run in a small thread pool: PNG encoding, numpy, USD and the assimp subprocess release the
GIL, so on 2 cores they overlap. The worker uploads whatever the returned `Deliverables` names.

The model operations reuse it: remesh passes the caller's mesh itself and, for a textured model, a
`texture.TexturedSource` to re-bake the maps from (instead of vertex colours); convert and resize, which keep
the surface as it is, hand an export-ready `Surface` and its maps to `write_surface`.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import trimesh
from PIL import Image

from inference.pipeline import export, export_fbx, export_glb, export_usdz, surfacing, texture, thumbnail, turntable
from inference.pipeline.clean import clean_mesh, has_colour_variation, load_mesh, safe_vertex_normals, vertex_colours
from inference.pipeline.geometry import build_shape
from inference.pipeline.remesh import clamp_polycount
from inference.pipeline.surface import Material, Surface
from inference.pipeline.symmetry import mirror, positive_half
from inference.runners.base import ProgressCallback

# Formats Meshy can ask for, in canonical order; all are produced. 3MF only when asked for explicitly.
KNOWN_FORMATS = ("glb", "obj", "fbx", "stl", "usdz", "3mf")
SUPPORTED_FORMATS = KNOWN_FORMATS
DEFAULT_FORMATS = ("glb", "obj", "fbx", "stl", "usdz")
EXPORT_THREADS = 3
# multi_view_thumbnails: 512x512 views around the model, named as Meshy names them.
VIEWS = {"front": 0.0, "right": 90.0, "back": 180.0, "left": 270.0}
VIEW_ELEVATION_DEG = 10.0
# Textured thumbnails read the base colour reduced to at most this many pixels a side (plenty at 512x512).
THUMBNAIL_TEXTURE = 1024
# `_turntable`: the turning preview video (`video_url`), see `turntable.py`.
TURNTABLE_VIDEO = "preview.mp4"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Deliverables:
    """File names (relative to the output folder) of everything `build_deliverables` wrote.

    `model_files` maps a format key ("glb", "obj", "mtl", "fbx", "stl", "usdz", "3mf") to a file name, and
    lists exactly the files written. `texture_files` holds one dict per material, e.g. {"base_color":
    "texture_0.png", "metallic": ..., "roughness": ..., "normal": ...}, and is empty for untextured (preview)
    results. `faces` counts polygons: triangles, or for quad topology quads plus the few triangles left.
    `timings` maps stage names to seconds (exports run in parallel, so their sum exceeds "exports").
    """

    model_files: dict[str, str]
    texture_files: list[dict[str, str]]
    thumbnail: str
    alpha_thumbnail: str | None
    faces: int
    timings: dict[str, float] = field(default_factory=dict)
    thumbnails: dict[str, str] = field(default_factory=dict)  # multi_view_thumbnails: front/right/back/left
    video: str | None = None  # `_turntable`: preview.mp4, when it was asked for and could be written


class ExportFailed(RuntimeError):
    """A model writer failed; `fmt` names the format (the model operations report `format_conversion_failed`)."""

    def __init__(self, fmt: str, cause: BaseException) -> None:
        super().__init__(f"writing {fmt} failed: {cause}")
        self.fmt = fmt


def requested_formats(value: Iterable[str] | None) -> list[str]:
    """The supported formats asked for, in canonical order.

    None means Meshy's default set (glb, obj, fbx, stl, usdz). Unknown names are skipped silently. If
    nothing known remains, GLB is produced anyway: the viewer needs one.
    """
    wanted = DEFAULT_FORMATS if value is None else {str(v).lower().lstrip(".") for v in value}
    chosen = [fmt for fmt in SUPPORTED_FORMATS if fmt in wanted]
    return chosen or ["glb"]


class _Clock:
    """Stage timings; thread-safe enough for the pool (each task writes its own key)."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[stage] = round(self.timings.get(stage, 0.0) + time.perf_counter() - start, 4)


def build_deliverables(
    raw_mesh: Path | trimesh.Trimesh,
    params: Mapping[str, Any],
    out_dir: Path,
    progress: ProgressCallback | None = None,
    *,
    source: texture.TexturedSource | None = None,
    place: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Deliverables:
    """Turn `raw_mesh` (a file, or a mesh already loaded: its vertex colours count, other visuals do not) into
    deliverables in `out_dir`.

    params: mode ("preview" | "refine"), should_remesh (default True), target_polycount (100..300000,
    default 30000; for topology "quad" it counts quads), topology ("triangle" | "quad": quad-dominant
    OBJ/FBX/USDZ, triangulated GLB/STL/3MF; only with should_remesh), symmetry_mode ("on" mirrors the +x
    half across x = 0; "auto"/"off" leave the shape as is), target_formats (see `requested_formats`),
    alpha_thumbnail (also write `preview_alpha.png`), enable_pbr (also write metallic, roughness and a
    normal map baked from the raw mesh), _turntable (also write `preview.mp4`, a turntable video coloured like the
    thumbnail; the worker sets it from its settings for the generation tasks). A mesh whose vertex colours vary (or
    any coloured mesh in refine mode) is textured: unwrapped, baked into `texture_0.png` and exported with a PBR
    material; otherwise the model gets a plain clay material. `source`, if given, is the textured surface `raw_mesh`
    came from: the result is then always textured, its maps (base colour, and metallic/roughness/normal when the
    source has them; `enable_pbr` is ignored) re-baked from the source's textures at the closest source point, and
    the thumbnail shows the baked texture. `place`, if given, maps the final surface's positions to where they are
    written (a uniform scale and offset, which leave normals and tangents as they are: the model operations' resize
    options, applied to the remeshed surface so its bounds come out exact); maps bake before it. `progress`, if
    given, receives fractions from 0 to 1.
    """
    report = progress or (lambda _fraction: None)
    clock = _Clock()
    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report(0.0)

    with clock("load"):
        mesh = raw_mesh if isinstance(raw_mesh, trimesh.Trimesh) else load_mesh(Path(raw_mesh))
    with clock("clean"):
        mesh = clean_mesh(mesh)
    colours = vertex_colours(mesh)
    textured = colours is not None and (has_colour_variation(mesh) or params.get("mode") == "refine")
    pbr = textured and bool(params.get("enable_pbr"))
    ref_v, ref_f = np.asarray(mesh.vertices), np.asarray(mesh.faces)
    if source is not None:
        # Cleaning may have turned an inside-out closed mesh outward; the source must agree on which side is out.
        source = source.oriented_like(ref_v, ref_f)
        textured, pbr = True, False

    symmetric = params.get("symmetry_mode") == "on"

    @functools.cache
    def reference() -> tuple[np.ndarray, np.ndarray]:
        """The surface to snap subdivided quads onto and to bake normals from, with its normals; computed
        only when needed. Symmetrised like the result, or the normal map would paint the raw mesh's
        asymmetry back onto the mirrored half."""
        v, f = ref_v, ref_f
        if symmetric and (half := positive_half(v, f)) is not None:
            v, f = mirror(*half)
        return v, safe_vertex_normals(v, f)

    report(0.1)

    remeshed = bool(params.get("should_remesh", True))
    quads = remeshed and params.get("topology") == "quad"
    with clock("quad_remesh" if quads else "remesh"):
        shape = build_shape(
            ref_v,
            ref_f,
            target=clamp_polycount(params.get("target_polycount")) if remeshed else None,
            quads=quads,
            symmetric=symmetric,
        )
    report(0.35)
    # Without remeshing (and mirroring) the UV mesh indexes the raw vertices, so colours copy exactly.
    same = not remeshed and np.array_equal(shape.vertices, ref_v)

    with ThreadPoolExecutor(EXPORT_THREADS, thread_name_prefix="deliverables") as pool:
        surface, uvm = surfacing.unwrapped_surface(shape, clock, textured, reference)
        if place is not None:
            surface = replace(surface, vertices=place(surface.vertices))
        report(0.55)
        if source is None:
            # The thumbnail shows the runner's colours per vertex rather than the baked texture, so it can
            # render while the (numpy-heavy, GIL-releasing) bake runs instead of after it.
            shade = None if uvm is None else texture.colours_at(uvm, ref_v, colours, same_vertices=same)
            renders = _submit_thumbnails(pool, clock, surface, shade, None, out_dir, params)
        pre_remeshed = (
            pool.submit(_timed, clock, "pre_remeshed", _pre_remeshed, mesh, out_dir)
            if remeshed and params.get("save_pre_remeshed_model")
            else None
        )
        images: dict = {}
        if uvm is not None and source is not None:
            surface, images = surfacing.bake_from_source(surface, uvm, clock, source)
        elif uvm is not None:
            surface, images = surfacing.bake_textures(surface, uvm, clock, ref_v, reference, colours, pbr, same=same)
        if source is not None:
            # A texture re-baked from an image has detail per-vertex colours would blur: show it.
            renders = _submit_thumbnails(pool, clock, surface, None, images.get("base_color"), out_dir, params)
        report(0.75)
        with clock("encode_textures"):
            material = _material(pool, images)
            export.write_textures(out_dir, material)
        report(0.8)
        with clock("exports"):
            formats = requested_formats(params.get("target_formats"))
            model_files = _export(pool, clock, out_dir, formats, surface, material)
            pictures = renders.results()
            if pre_remeshed is not None:
                model_files["pre_remeshed_glb"] = pre_remeshed.result()
    report(1.0)
    clock.timings["total"] = round(time.perf_counter() - started, 4)
    return _deliverables(model_files, material, pictures, surface, clock)


def write_surface(
    surface: Surface,
    images: Mapping[str, Image.Image],
    params: Mapping[str, Any],
    out_dir: Path,
    formats: Iterable[str],
    progress: ProgressCallback | None = None,
) -> Deliverables:
    """Write an export-ready `surface` as it is (no cleaning, remeshing, unwrapping or baking) in `formats` (any
    of `KNOWN_FORMATS`, or "gltf" for an embedded-buffer glTF), with `images` as its maps (base_color, and
    metallic, roughness, metallic_roughness, normal; `surface.uv` must be set when there are any), and a
    thumbnail showing the base colour texture. params: alpha_thumbnail, multi_view_thumbnails, _turntable."""
    report = progress or (lambda _fraction: None)
    clock = _Clock()
    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report(0.0)
    images = dict(images) if surface.uv is not None else {}
    with ThreadPoolExecutor(EXPORT_THREADS, thread_name_prefix="deliverables") as pool:
        renders = _submit_thumbnails(pool, clock, surface, None, images.get("base_color"), out_dir, params)
        with clock("encode_textures"):
            material = _material(pool, images)
            export.write_textures(out_dir, material)
        report(0.4)
        with clock("exports"):
            model_files = _export(pool, clock, out_dir, list(formats), surface, material)
            pictures = renders.results()
    report(1.0)
    clock.timings["total"] = round(time.perf_counter() - started, 4)
    return _deliverables(model_files, material, pictures, surface, clock)


class _Pictures(NamedTuple):
    thumbnail: str
    alpha_thumbnail: str | None
    thumbnails: dict[str, str]
    video: str | None


class _Renders(NamedTuple):
    """The pictures being rendered in the pool: `preview.png`, and the views and the video when asked for."""

    thumb: Future
    views: Future | None
    video: Future | None

    def results(self) -> _Pictures:
        thumb_name, alpha_name = self.thumb.result()
        thumbnails = self.views.result() if self.views is not None else {}
        return _Pictures(thumb_name, alpha_name, thumbnails, self.video.result() if self.video is not None else None)


def _deliverables(
    model_files: dict[str, str], material: Material, pictures: _Pictures, surface: Surface, clock: _Clock
) -> Deliverables:
    return Deliverables(
        model_files=model_files,
        texture_files=[dict(material.files)] if material.files else [],
        thumbnail=pictures.thumbnail,
        alpha_thumbnail=pictures.alpha_thumbnail,
        faces=surface.polygon_count,
        timings=clock.timings,
        thumbnails=pictures.thumbnails,
        video=pictures.video,
    )


def _submit_thumbnails(
    pool: ThreadPoolExecutor,
    clock: _Clock,
    surface: Surface,
    shade: np.ndarray | None,
    image: Image.Image | None,
    out_dir: Path,
    params: Mapping[str, Any],
) -> _Renders:
    """Start `preview.png` (and the four views and the turntable video when asked for), coloured by `shade` per
    vertex or by `image` through the surface's UVs (reduced to at most `THUMBNAIL_TEXTURE` pixels a side first)."""
    look = _Look(shade)
    if image is not None and surface.uv is not None:
        small = image.convert("RGB")
        small.thumbnail((THUMBNAIL_TEXTURE, THUMBNAIL_TEXTURE))
        look = _Look(None, surface.uv, np.asarray(small, dtype=np.float32) / 255.0)
    thumb = pool.submit(_timed, clock, "thumbnail", _thumbnail, surface, look, out_dir, params)
    views = (
        pool.submit(_timed, clock, "view_thumbnails", _view_thumbnails, surface, look, out_dir)
        if params.get("multi_view_thumbnails")
        else None
    )
    video = None
    if params.get("_turntable"):
        video = pool.submit(_timed, clock, "turntable", _turntable, surface, look, out_dir)
    return _Renders(thumb, views, video)


@dataclass(frozen=True)
class _Look:
    """How a thumbnail colours the surface: per-vertex `colours` (0..255), a `texture` (H, W, 3 floats) read
    through `uv`, or neither (clay)."""

    colours: np.ndarray | None = None
    uv: np.ndarray | None = None
    texture: np.ndarray | None = None

    def render_args(self) -> dict[str, Any]:
        if self.texture is not None:
            return {"uv": self.uv, "texture": self.texture}
        if self.colours is not None:
            return {"colors": np.asarray(self.colours, dtype=np.float32) / 255.0}
        return {}


def _material(pool: ThreadPoolExecutor, images: dict) -> Material:
    """Encode every map once (in parallel: PIL releases the GIL while compressing)."""
    encoded = {key: pool.submit(export.encode_png, image) for key, image in images.items()}
    png = {key: future.result() for key, future in encoded.items()}
    names = {"base_color": "texture_0.png"}
    names.update({key: f"texture_0_{key}.png" for key in ("metallic", "roughness", "normal") if key in png})
    return Material(files=names if png else {}, png=png)


def _timed(clock: _Clock, stage: str, fn: Callable, *args: Any) -> Any:
    with clock(stage):
        return fn(*args)


def _export(
    pool: ThreadPoolExecutor, clock: _Clock, out_dir: Path, formats: list[str], surface: Surface, material: Material
) -> dict[str, str]:
    files: dict[str, str] = {}
    jobs: list[tuple[str, Future]] = []
    obj_job: Future | None = None
    if "obj" in formats:
        files["obj"], files["mtl"] = "model.obj", "model.mtl"
        obj_job = pool.submit(_timed, clock, "obj", export.export_obj, out_dir, surface, material.files)
        jobs.append(("obj", obj_job))
    if "fbx" in formats:
        files["fbx"] = "model.fbx"

        def fbx() -> None:
            # Reuse the deliverable OBJ when there is one (submitted first, so it is never queued behind us).
            source = None
            if obj_job is not None:
                obj_job.result()
                source = out_dir / files["obj"]
            export_fbx.export_fbx(out_dir / files["fbx"], surface, material.files, out_dir, obj=source)

        jobs.append(("fbx", pool.submit(_timed, clock, "fbx", fbx)))
    writers = {
        "glb": ("model.glb", lambda path: export_glb.export_glb(path, surface, material)),
        "gltf": ("model.gltf", lambda path: export_glb.export_gltf(path, surface, material)),
        "usdz": ("model.usdz", lambda path: export_usdz.export_usdz(path, surface, material, out_dir)),
        "stl": ("model.stl", lambda path: export.export_stl(path, surface)),
        "3mf": ("model.3mf", lambda path: export.export_3mf(path, surface)),
    }
    for fmt, (name, write) in writers.items():
        if fmt in formats:
            files[fmt] = name
            jobs.append((fmt, pool.submit(_timed, clock, fmt, write, out_dir / name)))
    for fmt, job in jobs:
        try:
            job.result()
        except Exception as exc:  # noqa: BLE001 (any writer failure means that format could not be produced)
            raise ExportFailed(fmt, exc) from exc
    return {fmt: files[fmt] for fmt in ("glb", "gltf", "obj", "mtl", "fbx", "stl", "usdz", "3mf") if fmt in files}


def _thumbnail(surface: Surface, look: _Look, out_dir: Path, params: Mapping[str, Any]) -> tuple[str, str | None]:
    rgb, alpha = thumbnail.render(
        surface.vertices, surface.triangles, surface.normals, closed=_closed(surface), **look.render_args()
    )
    return thumbnail.write_thumbnails(rgb, alpha, out_dir, bool(params.get("alpha_thumbnail")))


def _view_thumbnails(surface: Surface, look: _Look, out_dir: Path) -> dict[str, str]:
    """`preview_front.png` ... `preview_left.png`: the model from four sides, slightly from above."""
    names = {}
    closed = _closed(surface)
    for view, azimuth in VIEWS.items():
        rgb, alpha = thumbnail.render(
            surface.vertices, surface.triangles, surface.normals,
            closed=closed, azimuth_deg=azimuth, elevation_deg=VIEW_ELEVATION_DEG, **look.render_args(),
        )  # fmt: skip
        names[view] = thumbnail.write_view(rgb, alpha, out_dir, f"preview_{view}.png")
    return names


def _turntable(surface: Surface, look: _Look, out_dir: Path) -> str | None:
    """`preview.mp4`, or None when it could not be written: an optional extra never fails the model it shows."""
    try:
        turntable.render_turntable(
            surface.vertices, surface.triangles, surface.normals, out_dir / TURNTABLE_VIDEO,
            closed=_closed(surface), **look.render_args(),
        )  # fmt: skip
    except Exception:  # noqa: BLE001 (any failure: log it and deliver the model without a video)
        log.warning("turntable video failed", exc_info=True)
        (out_dir / TURNTABLE_VIDEO).unlink(missing_ok=True)
        return None
    return TURNTABLE_VIDEO


def _pre_remeshed(mesh: trimesh.Trimesh, out_dir: Path) -> str:
    """The cleaned model before remeshing, as GLB with its vertex colours (`model_urls.pre_remeshed_glb`)."""
    name = "pre_remeshed_model.glb"
    mesh.export(out_dir / name, file_type="glb")
    return name


def _closed(surface: Surface) -> bool:
    """Watertight with outward winding, judged on positions (UV seams split vertices but not the surface)."""
    mesh = trimesh.Trimesh(surface.vertices, surface.triangles, process=False)
    mesh.merge_vertices(merge_tex=True, merge_norm=True)
    return bool(mesh.is_watertight and mesh.volume > 0)
