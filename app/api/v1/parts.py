"""MeshFoundry's part resources on the shared mechanism: mesh segmentation and part completion.

Both take a model like the model operations do (`input_task_id` wins over `model_url`); part completion takes the
parts of a SUCCEEDED mesh-segmentation task, or a GLB whose nodes are the parts. Both count toward the queue limit.
"""

from __future__ import annotations

from typing import Any

from app.api.inputs import MediaInputs
from app.api.resources import CreateContext, Prepared, Resource
from app.api.v1.model_ops import _model
from app.api.v1.part_schemas import MeshSegmentationRequest, PartCompletionRequest
from app.api.v1.schemas import ModelTask
from app.core.errors import BadRequest
from app.tasks import service as task_service
from app.tasks.models import TaskType


async def _prepare_segmentation(ctx: CreateContext, body: MeshSegmentationRequest) -> Prepared:
    params: dict[str, Any] = {"operation": TaskType.MESH_SEGMENTATION.value, **body.params()}
    media = MediaInputs()
    parent = await _model(ctx, body, media, params)
    return Prepared(TaskType.MESH_SEGMENTATION.value, {**params, **media.params()}, parent.id if parent else None,
                    files=media.files)  # fmt: skip


async def _prepare_completion(ctx: CreateContext, body: PartCompletionRequest) -> Prepared:
    params: dict[str, Any] = {"operation": TaskType.PART_COMPLETION.value, **body.params()}
    media = MediaInputs()
    if body.input_task_id:
        parent = await task_service.resolve_input_task(
            ctx.session, account_id=ctx.principal.account_id, input_task_id=body.input_task_id,
            allowed_types=(TaskType.MESH_SEGMENTATION.value,),
        )  # fmt: skip
        glb = (parent.outputs or {}).get("model", {}).get("glb")
        if not glb:
            raise BadRequest("Invalid input_task_id: the segmentation task has no GLB")
        params |= {"input_task_id": str(parent.id), "_parent_model": {"file": glb, "format": "glb"}}
        return Prepared(TaskType.PART_COMPLETION.value, params, parent.id)
    url = body.model_url or ""
    if not url.startswith("data:") and not url.lower().split("?")[0].split("#")[0].endswith(".glb"):
        raise BadRequest("Invalid model_url: part completion takes a .glb model whose nodes are the parts")
    fmt = await media.add_model("model_url", url, ctx.state.settings)
    if fmt not in (None, "glb"):
        raise BadRequest(f"Invalid model_url: part completion takes a GLB model, not {fmt.upper()}")
    params["_model_format"] = "glb"
    return Prepared(TaskType.PART_COMPLETION.value, {**params, **media.params()}, files=media.files)


MESH_SEGMENTATION = Resource(
    slug="mesh-segmentation", path="/openapi/v1/mesh-segmentation", tag="Parts", request=MeshSegmentationRequest,
    types=(TaskType.MESH_SEGMENTATION.value,), task_model=ModelTask, prepare=_prepare_segmentation,
    summary="MeshFoundry: cut a model into parts (a GLB with one node per part, per-face labels, per-part GLBs)",
)  # fmt: skip
PART_COMPLETION = Resource(
    slug="part-completion", path="/openapi/v1/part-completion", tag="Parts", request=PartCompletionRequest,
    types=(TaskType.PART_COMPLETION.value,), task_model=ModelTask, prepare=_prepare_completion,
    summary="MeshFoundry: make each part of a multi-part model whole (closed, watertight)",
)  # fmt: skip
RESOURCES = (MESH_SEGMENTATION, PART_COMPLETION)
