"""Image to 3D and Multi-Image to 3D: the pictures (from URLs, uploads or an image task) to a textured model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.tasks.models import Task, TaskType
from inference.jobs.context import JobContext
from inference.jobs.progress import ProgressReporter
from inference.jobs.steps.common import StepResult, input_images, model_result, parent_images, run_runner


async def run(job: JobContext, task: Task, work_dir: Path, reporter: ProgressReporter) -> StepResult:
    params = {**task.params, "seed": task.seed}
    field = "image_url" if task.type == TaskType.IMAGE_TO_3D.value else "image_urls"
    # input_task_id wins over URLs (Meshy, Apr 2026).
    images = await parent_images(job, task) or await input_images(job, task, field, work_dir)
    inputs: dict[str, Any] = {"images": images}
    # texture_prompt wins over texture_image_url (§22.14); the runner only sees the winner. The multi-view reference
    # colours from the views themselves and has no use for a texture picture, so it is not fetched for it.
    wants_texture_image = task.type == TaskType.IMAGE_TO_3D.value or len(images) == 1
    if (
        wants_texture_image
        and params.get("should_texture", True)
        and params.get("texture_image_url")
        and not params.get("texture_prompt")
    ):
        inputs["texture_image"] = (await input_images(job, task, "texture_image_url", work_dir))[0]
    artifacts = await run_runner(job, task, inputs, params, work_dir, reporter, 1, 50)
    return await model_result(artifacts, params, work_dir, reporter, 50, turntable=job.settings.turntable_video)
