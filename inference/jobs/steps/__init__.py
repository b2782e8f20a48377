"""One step module per kind of task: what the job runs between claiming a task and publishing its files.

`STEPS[task.type]` is an async `(job, task, work_dir, reporter) -> StepResult`. Claiming, progress, fencing,
publishing, refunds and the reaper stay in `inference.jobs.generate_model`, shared by every step.
"""

from __future__ import annotations

from inference.jobs.steps import characters, image_to_3d, images, model_ops, talking_head, text_to_3d
from inference.jobs.steps.common import Step, StepResult

STEPS: dict[str, Step] = {
    "text-to-3d-preview": text_to_3d.run,
    "text-to-3d-refine": text_to_3d.run,
    "image-to-3d": image_to_3d.run,
    "multi-image-to-3d": image_to_3d.run,
    "text-to-image": images.run,
    "image-to-image": images.run,
    "rig": characters.rig,
    "animate": characters.animate,
    "text-to-motion": characters.text_to_motion,
    "talking-head": talking_head.run,
    **{
        t: model_ops.run
        for t in (
            "remesh",
            "convert",
            "resize",
            "retexture",
            "text-to-texture",
            "uv-unwrap",
            "print-analyze",
            "print-repair",
            "print-multi-color",
            "mesh-segmentation",
            "part-completion",
        )
    },  # fmt: skip
}

__all__ = ["STEPS", "Step", "StepResult"]
