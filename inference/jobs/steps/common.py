"""Shared step parts: input images (stored, fetched through the SSRF guard, or an earlier task's outputs), running
a runner off the event loop, and turning a raw mesh into Meshy's deliverables."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.core.fetch import FetchRefused, fetch
from app.core.images import IMAGE_TYPES, inspect_image
from app.tasks.models import Task
from app.tasks.outputs import TaskOutputs
from inference.jobs import observe
from inference.jobs.context import InvalidInput, JobContext
from inference.jobs.progress import ProgressReporter
from inference.pipeline.deliverables import Deliverables, build_deliverables
from inference.runners.base import InputRejected, RunnerArtifacts

SOURCE_MESH = "raw.ply"  # kept beside the deliverables: refine starts from the preview's geometry


@dataclass(frozen=True)
class StepResult:
    outputs: TaskOutputs
    files: list[str]  # every file to publish, relative to the work dir


Step = Callable[[JobContext, Task, Path, ProgressReporter], Awaitable[StepResult]]


async def input_images(job: JobContext, task: Task, name: str, work_dir: Path) -> list[Path]:
    """The images of input `name`: stored at create (data URIs) or fetched now (URLs), each checked as an image."""
    refs = (task.params.get("_inputs") or {}).get(name, [])
    paths = []
    for index, ref in enumerate(refs):
        label = name if len(refs) == 1 else f"{name}[{index}]"
        if "file" in ref:
            path = await asyncio.to_thread(job.store.input_path, task.id, ref["file"])  # S3: a download
            if path is None:
                raise InvalidInput(f"{label}: the uploaded image is no longer available")
            paths.append(path)
        else:
            paths.append(await fetch_image(job, ref["url"], work_dir / f"{name}_{index}", label))
    return paths


async def guarded_fetch(job: JobContext, url: str, allowed: tuple[str, ...] | None) -> bytes:
    """A URL input's bytes through the SSRF guard, with the deployment's size and time limits."""
    settings = job.settings
    fetched = await fetch(
        url, allowed=allowed, max_bytes=settings.fetch_max_bytes, timeout_s=settings.fetch_timeout_s,
        allow_private=settings.fetch_allow_private,
    )  # fmt: skip
    return fetched.content


async def fetch_image(job: JobContext, url: str, stem: Path, label: str) -> Path:
    try:
        content = await guarded_fetch(job, url, IMAGE_TYPES)
        info = await asyncio.to_thread(inspect_image, content)
    except FetchRefused as exc:
        raise InvalidInput(f"{label}: {exc}") from exc
    path = stem.with_suffix(info.extension)
    await asyncio.to_thread(path.write_bytes, content)
    return path


async def parent_images(job: JobContext, task: Task) -> list[Path]:
    """The images of the task `input_task_id` named (checked SUCCEEDED with the right count at create)."""
    if task.parent_id is None:
        return []
    names = task.params.get("_parent_images") or []
    paths = [await asyncio.to_thread(job.store.path_of, task.parent_id, name) for name in names]
    if not names or any(p is None for p in paths):
        raise InvalidInput("input_task_id: the input task's images are no longer available (deleted or expired)")
    return [p for p in paths if p is not None]


def published(artifacts_meta: Mapping[str, Any], out_dir: Path, work_dir: Path) -> list[str]:
    """The files a runner listed in its metadata (`files`), moved from its `out_dir` up to the job's `work_dir`,
    where the job publishes them from; their names, in order, once each."""
    names = list(dict.fromkeys(artifacts_meta["files"]))
    for name in names:
        (out_dir / name).replace(work_dir / name)
    return names


async def run_runner(
    job: JobContext, task: Task, inputs: Mapping[str, Any], params: Mapping[str, Any], work_dir: Path,
    reporter: ProgressReporter, start: int, end: int,
) -> RunnerArtifacts:  # fmt: skip
    """The task's runner in an executor thread; its InputRejected becomes the caller-facing InvalidInput."""
    if task.runner not in job.runners:
        raise RuntimeError(f"runner {task.runner!r} is not available in this worker")
    loop = asyncio.get_running_loop()
    try:
        with observe.timed("runner"):
            return await loop.run_in_executor(
                None, observe.in_context(job.runners.run), task.runner, inputs, params, work_dir,
                reporter.stage(start, end),
            )  # fmt: skip
    except InputRejected as exc:
        raise InvalidInput(str(exc), exc.code) from exc


async def model_result(
    artifacts: RunnerArtifacts, params: Mapping[str, Any], work_dir: Path, reporter: ProgressReporter, start: int,
    *, turntable: bool = False,
) -> StepResult:  # fmt: skip
    """Raw mesh -> deliverables (remesh, textures, formats, thumbnails, and with `turntable` the turntable video),
    and the outputs contract for them."""
    if artifacts.mesh is None:
        raise RuntimeError("the runner produced no mesh")
    loop = asyncio.get_running_loop()
    params = {**params, "_turntable": turntable}
    with observe.timed("deliverables"):
        deliverables: Deliverables = await loop.run_in_executor(
            None, observe.in_context(build_deliverables), artifacts.mesh, params, work_dir, reporter.stage(start, 99)
        )
    if artifacts.mesh.name != SOURCE_MESH:
        await asyncio.to_thread(shutil.copyfile, artifacts.mesh, work_dir / SOURCE_MESH)
    files = [*deliverables.model_files.values(), SOURCE_MESH, deliverables.thumbnail]
    files += [name for group in deliverables.texture_files for name in group.values()]
    files += list(deliverables.thumbnails.values())
    if deliverables.alpha_thumbnail:
        files.append(deliverables.alpha_thumbnail)
    if deliverables.video:
        files.append(deliverables.video)
    outputs: TaskOutputs = {
        "model": deliverables.model_files,
        "textures": deliverables.texture_files,
        "thumbnail": deliverables.thumbnail,
        "alpha_thumbnail": deliverables.alpha_thumbnail,
        "source": SOURCE_MESH,
        "faces": deliverables.faces,
    }
    if deliverables.thumbnails:
        outputs["thumbnails"] = deliverables.thumbnails
    if deliverables.video:
        outputs["video"] = deliverables.video
    return StepResult(outputs, sorted(set(files)))
