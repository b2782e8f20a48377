"""What each task type is, independent of HTTP: its output shape and whether it counts toward the queue limit.

The API's resource declarations (`app.api.resources`) and the worker's step table (`inference.jobs.steps`) both
key on these types; the renderer picks the task object's shape from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from app.tasks.models import TaskType


class OutputShape(StrEnum):
    """How a SUCCEEDED task's outputs appear on the task object (meshy-api.md §20)."""

    MODEL = "model"  # model_urls, texture_urls, thumbnail_url (+ thumbnail_urls)
    IMAGES = "images"  # image_urls
    RESULT = "result"  # a nested `result` object (rig, animate and MeshFoundry's extensions)


@dataclass(frozen=True)
class TaskKind:
    type: str
    shape: OutputShape
    # Meshy's queue limit (NoMoreConcurrentTasks) covers the generation endpoints, not the 2D ones (§15).
    counts_toward_concurrency: bool


KINDS: dict[str, TaskKind] = {
    kind.type: kind
    for kind in (
        TaskKind(TaskType.TEXT_TO_3D_PREVIEW.value, OutputShape.MODEL, True),
        TaskKind(TaskType.TEXT_TO_3D_REFINE.value, OutputShape.MODEL, True),
        TaskKind(TaskType.IMAGE_TO_3D.value, OutputShape.MODEL, True),
        TaskKind(TaskType.MULTI_IMAGE_TO_3D.value, OutputShape.MODEL, True),
        TaskKind(TaskType.TEXT_TO_IMAGE.value, OutputShape.IMAGES, False),
        TaskKind(TaskType.IMAGE_TO_IMAGE.value, OutputShape.IMAGES, False),
        # Model operations: Meshy's queue limit covers remesh and text-to-texture among them (meshy-api.md §15).
        TaskKind(TaskType.REMESH.value, OutputShape.MODEL, True),
        TaskKind(TaskType.CONVERT.value, OutputShape.MODEL, False),
        TaskKind(TaskType.RESIZE.value, OutputShape.MODEL, False),
        TaskKind(TaskType.RETEXTURE.value, OutputShape.MODEL, False),
        TaskKind(TaskType.TEXT_TO_TEXTURE.value, OutputShape.MODEL, True),
        TaskKind(TaskType.UV_UNWRAP.value, OutputShape.MODEL, False),
        TaskKind(TaskType.PRINT_ANALYZE.value, OutputShape.MODEL, False),
        TaskKind(TaskType.PRINT_REPAIR.value, OutputShape.MODEL, False),
        TaskKind(TaskType.PRINT_MULTI_COLOR.value, OutputShape.MODEL, False),
        # Characters: Meshy's queue limit is said not to cover rigging and animation (§15); text-to-motion neither.
        TaskKind(TaskType.RIG.value, OutputShape.RESULT, False),
        TaskKind(TaskType.ANIMATE.value, OutputShape.RESULT, False),
        TaskKind(TaskType.TEXT_TO_MOTION.value, OutputShape.RESULT, False),
        # MeshFoundry's part resources count toward the queue limit, like the generation endpoints.
        TaskKind(TaskType.MESH_SEGMENTATION.value, OutputShape.MODEL, True),
        TaskKind(TaskType.PART_COMPLETION.value, OutputShape.MODEL, True),
        # Video (MeshFoundry; DICE-Talk's service): a generation, so it counts toward the queue limit.
        TaskKind(TaskType.TALKING_HEAD.value, OutputShape.RESULT, True),
    )
}
# Tasks whose outputs hold a model another task can start from (`input_task_id` of the model operations).
MODEL_SOURCES: tuple[str, ...] = tuple(
    t for t, kind in KINDS.items() if kind.shape is OutputShape.MODEL and t != TaskType.PRINT_ANALYZE.value
)
COUNTED_TYPES: tuple[str, ...] = tuple(t for t, kind in KINDS.items() if kind.counts_toward_concurrency)
UNCOUNTED_TYPES: tuple[str, ...] = tuple(t for t, kind in KINDS.items() if not kind.counts_toward_concurrency)


def shape_of(task_type: str) -> OutputShape:
    kind = KINDS.get(task_type)
    return kind.shape if kind else OutputShape.MODEL


def counts_toward_concurrency(task_type: str) -> bool:
    kind = KINDS.get(task_type)
    return kind.counts_toward_concurrency if kind else True
