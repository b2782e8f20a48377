"""Meshy's test mode: the documented dummy key gets canned SUCCEEDED tasks, never touches accounts or credits."""

from __future__ import annotations

import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path

from app.core.assets import AssetStore
from app.tasks.models import Task, TaskStatus, TaskType

ASSETS = Path(__file__).resolve().parent / "testmode_assets"
PREVIEW_ID = uuid.UUID("0199505f-9791-7973-8dca-c77cf716969c")  # the sample id Meshy's test mode was seen to use
REFINE_ID = uuid.UUID("0199505f-9791-7973-8dca-c77cf716969d")
TEST_MODE_BALANCE = 10_000
_CREATED = datetime(2025, 9, 1, 12, 0, 0, tzinfo=UTC)
_EXPIRES = datetime(2125, 3, 10, 0, 0, 0, tzinfo=UTC)  # Meshy's sample URLs expire in 2125 too


def _sample(task_id: uuid.UUID, task_type: str, folder: str, textures: list[dict[str, str]]) -> Task:
    params = {"prompt": "a wooden chair", "art_style": "realistic", "ai_model": "latest", "seed": 1}
    if task_type == TaskType.TEXT_TO_3D_REFINE.value:
        params |= {"texture_prompt": "oak wood", "preview_task_id": str(PREVIEW_ID), "enable_pbr": False}
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


SAMPLES: dict[uuid.UUID, Task] = {
    PREVIEW_ID: _sample(PREVIEW_ID, TaskType.TEXT_TO_3D_PREVIEW.value, "preview", []),
    REFINE_ID: _sample(REFINE_ID, TaskType.TEXT_TO_3D_REFINE.value, "refine", [{"base_color": "texture_0.png"}]),
}


def sample_for_mode(mode: str) -> Task:
    return SAMPLES[REFINE_ID if mode == "refine" else PREVIEW_ID]


def install_assets(store: AssetStore) -> None:
    """Copy the packaged sample files into the asset store, so sample URLs download like any other."""
    for task in SAMPLES.values():
        target = store.task_dir(task.id)
        source = ASSETS / task.outputs["folder"]
        if target.is_dir() and {p.name for p in source.iterdir()} <= {p.name for p in target.iterdir()}:
            continue
        shutil.rmtree(target, ignore_errors=True)  # an older sample set: replace it
        staging = target.with_name(f".{task.id}.{uuid.uuid4().hex[:8]}.tmp")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(source, staging)
        try:
            staging.rename(target)
        except OSError:  # another API process installed them first
            shutil.rmtree(staging, ignore_errors=True)
