"""The `outputs` JSON of a task: the contract between the worker that writes it and the API that renders it.

Every value is a file name inside the task's asset folder (served through signed URLs), never a URL or a path.
"""

from __future__ import annotations

from typing import TypedDict


class TaskOutputs(TypedDict, total=False):
    # 3D results (OutputShape.MODEL)
    model: dict[str, str]  # format key ("glb", "obj", "mtl", "fbx", "stl", "usdz", "3mf", "pre_remeshed_glb")
    textures: list[dict[str, str]]  # one dict per material: base_color, metallic, roughness, normal
    thumbnail: str  # preview.png
    alpha_thumbnail: str | None  # preview_alpha.png when alpha_thumbnail was asked for
    thumbnails: dict[str, str]  # multi_view_thumbnails: front, right, back, left
    source: str  # raw.ply: the geometry a later task (refine) builds on
    video: str  # preview.mp4: the turntable (generation tasks, unless TURNTABLE_VIDEO is off)
    faces: int
    printability: dict  # print-analyze: Meshy's printability report
    # mesh-segmentation and part-completion: {"num_parts": n, "labels": "part_labels.json" (segmentation),
    # "files": ["part_00.glb", ...], "watertight": [bool, ...] (completion)}
    parts: dict
    # 2D results (OutputShape.IMAGES)
    images: list[str]  # image_0.png, image_1.png, ...
    # Nested results (OutputShape.RESULT: rig, animate, text-to-motion): rendered as the task's `result`, where a key
    # ending in `_url` holds a file name (signed on the way out) and any other key a plain value; dicts nest
    # (`basic_animations`).
    result: dict
