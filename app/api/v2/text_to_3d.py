"""Meshy Text to 3D v2 (the one `/openapi/v2` resource): preview and refine share one POST, selected by `mode`."""

from __future__ import annotations

from typing import Any

from app.api.inputs import MediaInputs
from app.api.resources import CreateContext, Prepared, Resource
from app.api.retrieval import Retrieve
from app.api.v2.schemas import TextTo3DPreview, TextTo3DRefine, TextTo3DRequest, TextTo3DTask
from app.core.ids import parse_id
from app.tasks import service as task_service
from app.tasks.models import TaskType

TYPES = task_service.TEXT_TO_3D_TYPES


async def prepare(ctx: CreateContext, body: TextTo3DPreview | TextTo3DRefine) -> Prepared:
    if isinstance(body, TextTo3DPreview):
        retrieve = None if body.retrieve_min_score is None else Retrieve(body.retrieve_min_score, text=body.prompt)
        return Prepared(TaskType.TEXT_TO_3D_PREVIEW.value, body.to_params(), retrieve=retrieve)
    preview = await task_service.resolve_preview(
        ctx.session, account_id=ctx.principal.account_id, preview_id=parse_id(body.preview_task_id)
    )
    params: dict[str, Any] = body.to_params(preview.params)
    media = MediaInputs()
    if body.texture_image_url:
        await media.add("texture_image_url", [body.texture_image_url], ctx.state.settings, many=False)
    return Prepared(TaskType.TEXT_TO_3D_REFINE.value, {**params, **media.params()}, preview.id, files=media.files)


TEXT_TO_3D = Resource(
    slug="text-to-3d",
    path="/openapi/v2/text-to-3d",
    tag="Text to 3D",
    request=TextTo3DRequest,
    types=TYPES,
    task_model=TextTo3DTask,
    prepare=prepare,
    summary='Create a preview (`mode: "preview"`) or refine (`mode: "refine"`) task',
)
