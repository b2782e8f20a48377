"""Only the attempt that owns a task can publish its files, and a publish replaces the directory whole."""

from __future__ import annotations

import asyncio
import threading
import uuid
from pathlib import Path

import pytest

from app.core.assets import AssetStore, Staged
from app.tasks import service as task_service
from app.tasks.models import Task
from inference.jobs.generate_model import _finish
from tests.conftest import Api, Caller
from tests.inference.jobs import job_context

OUTPUTS = {"model": {"glb": "model.glb"}, "textures": [], "thumbnail": None, "alpha_thumbnail": None}


def work_dir(tmp_path: Path, name: str, content: bytes) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "model.glb").write_bytes(content)
    return folder


async def create(api: Api, caller: Caller) -> uuid.UUID:
    body = {"mode": "preview", "prompt": "a cup", "seed": 1}
    answer = await api.client.post("/openapi/v2/text-to-3d", json=body, headers=caller.headers)
    return uuid.UUID(answer.json()["result"])


async def claim(db, task_id: uuid.UUID) -> Task:  # type: ignore[no-untyped-def]
    async with db() as session, session.begin():
        # heartbeat_stale_s < 0: every heartbeat counts as stale, so this claim takes the task over.
        task = await task_service.claim(session, task_id=task_id, job_timeout_s=60, heartbeat_stale_s=-1)
    assert task is not None
    return task


@pytest.mark.asyncio
async def test_a_zombie_attempt_cannot_publish(api: Api, caller: Caller, settings, db, tmp_path) -> None:  # type: ignore[no-untyped-def]
    task_id = await create(api, caller)
    store = AssetStore(settings.assets_path)
    job = job_context(settings, db, store)
    zombie = await claim(db, task_id)
    owner = await claim(db, task_id)  # the reaper's view: the first worker went silent, another took over
    assert (zombie.attempts, owner.attempts) == (1, 2)

    assert not await _finish(job, zombie, OUTPUTS, work_dir(tmp_path, "z1", b"zombie"), ["model.glb"])
    assert not store.task_dir(task_id).exists()

    store.task_dir(task_id).mkdir(parents=True)
    (store.task_dir(task_id) / "left-by-a-failed-commit.obj").write_bytes(b"old")
    assert await _finish(job, owner, OUTPUTS, work_dir(tmp_path, "owner", b"winner"), ["model.glb"])
    assert sorted(p.name for p in store.task_dir(task_id).iterdir()) == ["model.glb"]

    assert not await _finish(job, zombie, OUTPUTS, work_dir(tmp_path, "z2", b"zombie"), ["model.glb"])
    assert (store.task_dir(task_id) / "model.glb").read_bytes() == b"winner"
    task = (await api.client.get(f"/openapi/v2/text-to-3d/{task_id}", headers=caller.headers)).json()
    assert task["status"] == "SUCCEEDED"


@pytest.mark.asyncio
async def test_a_deleted_task_gets_no_files(api: Api, caller: Caller, settings, db, tmp_path) -> None:  # type: ignore[no-untyped-def]
    task_id = await create(api, caller)
    store = AssetStore(settings.assets_path)
    job = job_context(settings, db, store)
    running = await claim(db, task_id)
    assert (await api.client.delete(f"/openapi/v2/text-to-3d/{task_id}", headers=caller.headers)).status_code == 200
    assert not await _finish(job, running, OUTPUTS, work_dir(tmp_path, "w", b"late"), ["model.glb"])
    assert not store.task_dir(task_id).exists()


def test_publish_refuses_unsafe_names(tmp_path: Path) -> None:
    store = AssetStore(tmp_path / "assets")
    source = work_dir(tmp_path, "w", b"x")
    with pytest.raises(ValueError, match="unsafe asset name"):
        store.publish(uuid.uuid4(), source, ["../escape.glb"])


@pytest.mark.asyncio
async def test_a_commit_that_fails_after_the_move_leaves_no_files(
    api: Api, caller: Caller, settings, db, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import text

    task_id = await create(api, caller)
    async with db() as session, session.begin():  # a real failure at COMMIT: a deferred constraint trigger
        await session.execute(text(
            "CREATE FUNCTION refuse_success() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.status = 'SUCCEEDED' THEN RAISE EXCEPTION 'commit refused'; END IF; RETURN NEW; END $$"
        ))  # fmt: skip
        await session.execute(text(
            "CREATE CONSTRAINT TRIGGER refuse_success AFTER UPDATE ON tasks DEFERRABLE INITIALLY DEFERRED "
            "FOR EACH ROW EXECUTE FUNCTION refuse_success()"
        ))  # fmt: skip
    store = AssetStore(settings.assets_path)
    job = job_context(settings, db, store)
    owner = await claim(db, task_id)
    with pytest.raises(Exception, match="commit refused"):
        await _finish(job, owner, OUTPUTS, work_dir(tmp_path, "w", b"x"), ["model.glb"])
    assert not store.task_dir(task_id).exists()
    task = (await api.client.get(f"/openapi/v2/text-to-3d/{task_id}", headers=caller.headers)).json()
    assert task["status"] == "IN_PROGRESS"


class SlowStore(AssetStore):
    """Commits only when released, so a test can cancel the job in the middle of the move."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.entered = threading.Event()
        self.release = threading.Event()

    def commit(self, staged: Staged) -> None:
        self.entered.set()
        assert self.release.wait(30)
        super().commit(staged)


@pytest.mark.asyncio
async def test_a_cancel_during_the_move_waits_for_it(api: Api, caller: Caller, settings, db, tmp_path) -> None:  # type: ignore[no-untyped-def]
    task_id = await create(api, caller)
    store = SlowStore(settings.assets_path)
    job = job_context(settings, db, store)
    owner = await claim(db, task_id)
    finishing = asyncio.create_task(_finish(job, owner, OUTPUTS, work_dir(tmp_path, "w", b"done"), ["model.glb"]))
    assert await asyncio.to_thread(store.entered.wait, 30)
    finishing.cancel()  # arq's timeout or a shutdown, while the files are moving and the row is locked
    await asyncio.sleep(0.2)
    assert not finishing.done(), "the cancel must wait for the move and the commit"
    store.release.set()
    with pytest.raises(asyncio.CancelledError):
        await finishing
    assert (store.task_dir(task_id) / "model.glb").read_bytes() == b"done"
    task = (await api.client.get(f"/openapi/v2/text-to-3d/{task_id}", headers=caller.headers)).json()
    assert task["status"] == "SUCCEEDED"
