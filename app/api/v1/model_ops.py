"""Model operations on the shared resource mechanism: remesh, convert, resize, retexture, text-to-texture,
uv-unwrap and the 3D-print trio (analyze, repair, multi-color).

Each takes a model: `input_task_id` (a SUCCEEDED model task of the caller's; wins) or `model_url` (a public URL,
fetched by the worker through the SSRF guard, or a data URI stored now). The worker reads the file for real; here
only what can be known at once is checked (extension, data URI size and format).
"""

from __future__ import annotations

from typing import Any

from app.api.inputs import MediaInputs
from app.api.resources import CreateContext, Prepared, Resource
from app.api.v1.model_schemas import (
    ConvertRequest,
    PrintAnalyzeRequest,
    PrintMultiColorRequest,
    PrintRepairRequest,
    RemeshRequest,
    ResizeRequest,
    RetextureRequest,
    TextToTextureRequest,
    UvUnwrapRequest,
)
from app.api.v1.schemas import ModelTask
from app.core.errors import BadRequest
from app.tasks import service as task_service
from app.tasks.kinds import MODEL_SOURCES
from app.tasks.models import TaskType

# The formats a model task's outputs are read from, best first.
SOURCE_PREFERENCE = ("glb", "fbx", "obj", "stl")


async def _model(ctx: CreateContext, body: Any, media: MediaInputs, params: dict[str, Any]) -> Any:
    """Resolve the model input into `params` (and `media`); the parent task, or None for a model_url."""
    if getattr(body, "input_task_id", None):
        parent = await task_service.resolve_input_task(
            ctx.session, account_id=ctx.principal.account_id, input_task_id=body.input_task_id,
            allowed_types=MODEL_SOURCES,
        )  # fmt: skip
        files = (parent.outputs or {}).get("model", {})
        fmt = next((f for f in SOURCE_PREFERENCE if files.get(f)), None)
        if fmt is None:
            raise BadRequest("Invalid input_task_id: the task has no model file in GLB, FBX, OBJ or STL")
        params |= {"input_task_id": str(parent.id), "_parent_model": {"file": files[fmt], "format": fmt}}
        return parent
    fmt = await media.add_model("model_url", body.model_url, ctx.state.settings)
    if fmt is not None:
        params["_model_format"] = fmt
    return None


def _operation(task_type: TaskType, request: Any, *, glb_only: bool = False) -> Any:
    async def prepare(ctx: CreateContext, body: Any) -> Prepared:
        params = {"operation": task_type.value, **body.params()}
        media = MediaInputs()
        parent = await _model(ctx, body, media, params)
        source = params.get("_parent_model", {}).get("format") or params.get("_model_format")
        if glb_only and source not in (None, "glb"):
            raise BadRequest(f"Invalid model: {task_type.value} takes a GLB model, not {source.upper()}")
        if glb_only and source is None and body.model_url and not body.model_url.lower().split("?")[0].endswith(".glb"):
            raise BadRequest(f"Invalid model_url: {task_type.value} takes a .glb model")
        if task_type is TaskType.RESIZE:  # from a task the output is GLB; from a file it keeps the file's format
            params["output_format"] = "glb" if parent is not None else source
        if getattr(body, "image_style_url", ""):
            await media.add("image_style_url", [body.image_style_url], ctx.state.settings, many=False)
        return Prepared(task_type.value, {**params, **media.params()}, parent.id if parent else None,
                        files=media.files)  # fmt: skip

    return prepare


def _resource(slug: str, task_type: TaskType, request: Any, tag: str, summary: str, **kwargs: Any) -> Resource:
    return Resource(
        slug=slug, path=f"/openapi/v1/{slug}", tag=tag, request=request, types=(task_type.value,),
        task_model=ModelTask, prepare=_operation(task_type, request, **kwargs), summary=summary,
    )  # fmt: skip


REMESH = _resource("remesh", TaskType.REMESH, RemeshRequest, "Remesh",
                   "Remesh a model to a polycount and topology (default output GLB only)")  # fmt: skip
CONVERT = _resource("convert", TaskType.CONVERT, ConvertRequest, "Convert", "Convert a model to other formats")
RESIZE = _resource("resize", TaskType.RESIZE, ResizeRequest, "Resize", "Scale a model to a real-world size")
RETEXTURE = _resource("retexture", TaskType.RETEXTURE, RetextureRequest, "Retexture",
                      "New textures for a model from a text prompt or a style image (the image wins)")  # fmt: skip
TEXT_TO_TEXTURE = _resource("text-to-texture", TaskType.TEXT_TO_TEXTURE, TextToTextureRequest, "Text to Texture",
                            "Legacy: texture a model from object and style prompts")  # fmt: skip
UV_UNWRAP = _resource("uv-unwrap", TaskType.UV_UNWRAP, UvUnwrapRequest, "UV Unwrap",
                      "A fresh non-overlapping UV atlas for a GLB model", glb_only=True)  # fmt: skip
PRINT_ANALYZE = _resource("print/analyze", TaskType.PRINT_ANALYZE, PrintAnalyzeRequest, "3D Print",
                          "Printability report (free)")  # fmt: skip
PRINT_REPAIR = _resource("print/repair", TaskType.PRINT_REPAIR, PrintRepairRequest, "3D Print",
                         "A watertight, manifold, consistently oriented model")  # fmt: skip
PRINT_MULTI_COLOR = _resource("print/multi-color", TaskType.PRINT_MULTI_COLOR, PrintMultiColorRequest, "3D Print",
                              "A multi-colour 3MF with up to 16 colours from the model's texture")  # fmt: skip
RESOURCES = (REMESH, CONVERT, RESIZE, RETEXTURE, TEXT_TO_TEXTURE, UV_UNWRAP, PRINT_ANALYZE, PRINT_REPAIR,
             PRINT_MULTI_COLOR)  # fmt: skip
