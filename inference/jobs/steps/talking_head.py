"""Talking-head video: the stored portrait and recording through the task's runner, an MP4 under `result`."""

from __future__ import annotations

import asyncio
from pathlib import Path

from app.tasks.models import Task
from inference.jobs.context import InvalidInput, JobContext
from inference.jobs.progress import ProgressReporter
from inference.jobs.steps.common import StepResult, published, run_runner


async def run(job: JobContext, task: Task, work_dir: Path, reporter: ProgressReporter) -> StepResult:
    stored = (task.params or {}).get("_inputs") or {}
    inputs = {}
    for key in ("image", "audio"):
        path = await asyncio.to_thread(job.store.input_path, task.id, str(stored.get(key, "")))
        if path is None:
            raise InvalidInput(f"{key}: the uploaded file is no longer available")
        inputs[key] = path
    out_dir = work_dir / "out"
    artifacts = await run_runner(job, task, inputs, {**task.params, "seed": task.seed}, out_dir, reporter, 1, 99)
    names = published(artifacts.metadata, out_dir, work_dir)
    return StepResult({"result": dict(artifacts.metadata["result"])}, names)
