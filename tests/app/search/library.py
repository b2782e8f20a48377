"""A small generated library with known captions, for search tests and the benchmark."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import trimesh

# name -> (mesh factory, RGB colour, caption)
ITEMS = {
    "crate": (lambda: trimesh.creation.box((1.0, 1.0, 1.0)), (150, 90, 40), "a wooden crate, a brown cardboard box"),
    "ball": (lambda: trimesh.creation.icosphere(subdivisions=2, radius=0.5), (30, 60, 220), "a blue rubber ball"),
    "pillar": (
        lambda: trimesh.creation.cylinder(radius=0.2, height=2.0, sections=24),
        (200, 200, 200),
        "a tall white marble column, a pillar",
    ),
    "cone": (
        lambda: trimesh.creation.cone(radius=0.5, height=1.2, sections=24),
        (250, 120, 0),
        "an orange traffic cone",
    ),
    "ring": (
        lambda: trimesh.creation.torus(major_radius=0.5, minor_radius=0.15, major_sections=24, minor_sections=12),
        (230, 200, 40),
        "a golden ring, a donut-shaped torus",
    ),
}


def coloured(mesh: trimesh.Trimesh, rgb: tuple[int, int, int]) -> trimesh.Trimesh:
    mesh.visual.vertex_colors = np.tile(np.array([*rgb, 255], dtype=np.uint8), (len(mesh.vertices), 1))
    return mesh


def write_library(folder: Path, names: tuple[str, ...] | None = None, *, captions_as: str = "json") -> Path:
    """GLB files in `folder` (one in a subfolder, to exercise relative ids) and a captions file beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    captions = {}
    for name in names or tuple(ITEMS):
        make, rgb, caption = ITEMS[name]
        target = folder / ("shapes" if name == "ring" else "") / f"{name}.glb"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(coloured(make(), rgb).export(file_type="glb"))
        captions[("shapes/" if name == "ring" else "") + name] = caption
    out = folder.parent / f"{folder.name}-captions.{captions_as}"
    if captions_as == "json":
        out.write_text(json.dumps(captions, ensure_ascii=False))
    else:
        out.write_text("uid,caption\n" + "".join(f'{k},"{v}"\n' for k, v in captions.items()))
    return out
