"""Meshy's test mode: the documented dummy key gets canned SUCCEEDED tasks, never touches accounts or credits."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path

from app.core.assets import AssetStore
from app.tasks.models import Task, TaskStatus, TaskType

ASSETS = Path(__file__).resolve().parent / "testmode_assets"
PREVIEW_ID = uuid.UUID("0199505f-9791-7973-8dca-c77cf716969c")  # the sample id Meshy's test mode was seen to use
REFINE_ID = uuid.UUID("0199505f-9791-7973-8dca-c77cf716969d")
IMAGE_TO_3D_ID = uuid.UUID("0199505f-9791-7973-8dca-c77cf71696a0")
MULTI_IMAGE_TO_3D_ID = uuid.UUID("0199505f-9791-7973-8dca-c77cf71696a1")
TEXT_TO_IMAGE_ID = uuid.UUID("0199505f-9791-7973-8dca-c77cf71696a2")
IMAGE_TO_IMAGE_ID = uuid.UUID("0199505f-9791-7973-8dca-c77cf71696a3")
TEST_MODE_BALANCE = 10_000
_CREATED = datetime(2025, 9, 1, 12, 0, 0, tzinfo=UTC)
_EXPIRES = datetime(2125, 3, 10, 0, 0, 0, tzinfo=UTC)  # Meshy's sample URLs expire in 2125 too


def _sample(task_id: uuid.UUID, task_type: str, folder: str, textures: list[dict[str, str]]) -> Task:
    params = {"prompt": "a wooden chair", "art_style": "realistic", "ai_model": "latest", "seed": 1}
    if task_type == TaskType.TEXT_TO_3D_REFINE.value:
        params |= {"texture_prompt": "oak wood", "preview_task_id": str(PREVIEW_ID), "enable_pbr": False}
    if task_type in (TaskType.IMAGE_TO_3D.value, TaskType.MULTI_IMAGE_TO_3D.value):
        field = "image_url" if task_type == TaskType.IMAGE_TO_3D.value else "image_urls"
        url = "https://example.com/wooden-chair.png"
        params = {"ai_model": "latest", field: url if field == "image_url" else [url], "should_texture": True,
                  "enable_pbr": False, "texture_prompt": "", "seed": 1}  # fmt: skip
    return Task(
        id=task_id,
        type=task_type,
        status=TaskStatus.SUCCEEDED.value,
        progress=100,
        ai_model="latest",
        params=params,
        seed=1,
        consumed_credits=0,
        attempts=1,
        outputs={
            "model": {
                "glb": "model.glb",
                "fbx": "model.fbx",
                "obj": "model.obj",
                "mtl": "model.mtl",
                "stl": "model.stl",
                "usdz": "model.usdz",
            },  # fmt: skip
            "textures": textures,
            "thumbnail": "preview.png",
            "folder": folder,
        },
        task_error=None,
        created_at=_CREATED,
        started_at=_CREATED,
        finished_at=_CREATED,
        expires_at=_EXPIRES,
    )


def _image_sample(task_id: uuid.UUID, task_type: str) -> Task:
    params = {"ai_model": "nano-banana", "prompt": "a wooden chair", "generate_multi_view": False,
              "aspect_ratio": "1:1", "seed": 1}  # fmt: skip
    if task_type == TaskType.IMAGE_TO_IMAGE.value:
        params["reference_image_urls"] = ["https://example.com/chair.png"]
    return Task(
        id=task_id, type=task_type, status=TaskStatus.SUCCEEDED.value, progress=100, ai_model="nano-banana",
        params=params, seed=1, consumed_credits=0, attempts=1,
        outputs={"images": ["image_0.png"], "folder": "image"}, task_error=None,
        created_at=_CREATED, started_at=_CREATED, finished_at=_CREATED, expires_at=_EXPIRES,
    )  # fmt: skip


_TEXTURED = [{"base_color": "texture_0.png"}]
SAMPLES: dict[uuid.UUID, Task] = {
    PREVIEW_ID: _sample(PREVIEW_ID, TaskType.TEXT_TO_3D_PREVIEW.value, "preview", []),
    REFINE_ID: _sample(REFINE_ID, TaskType.TEXT_TO_3D_REFINE.value, "refine", _TEXTURED),
    IMAGE_TO_3D_ID: _sample(IMAGE_TO_3D_ID, TaskType.IMAGE_TO_3D.value, "refine", _TEXTURED),
    MULTI_IMAGE_TO_3D_ID: _sample(MULTI_IMAGE_TO_3D_ID, TaskType.MULTI_IMAGE_TO_3D.value, "refine", _TEXTURED),
    TEXT_TO_IMAGE_ID: _image_sample(TEXT_TO_IMAGE_ID, TaskType.TEXT_TO_IMAGE.value),
    IMAGE_TO_IMAGE_ID: _image_sample(IMAGE_TO_IMAGE_ID, TaskType.IMAGE_TO_IMAGE.value),
}
_BY_RESOURCE = {
    "image-to-3d": IMAGE_TO_3D_ID,
    "multi-image-to-3d": MULTI_IMAGE_TO_3D_ID,
    "text-to-image": TEXT_TO_IMAGE_ID,
    "image-to-image": IMAGE_TO_IMAGE_ID,
}
# One canned task per model operation, on the refine sample's files (ids ...96b0 upwards).
_OPERATIONS = {
    "remesh": TaskType.REMESH, "convert": TaskType.CONVERT, "resize": TaskType.RESIZE,
    "retexture": TaskType.RETEXTURE, "text-to-texture": TaskType.TEXT_TO_TEXTURE, "uv-unwrap": TaskType.UV_UNWRAP,
    "print/analyze": TaskType.PRINT_ANALYZE, "print/repair": TaskType.PRINT_REPAIR,
    "print/multi-color": TaskType.PRINT_MULTI_COLOR,
    "mesh-segmentation": TaskType.MESH_SEGMENTATION, "part-completion": TaskType.PART_COMPLETION,
}  # fmt: skip
_PRINTABILITY = {
    "_version": 1, "status": "healthy", "issue_count": 0, "error_count": 0, "warning_count": 0,
    "metrics": {"is_watertight": True, "volume": 0.12, "non_manifold_edges": 0, "degenerate_faces": 0, "holes": 0},
    "evaluated_at": 1756728000000,
}  # fmt: skip
for _index, (_slug, _type) in enumerate(_OPERATIONS.items()):
    _id = uuid.UUID(int=uuid.UUID("0199505f-9791-7973-8dca-c77cf71696b0").int + _index)
    _task = _sample(_id, _type.value, "refine", _TEXTURED)
    _task.params = {"model_url": "https://example.com/chair.glb"}
    if _type is TaskType.PRINT_ANALYZE:
        _task.outputs = {"model": {}, "textures": [], "printability": _PRINTABILITY, "folder": "refine"}
    if _type in (TaskType.MESH_SEGMENTATION, TaskType.PART_COMPLETION):  # one part: the sample chair, whole
        _task.outputs = {
            **_task.outputs,
            "model": {"glb": "model.glb"},
            "parts": {"num_parts": 1, "files": ["model.glb"]},
        }
    SAMPLES[_id] = _task
    _BY_RESOURCE[_slug] = _id


# Characters (ids ...96c0 upwards): results nested under `result`. The files are real outputs of the auto-rig and
# motion-library runners: the reference character (textured, A-pose) simplified to 3.9k faces with vertex colours,
# rigged at 1.75 m with its walking and running clips, and a 4 s swift text-to-motion ("a person waves").
RIG_ID = uuid.UUID("0199505f-9791-7973-8dca-c77cf71696c0")
ANIMATE_ID = uuid.UUID("0199505f-9791-7973-8dca-c77cf71696c1")
TEXT_TO_MOTION_ID = uuid.UUID("0199505f-9791-7973-8dca-c77cf71696c2")
_BASIC = {
    f"{label}_{role}_url": f"Animation_{label.title()}_withSkin{suffix}"
    for label in ("walking", "running")
    for role, suffix in (("glb", ".glb"), ("fbx", ".fbx"), ("armature_glb", "_armature.glb"))
}
_CHARACTER_RESULTS: dict[uuid.UUID, tuple[str, dict]] = {
    RIG_ID: (TaskType.RIG.value, {"rigged_character_fbx_url": "Character_output.fbx",
                                  "rigged_character_glb_url": "Character_output.glb", "basic_animations": _BASIC}),
    ANIMATE_ID: (TaskType.ANIMATE.value, {"animation_glb_url": "Animation_Walking_withSkin.glb",
                                          "animation_fbx_url": "Animation_Walking_withSkin.fbx"}),
    TEXT_TO_MOTION_ID: (TaskType.TEXT_TO_MOTION.value, {"motion_url": "motion.bvh", "motion_format": "bvh",
                                                        "duration_ms": 4000, "mode": "swift"}),
}  # fmt: skip
for _id, (_type, _result) in _CHARACTER_RESULTS.items():
    SAMPLES[_id] = Task(
        id=_id, type=_type, status=TaskStatus.SUCCEEDED.value, progress=100, ai_model="latest", params={}, seed=1,
        consumed_credits=0, attempts=1, outputs={"result": _result, "folder": "character"}, task_error=None,
        created_at=_CREATED, started_at=_CREATED, finished_at=_CREATED, expires_at=_EXPIRES,
    )  # fmt: skip
_BY_RESOURCE |= {"rigging": RIG_ID, "animations": ANIMATE_ID, "text-to-motion": TEXT_TO_MOTION_ID}

# Video: a real 2 s output of the talking-head runner (the test portrait, "happy", cropped to the face).
TALKING_HEAD_ID = uuid.UUID("0199505f-9791-7973-8dca-c77cf71696d0")
SAMPLES[TALKING_HEAD_ID] = Task(
    id=TALKING_HEAD_ID, type=TaskType.TALKING_HEAD.value, status=TaskStatus.SUCCEEDED.value, progress=100,
    ai_model="latest", params={"emotion": "happy", "ref_scale": 3.0, "emo_scale": 6.0, "crop": True}, seed=1,
    consumed_credits=0, attempts=1, task_error=None,
    outputs={"result": {"video_url": "talking_head.mp4", "thumbnail_url": "preview.png", "duration_ms": 2000, "fps": 25,
                        "width": 512, "height": 512}, "folder": "video"},
    created_at=_CREATED, started_at=_CREATED, finished_at=_CREATED, expires_at=_EXPIRES,
)  # fmt: skip
_BY_RESOURCE["talking-head"] = TALKING_HEAD_ID


def sample_for_mode(mode: str) -> Task:
    return SAMPLES[REFINE_ID if mode == "refine" else PREVIEW_ID]


def sample_for(resource: str, body: object) -> Task:
    """The canned task a test-mode create of `resource` answers with."""
    if resource == "text-to-3d":
        return sample_for_mode(getattr(body, "mode", "preview"))
    return SAMPLES[_BY_RESOURCE[resource]]


def _link_or_copy(src: str, dst: str) -> None:
    """A hard link where the store shares the package's filesystem (the samples are never written in place)."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def install_assets(store: AssetStore) -> None:
    """Publish the packaged sample files into the asset store (the local folder or the bucket), so sample URLs
    download like any other; a sample whose files are all there already is left alone."""
    for task in SAMPLES.values():
        source = ASSETS / task.outputs["folder"]
        names = sorted(p.name for p in source.iterdir() if p.is_file())
        if set(names) <= set(store.files_of(task.id) or ()):
            continue
        work = store.root / ".work"
        work.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f"{task.id}-", dir=work))
        try:
            for name in names:
                _link_or_copy(str(source / name), str(staging / name))
            try:
                store.publish(task.id, staging, names)  # an older sample set is replaced whole
            except OSError:  # another API process installed them first
                continue
        finally:
            shutil.rmtree(staging, ignore_errors=True)
