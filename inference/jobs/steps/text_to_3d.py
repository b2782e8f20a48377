"""Text to 3D: a preview generates geometry from the prompt; a refine textures its preview's geometry; an internal
`_textured` preview (3DAIGC-API's text-to-textured-mesh) does both in one task."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from app.tasks.models import Task
from inference.jobs.context import JobContext
from inference.jobs.progress import ProgressReporter
from inference.jobs.steps.common import SOURCE_MESH, StepResult, fetch_image, input_images, model_result, run_runner


async def run(job: JobContext, task: Task, work_dir: Path, reporter: ProgressReporter) -> StepResult:
    params = {**task.params, "seed": task.seed}
    inputs: dict[str, Any] = {}
    if task.parent_id is not None:
        source = await asyncio.to_thread(job.store.path_of, task.parent_id, SOURCE_MESH)
        if source is None:
            raise RuntimeError("the preview's mesh is no longer available")
        inputs["preview_mesh"] = source
    # Meshy: a texture_prompt wins over texture_image_url.
    if params.get("texture_image_url") and not params.get("texture_prompt"):
        stored = await input_images(job, task, "texture_image_url", work_dir)
        # Tasks created before inputs were stored carry the URL itself.
        inputs["texture_image"] = (
            stored[0]
            if stored
            else await fetch_image(job, params["texture_image_url"], work_dir / "texture_input", "texture_image_url")
        )
    if params.get("_textured") and task.parent_id is None:
        # A one-step textured model (3DAIGC-API's text-to-textured-mesh): the preview's geometry, then the refine's
        # painting of it, in one task; its deliverables are a refine's (textured).
        shaped = await run_runner(job, task, inputs, params, work_dir / "geometry", reporter, 1, 35)
        if shaped.mesh is None:
            raise RuntimeError("the runner produced no mesh")
        inputs["preview_mesh"] = shaped.mesh
        params = {**params, "mode": "refine"}
        artifacts = await run_runner(job, task, inputs, params, work_dir, reporter, 35, 60)
    else:
        artifacts = await run_runner(job, task, inputs, params, work_dir, reporter, 1, 60)
    return await model_result(artifacts, params, work_dir, reporter, 60, turntable=job.settings.turntable_video)
