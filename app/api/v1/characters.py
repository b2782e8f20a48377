"""Characters on the shared resource mechanism: auto-rigging (`rig`), animations (`animate`) and text-to-motion.

Their outputs are nested under `result` (meshy-api.md §9, §10, §22.8). What can be known at create is checked here:
rigging takes GLB only and at most 300,000 faces (400: remesh first); an animation's rig (and motion) task must be the
caller's and SUCCEEDED (someone else's is a 404) and every action id must be in the library (400 "Invalid action
ID"). Whether the model holds a humanoid pose is known only once the worker has looked at it: that task FAILS with
"Pose estimation failed: ..." and is refunded (Meshy answers that case with a 422 at create).
"""

from __future__ import annotations

from app.api.inputs import MediaInputs
from app.api.resources import CreateContext, Prepared, Resource
from app.api.v1.character_schemas import (
    AnimationRequest,
    AnimationTask,
    MotionTask,
    RiggingRequest,
    RigTask,
    TextToMotionRequest,
)
from app.core.errors import BadRequest
from app.tasks import animations
from app.tasks import service as task_service
from app.tasks.kinds import MODEL_SOURCES
from app.tasks.models import TaskType

MAX_RIG_FACES = 300_000


async def _prepare_rig(ctx: CreateContext, body: RiggingRequest) -> Prepared:
    params = body.params()
    media = MediaInputs()
    parent_id = None
    if body.input_task_id:
        parent = await task_service.resolve_input_task(
            ctx.session, account_id=ctx.principal.account_id, input_task_id=body.input_task_id,
            allowed_types=MODEL_SOURCES,
        )  # fmt: skip
        outputs = parent.outputs or {}
        glb = outputs.get("model", {}).get("glb")
        if not glb:
            raise BadRequest("Invalid input_task_id: the task has no GLB model; rigging takes GLB")
        faces = int(outputs.get("faces") or 0)
        if faces > MAX_RIG_FACES:
            raise BadRequest(
                f"Invalid input_task_id: the model has {faces:,} faces; rigging takes at most {MAX_RIG_FACES:,}. "
                "Remesh it first."
            )
        params |= {"input_task_id": str(parent.id), "_parent_model": {"file": glb, "format": "glb"}}
        parent_id = parent.id
    else:
        url = body.model_url or ""
        if not url.startswith("data:") and not url.lower().split("?")[0].split("#")[0].endswith(".glb"):
            raise BadRequest("Invalid model_url: rigging takes a .glb model")
        fmt = await media.add_model("model_url", url, ctx.state.settings)
        if fmt not in (None, "glb"):
            raise BadRequest(f"Invalid model_url: rigging takes a GLB model, not {fmt.upper()}")
    if body.texture_image_url:
        await media.add("texture_image_url", [body.texture_image_url], ctx.state.settings, many=False)
        stored = [name for name in media.files if name.startswith("texture_image_url")]
        if stored and not stored[0].endswith(".png"):
            raise BadRequest("Invalid texture_image_url: the texture must be a PNG image")
    return Prepared(TaskType.RIG.value, {**params, **media.params()}, parent_id, files=media.files)


async def _prepare_animation(ctx: CreateContext, body: AnimationRequest) -> Prepared:
    rig = await task_service.resolve_input_task(
        ctx.session, account_id=ctx.principal.account_id, input_task_id=body.rig_task_id,
        allowed_types=(TaskType.RIG.value,), field="rig_task_id",
    )  # fmt: skip
    params = body.params() | {"rig_task_id": str(rig.id)}
    actions = body.actions()
    unknown = [a for a in actions if not animations.is_valid_action(a)]
    if unknown:
        raise BadRequest(f"Invalid action ID: {', '.join(map(str, unknown))} (see GET /openapi/v1/animations/library)")
    if body.motion_task_id:
        motion = await task_service.resolve_input_task(
            ctx.session, account_id=ctx.principal.account_id, input_task_id=body.motion_task_id,
            allowed_types=(TaskType.TEXT_TO_MOTION.value,), field="motion_task_id",
        )  # fmt: skip
        data = (motion.outputs or {}).get("motion_data")
        if not data:
            raise BadRequest("Invalid motion_task_id: the task's motion is not available")
        params |= {"motion_task_id": str(motion.id), "_motion": {"task_id": str(motion.id), "file": data}}
    return Prepared(TaskType.ANIMATE.value, params, rig.id, quantity=max(1, len(actions)))


async def _prepare_motion(ctx: CreateContext, body: TextToMotionRequest) -> Prepared:
    return Prepared(TaskType.TEXT_TO_MOTION.value, body.params(), variant=body.mode)


RIGGING = Resource(
    slug="rigging", path="/openapi/v1/rigging", tag="Auto-Rigging", request=RiggingRequest,
    types=(TaskType.RIG.value,), task_model=RigTask, prepare=_prepare_rig,
    summary="Rig a humanoid character (24-bone Mixamo skeleton, skin weights, walking and running clips)",
)  # fmt: skip
ANIMATIONS = Resource(
    slug="animations", path="/openapi/v1/animations", tag="Animation", request=AnimationRequest,
    types=(TaskType.ANIMATE.value,), task_model=AnimationTask, prepare=_prepare_animation,
    summary="Apply library actions (or a text-to-motion clip) to a rigged character (3 credits per action)",
)  # fmt: skip
TEXT_TO_MOTION = Resource(
    slug="text-to-motion", path="/openapi/v1/text-to-motion", tag="Text to Motion", request=TextToMotionRequest,
    types=(TaskType.TEXT_TO_MOTION.value,), task_model=MotionTask, prepare=_prepare_motion,
    summary="A motion clip on the humanoid skeleton from a text prompt (prime: FBX, swift: BVH)",
)  # fmt: skip
RESOURCES = (RIGGING, ANIMATIONS, TEXT_TO_MOTION)
