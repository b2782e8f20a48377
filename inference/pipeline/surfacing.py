"""The final shape -> the export `Surface`: UV unwrapping, quad re-pairing and subdivision, tangents, baking.

Kept apart from `deliverables` (which orchestrates and writes files) because the quad bookkeeping has
several steps whose order matters: quads are split into triangle pairs for xatlas, re-paired after it,
optionally subdivided (after unwrapping, so xatlas works on the small mesh) and snapped onto the raw
surface; only then are tangents computed and maps baked, on the final triangles.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import replace

import numpy as np

from inference.pipeline import texture
from inference.pipeline.clean import safe_vertex_normals
from inference.pipeline.geometry import Shape
from inference.pipeline.quads import pair_triangles, quads_to_triangles, subdivide_polygons, unpaired_quads
from inference.pipeline.surface import Surface

# Times a named stage: `with clock("unwrap"): ...`.
Clock = Callable[[str], AbstractContextManager]
Reference = Callable[[], tuple[np.ndarray, np.ndarray]]


def unwrapped_surface(
    shape: Shape, clock: Clock, textured: bool, reference: Reference
) -> tuple[Surface, texture.UVMesh | None]:
    """The export surface (without tangents yet) and, when textured, the UV mesh it was made from.

    `reference()` gives the cleaned raw mesh's vertices and normals, onto which subdivided quads are snapped.
    """
    if not shape.quads:
        if not textured:
            with clock("normals"):
                normals = safe_vertex_normals(shape.vertices, shape.faces)
            return Surface.from_triangles(shape.vertices, normals, shape.faces), None
        with clock("unwrap"):
            uvm = texture.textured_mesh(shape.vertices, shape.faces)
        return Surface.from_triangles(uvm.vertices, uvm.normals, uvm.faces, uv=uvm.uv), uvm

    tris, owner = quads_to_triangles(shape.vertices, shape.faces)
    uvm = None
    if textured:
        with clock("unwrap"):
            # At full resolution: the triangle path's budget (unwrap a decimated copy) would destroy the quads.
            uvm = texture.textured_mesh(shape.vertices, tris, budget=None)
        # xatlas keeps face order, so each quad's two triangles are still consecutive.
        vertices, normals, uv, tris = uvm.vertices, uvm.normals, uvm.uv, uvm.faces
    else:
        vertices, normals, uv = shape.vertices, safe_vertex_normals(shape.vertices, tris), None
    apart = None
    if shape.subdivisions and shape.twins is not None:
        # Splitting makes 4 quads of a quad but 3 + 3 of a seam-cut pair, with different new points: cut a
        # quad whenever its mirror image is cut, so the subdivided halves stay mirror images.
        apart = unpaired_quads(tris, owner, len(shape.faces))
        apart |= apart[shape.twins]
    counts, flat = pair_triangles(tris, owner, apart)
    if shape.subdivisions:
        with clock("subdivide"):
            for _ in range(shape.subdivisions):
                vertices, uv, quads = subdivide_polygons(vertices, counts, flat, uv)
                counts, flat = np.full(len(quads), 4), quads.reshape(-1)
            vertices, normals = texture.snap_to_surface(vertices, *reference(), symmetric=shape.twins is not None)
            tris, _ = quads_to_triangles(vertices, quads)
        if uvm is not None:
            uvm = texture.UVMesh(vertices, tris, uv, normals, np.full(len(vertices), -1, dtype=np.int64))
    return Surface(vertices, normals, tris, counts, flat, uv=uv), uvm


def bake_textures(
    surface: Surface,
    uvm: texture.UVMesh,
    clock: Clock,
    ref_v: np.ndarray,
    reference: Reference,
    colours: np.ndarray,
    pbr: bool,
    same: bool,
) -> tuple[Surface, dict]:
    """Tangents (PBR only) and the texture images: base colour, plus metallic, roughness, normal for PBR."""
    tangents = None
    if pbr:
        with clock("tangents"):
            tangents = texture.vertex_tangents(uvm)
    with clock("bake"):
        baked = texture.bake(
            uvm, ref_v, colours, normal_source=reference() if pbr else None, tangents=tangents, same_vertices=same
        )
    images: dict = {"base_color": baked.base_color}
    if pbr:
        images.update(texture.pbr_maps(baked.base_color.size[0]))
        images["normal"] = baked.normal
    return replace(surface, tangents=tangents), images


def bake_from_source(
    surface: Surface, uvm: texture.UVMesh, clock: Clock, source: texture.TexturedSource
) -> tuple[Surface, dict]:
    """Tangents (when the source has a normal map) and the maps re-baked from a textured input surface."""
    tangents = None
    if source.maps.normal is not None:
        with clock("tangents"):
            tangents = texture.vertex_tangents(uvm)
    with clock("bake"):
        images = source.bake(uvm, tangents)
    return replace(surface, tangents=tangents), images
