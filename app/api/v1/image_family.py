"""The image family on the shared resource mechanism: Image to 3D, Multi-Image to 3D, Text to Image, Image to Image.

Chains work as Meshy documents them: a text-to-image or image-to-image task feeds image-to-3d (exactly one image)
or multi-image-to-3d (1-4 images, e.g. a multi-view set) through `input_task_id`, which wins over URLs.
"""

from __future__ import annotations

import asyncio

from app.api.inputs import MediaInputs
from app.api.resources import CreateContext, Prepared, Resource
from app.api.retrieval import Retrieve
from app.api.v1.schemas import (
    ImageTask,
    ImageTo3DRequest,
    ImageToImageRequest,
    ModelTask,
    MultiImageTo3DRequest,
    TextToImageRequest,
)
from app.core.errors import BadRequest
from app.tasks import service as task_service
from app.tasks.models import Task, TaskType

IMAGE_TYPES = (TaskType.TEXT_TO_IMAGE.value, TaskType.IMAGE_TO_IMAGE.value)


async def _input_images(ctx: CreateContext, input_task_id: str, most: int) -> Task:
    task = await task_service.resolve_input_task(
        ctx.session, account_id=ctx.principal.account_id, input_task_id=input_task_id, allowed_types=IMAGE_TYPES
    )
    count = len((task.outputs or {}).get("images", []))
    if not 1 <= count <= most:
        wanted = "exactly one image" if most == 1 else f"between 1 and {most} images"
        raise BadRequest(f"Invalid input_task_id: the task has {count} images; this resource needs {wanted}")
    return task


async def _model_from_images(
    ctx: CreateContext, body: ImageTo3DRequest | MultiImageTo3DRequest, task_type: str, field: str, most: int
) -> Prepared:
    params = body.model_params()
    media = MediaInputs()
    parent = None
    if body.input_task_id:
        parent = await _input_images(ctx, body.input_task_id, most)
        params |= {"input_task_id": str(parent.id), "_parent_images": list(parent.outputs["images"])}
    else:
        urls = [body.image_url] if isinstance(body, ImageTo3DRequest) else list(body.image_urls or [])
        await media.add(field, urls, ctx.state.settings, many=field == "image_urls")
    if body.texture_image_url:
        await media.add("texture_image_url", [body.texture_image_url], ctx.state.settings, many=False)
    retrieve = None
    if isinstance(body, ImageTo3DRequest) and body.retrieve_min_score is not None:
        retrieve = await _retrieve_image(ctx, body, media, parent)
    return Prepared(
        task_type, {**params, **media.params()}, parent_id=parent.id if parent else None,
        variant="textured" if body.should_texture else None, files=media.files, retrieve=retrieve,
    )  # fmt: skip


async def _retrieve_image(
    ctx: CreateContext, body: ImageTo3DRequest, media: MediaInputs, parent: Task | None
) -> Retrieve:
    """Search by the input image: the parent task's image, the inline one, or the URL (fetched SSRF-safely)."""
    assert body.retrieve_min_score is not None
    if parent is not None:
        path = await asyncio.to_thread(ctx.state.store.path_of, parent.id, parent.outputs["images"][0])
        content = await asyncio.to_thread(path.read_bytes) if path is not None else None
        return Retrieve(body.retrieve_min_score, image=content)
    ref = media.refs["image_url"][0]
    if "file" in ref:
        return Retrieve(body.retrieve_min_score, image=media.files[ref["file"]])
    return Retrieve(body.retrieve_min_score, image_url=ref["url"])


async def prepare_image_to_3d(ctx: CreateContext, body: ImageTo3DRequest) -> Prepared:
    return await _model_from_images(ctx, body, TaskType.IMAGE_TO_3D.value, "image_url", 1)


async def prepare_multi_image_to_3d(ctx: CreateContext, body: MultiImageTo3DRequest) -> Prepared:
    return await _model_from_images(ctx, body, TaskType.MULTI_IMAGE_TO_3D.value, "image_urls", 4)


async def prepare_text_to_image(ctx: CreateContext, body: TextToImageRequest) -> Prepared:
    return Prepared(TaskType.TEXT_TO_IMAGE.value, body.image_params())


async def prepare_image_to_image(ctx: CreateContext, body: ImageToImageRequest) -> Prepared:
    params = body.image_params()
    if body.input_task_id:
        parent = await _input_images(ctx, body.input_task_id, 5)
        params |= {"input_task_id": str(parent.id), "_parent_images": list(parent.outputs["images"])}
        return Prepared(TaskType.IMAGE_TO_IMAGE.value, params, parent.id)
    media = MediaInputs()
    await media.add("reference_image_urls", list(body.reference_image_urls or []), ctx.state.settings, many=True)
    return Prepared(TaskType.IMAGE_TO_IMAGE.value, {**params, **media.params()}, files=media.files)


IMAGE_TO_3D = Resource(
    slug="image-to-3d", path="/openapi/v1/image-to-3d", tag="Image to 3D", request=ImageTo3DRequest,
    types=(TaskType.IMAGE_TO_3D.value,), task_model=ModelTask, prepare=prepare_image_to_3d,
    summary="Create an Image to 3D task from one picture (URL, data URI or input_task_id)",
)  # fmt: skip
MULTI_IMAGE_TO_3D = Resource(
    slug="multi-image-to-3d", path="/openapi/v1/multi-image-to-3d", tag="Multi-Image to 3D",
    request=MultiImageTo3DRequest, types=(TaskType.MULTI_IMAGE_TO_3D.value,), task_model=ModelTask,
    prepare=prepare_multi_image_to_3d, summary="Create a Multi-Image to 3D task from 1-4 views (front first)",
)  # fmt: skip
TEXT_TO_IMAGE = Resource(
    slug="text-to-image", path="/openapi/v1/text-to-image", tag="Text to Image", request=TextToImageRequest,
    types=(TaskType.TEXT_TO_IMAGE.value,), task_model=ImageTask, prepare=prepare_text_to_image,
    summary="Create a Text to Image task (one image, or a 3-view set with generate_multi_view)",
)  # fmt: skip
IMAGE_TO_IMAGE = Resource(
    slug="image-to-image", path="/openapi/v1/image-to-image", tag="Image to Image", request=ImageToImageRequest,
    types=(TaskType.IMAGE_TO_IMAGE.value,), task_model=ImageTask, prepare=prepare_image_to_image,
    summary="Create an Image to Image task from 1-5 reference images",
)  # fmt: skip
RESOURCES = (IMAGE_TO_3D, MULTI_IMAGE_TO_3D, TEXT_TO_IMAGE, IMAGE_TO_IMAGE)
