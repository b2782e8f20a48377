"""The asset sweep deletes expired tasks' files and stale work folders, and nothing else."""

from __future__ import annotations

import os
import time
import uuid
from datetime import timedelta

import pytest

from app.core.assets import AssetStore
from app.core.clock import utcnow
from app.tasks.models import Task
from billing import service as billing_service
from inference.jobs.sweep_assets import sweep_assets
from tests.inference.jobs import job_context

pytestmark = pytest.mark.asyncio


async def test_sweep(settings, db) -> None:  # type: ignore[no-untyped-def]
    store = AssetStore(settings.assets_path)
    async with db() as session, session.begin():
        account = await billing_service.create_account(session, name="s")
        now = utcnow()
        expired, fresh, failed = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        for task_id, status, expires in (
            (expired, "SUCCEEDED", now - timedelta(seconds=1)),
            (fresh, "SUCCEEDED", now + timedelta(days=1)),
            (failed, "FAILED", None),  # files left by a commit that failed after the move
        ):
            session.add(Task(id=task_id, account_id=account.id, type="text-to-3d-preview", status=status,
                             ai_model="latest", runner="procedural", pool="default", params={}, outputs={},
                             expires_at=expires))  # fmt: skip
    unknown = uuid.uuid4()  # e.g. the API's test-mode samples: not in the database, never touched
    for task_id in (expired, fresh, failed, unknown):
        store.task_dir(task_id).mkdir(parents=True)
        (store.task_dir(task_id) / "model.glb").write_bytes(b"glTF")
    old_work = store.root / ".work" / "old"
    new_work = store.root / ".work" / "new"
    old_work.mkdir(parents=True)
    new_work.mkdir()
    past = time.time() - settings.job_timeout_s - 7200
    os.utime(old_work, (past, past))
    job = job_context(settings, db, store)
    assert await sweep_assets(job) == {"tasks": 2, "work": 1, "inputs": 0, "unreferenced": 0}
    assert not store.task_dir(expired).exists() and not store.task_dir(failed).exists()
    assert store.task_dir(fresh).exists() and store.task_dir(unknown).exists()
    assert not old_work.exists() and new_work.exists()


async def test_sweep_removes_inputs_of_finished_and_abandoned_tasks(settings, db) -> None:  # type: ignore[no-untyped-def]
    store = AssetStore(settings.assets_path)
    async with db() as session, session.begin():
        account = await billing_service.create_account(session, name="s")
        pending, done = uuid.uuid4(), uuid.uuid4()
        for task_id, status in ((pending, "PENDING"), (done, "SUCCEEDED")):
            session.add(Task(id=task_id, account_id=account.id, type="image-to-3d", status=status, ai_model="latest",
                             runner="image-inflate", pool="default", params={}, outputs={}))  # fmt: skip
    abandoned, in_flight = uuid.uuid4(), uuid.uuid4()  # no task row: a failed create, or one not yet committed
    for task_id in (pending, done, abandoned, in_flight):
        store.save_input(task_id, "image_url_0.png", b"png")
    past = time.time() - 7200
    os.utime(store.inputs_dir(abandoned), (past, past))
    assert (await sweep_assets(job_context(settings, db, store)))["inputs"] == 2
    assert store.input_path(pending, "image_url_0.png") is not None
    assert store.input_path(in_flight, "image_url_0.png") is not None
    assert not store.inputs_dir(done).exists() and not store.inputs_dir(abandoned).exists()
