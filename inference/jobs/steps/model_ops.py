"""Model operations: the caller's model (an earlier task's file, an upload, or a URL fetched through the SSRF guard)
through one operation of the mesh-ops runner; its files are published as the task's outputs."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from app.core.fetch import FetchRefused
from app.core.model_files import sniff_model
from app.tasks.models import Task
from app.tasks.outputs import TaskOutputs
from inference.jobs.context import InvalidInput, JobContext
from inference.jobs.progress import ProgressReporter
from inference.jobs.steps.common import StepResult, guarded_fetch, input_images, run_runner
from inference.pipeline.model_input import OpResult, glb_face_count


async def model_input(job: JobContext, task: Task, work_dir: Path) -> tuple[Path, str]:
    """The model file to work on and its real format."""
    params = task.params
    parent = params.get("_parent_model")
    if parent and task.parent_id is not None:
        path = await asyncio.to_thread(job.store.path_of, task.parent_id, parent["file"])
        if path is None:
            raise InvalidInput("input_task_id: the input task's model is no longer available (deleted or expired)")
        return path, parent["format"]
    ref = ((params.get("_inputs") or {}).get("model_url") or [{}])[0]
    if "file" in ref:
        path = await asyncio.to_thread(job.store.input_path, task.id, ref["file"])
        if path is None:
            raise InvalidInput("model_url: the uploaded model is no longer available")
        return path, path.suffix.lstrip(".")
    try:
        content = await guarded_fetch(job, ref["url"], None)  # a model: sniffed below, not by media type
        fmt = sniff_model(content, ref["url"])
    except FetchRefused as exc:
        raise InvalidInput(f"model_url: {exc}") from exc
    path = work_dir / f"input_model.{fmt}"
    await asyncio.to_thread(path.write_bytes, content)
    return path, fmt


async def run(job: JobContext, task: Task, work_dir: Path, reporter: ProgressReporter) -> StepResult:
    params = {**task.params, "seed": task.seed}
    path, fmt = await model_input(job, task, work_dir)
    inputs: dict[str, Any] = {"model": path, "source_format": fmt}
    if params.get("image_style_url"):  # retexture: the style image wins over the prompt
        inputs["style_image"] = (await input_images(job, task, "image_style_url", work_dir))[0]
    out_dir = work_dir / "out"
    artifacts = await run_runner(job, task, inputs, params, out_dir, reporter, 1, 99)
    result: OpResult = artifacts.metadata["result"]
    names = [*result.model_files.values(), *(n for group in result.texture_files for n in group.values())]
    names += [n for n in (result.thumbnail, result.alpha_thumbnail) if n]
    parts = result.extra.get("parts")
    if parts:  # segmentation / part completion: the parts' own files
        names += [*parts.get("files", []), *([parts["labels"]] if parts.get("labels") else [])]
    for name in set(names):
        (out_dir / name).replace(work_dir / name)
    outputs: TaskOutputs = {"model": result.model_files, "textures": result.texture_files}
    if result.thumbnail:
        outputs["thumbnail"] = result.thumbnail
    if result.alpha_thumbnail:
        outputs["alpha_thumbnail"] = result.alpha_thumbnail
    if result.model_files.get("glb"):  # what a later task checks at create (rigging's 300,000-face limit)
        outputs["faces"] = await asyncio.to_thread(glb_face_count, work_dir / result.model_files["glb"])
    if parts:
        outputs["parts"] = parts
    if "printability" in result.extra:
        outputs["printability"] = result.extra["printability"]
    return StepResult(outputs, sorted(set(names)))
