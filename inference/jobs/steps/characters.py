"""Characters: rigging a model, animating a rigged character, and text-to-motion.

Each step gathers its inputs (the model through the same path as the model operations, the rig task's character
data, a motion task's clip), runs the task's runner off the event loop and publishes what it wrote. The runner's
`metadata["result"]` is the task's nested `result` (file names where Meshy has URLs) and `metadata["files"]` every file
to publish, internal ones included (`character.npz` for a later animation, `motion.npz` for a later `animate`).
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

from app.tasks.models import Task
from app.tasks.outputs import TaskOutputs
from inference.jobs.context import InvalidInput, JobContext
from inference.jobs.progress import ProgressReporter
from inference.jobs.steps.common import StepResult, input_images, published, run_runner
from inference.jobs.steps.model_ops import model_input

CHARACTER_DATA = "character.npz"
MOTION_DATA = "motion.npz"


async def rig(job: JobContext, task: Task, work_dir: Path, reporter: ProgressReporter) -> StepResult:
    params = dict(task.params)
    path, fmt = await model_input(job, task, work_dir)
    if fmt != "glb":  # a .glb URL that serves another format
        raise InvalidInput(f"model_url: rigging takes a GLB model; the file is {fmt.upper()}")
    inputs: dict[str, Any] = {"model": path, "source_format": fmt}
    if (params.get("_inputs") or {}).get("texture_image_url"):
        texture = (await input_images(job, task, "texture_image_url", work_dir))[0]
        if texture.suffix.lower() != ".png":
            raise InvalidInput("texture_image_url: the texture must be a PNG image")
        inputs["texture"] = texture
    out_dir = work_dir / "out"
    artifacts = await run_runner(job, task, inputs, params, out_dir, reporter, 1, 99)
    meta = dict(artifacts.metadata)
    names = published(meta, out_dir, work_dir)
    outputs: TaskOutputs = {"result": meta["result"], "character_data": CHARACTER_DATA}
    return StepResult(outputs, names)


async def _stored(job: JobContext, task_id: uuid.UUID | str | None, name: str, what: str) -> Path:
    path = await asyncio.to_thread(job.store.path_of, uuid.UUID(str(task_id)), name) if task_id else None
    if path is None:
        raise InvalidInput(f"{what}: the task's results are no longer available (deleted or expired)")
    return path


async def animate(job: JobContext, task: Task, work_dir: Path, reporter: ProgressReporter) -> StepResult:
    params = dict(task.params)
    inputs: dict[str, Any] = {"character": await _stored(job, task.parent_id, CHARACTER_DATA, "rig_task_id")}
    motion = params.get("_motion")
    if motion:
        inputs["motion"] = await _stored(job, motion["task_id"], motion["file"], "motion_task_id")
    out_dir = work_dir / "out"
    artifacts = await run_runner(job, task, inputs, params, out_dir, reporter, 1, 99)
    meta = dict(artifacts.metadata)
    names = published(meta, out_dir, work_dir)
    return StepResult({"result": meta["result"]}, names)


async def text_to_motion(job: JobContext, task: Task, work_dir: Path, reporter: ProgressReporter) -> StepResult:
    params = {**task.params, "seed": task.seed}
    out_dir = work_dir / "out"
    artifacts = await run_runner(job, task, {}, params, out_dir, reporter, 1, 99)
    meta = dict(artifacts.metadata)
    names = published(meta, out_dir, work_dir)
    return StepResult({"result": meta["result"], "motion_data": MOTION_DATA}, names)
