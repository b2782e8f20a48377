"""Text to Image and Image to Image: the runner writes PNGs; they are published as `image_urls`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.tasks.models import Task, TaskType
from app.tasks.outputs import TaskOutputs
from inference.jobs.context import JobContext
from inference.jobs.progress import ProgressReporter
from inference.jobs.steps.common import StepResult, input_images, parent_images, run_runner


async def run(job: JobContext, task: Task, work_dir: Path, reporter: ProgressReporter) -> StepResult:
    params = {**task.params, "seed": task.seed, "mode": task.type}
    inputs: dict[str, Any] = {}
    if task.type == TaskType.IMAGE_TO_IMAGE.value:
        references = await parent_images(job, task)
        inputs["images"] = references or await input_images(job, task, "reference_image_urls", work_dir)
    out_dir = work_dir / "images"
    artifacts = await run_runner(job, task, inputs, params, out_dir, reporter, 1, 95)
    if not artifacts.images:
        raise RuntimeError("the runner produced no image")
    names = []
    for index, path in enumerate(artifacts.images):
        name = f"image_{index}.png"
        path.replace(work_dir / name)
        names.append(name)
    outputs: TaskOutputs = {"images": names}
    return StepResult(outputs, names)
