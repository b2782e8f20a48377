"""The model operations' runner: reads the caller's model once and hands it to the operation's pipeline function.

Operations (params["operation"]): remesh, convert, resize (inference/pipeline/model_ops.py), retexture,
text-to-texture, uv-unwrap (inference/pipeline/retexture.py), print-analyze, print-repair, print-multi-color
(inference/pipeline/printing.py). Mesh libraries on the CPU; nothing here is a learned model.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from inference.runners.base import ProgressCallback, RunnerArtifacts


class MeshOpsRunner:
    name = "mesh-ops"

    def run(
        self, inputs: Mapping[str, Any], params: Mapping[str, Any], out_dir: Path, progress: ProgressCallback
    ) -> RunnerArtifacts:
        from inference.pipeline import model_ops, printing, retexture
        from inference.pipeline.model_input import load_model

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        progress(0.0)
        model = load_model(Path(inputs["model"]), inputs["source_format"])
        progress(0.1)

        def stage(fraction: float) -> None:
            progress(0.1 + 0.9 * max(0.0, min(1.0, fraction)))

        operation = params["operation"]
        if operation == "remesh":
            result = model_ops.remesh(model, params, out_dir, stage)
        elif operation == "convert":
            result = model_ops.convert(model, params, out_dir, stage)
        elif operation == "resize":
            result = model_ops.resize(model, params, out_dir, stage)
        elif operation == "retexture":
            result = retexture.retexture(model, params, out_dir, stage, style_image=inputs.get("style_image"))
        elif operation == "text-to-texture":
            result = retexture.text_to_texture(model, params, out_dir, stage)
        elif operation == "uv-unwrap":
            result = retexture.uv_unwrap(model, params, out_dir, stage)
        elif operation == "print-analyze":
            result = printing.analyze(model, out_dir, stage)
        elif operation == "print-repair":
            result = printing.repair(model, out_dir, stage)
        elif operation == "print-multi-color":
            result = printing.multi_color(model, params, out_dir, stage)
        elif operation == "mesh-segmentation":
            from inference.pipeline.segmentation import segment

            result = segment(model, params, out_dir, stage)
        elif operation == "part-completion":
            from inference.pipeline.part_completion import complete_parts, read_parts

            parts = read_parts(Path(inputs["model"]), inputs["source_format"], model=model)  # one per glTF node
            result = complete_parts(parts, params, out_dir, stage)
        else:
            raise ValueError(f"unknown model operation {operation!r}")
        progress(1.0)
        return RunnerArtifacts(metadata={"result": result, "notes": list(model.notes)})
