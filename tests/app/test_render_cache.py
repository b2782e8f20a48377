"""GET renders a task once per row version: the same bytes from the cache until the row changes (its `xmin`), then
the new state with freshly signed URLs; and the cached object is exactly what `render_task` gives for the ORM row."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

import app.tasks.render as render_module
from app.api.render import AssetLinks, render_task
from app.core.clock import to_ms
from app.tasks.models import Task
from tests.conftest import Api, Caller, add_succeeded_task

pytestmark = pytest.mark.asyncio

URL = "/openapi/v2/text-to-3d"
OUTPUTS = {
    "model": {"glb": "model.glb", "fbx": "model.fbx"},
    "textures": [{"base_color": "texture_0.png"}],
    "thumbnail": "preview.png",
}


class CountingRender:
    """Stands in for `render_task` inside the render cache: how many times a task object was really rendered."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        self.calls += 1
        return render_task(*args, **kwargs)


def _entries_for(api: Api, task_id: uuid.UUID) -> list[tuple[Any, ...]]:
    return [key for key in api.app.state.mf.renders._entries if key[0] == task_id]  # type: ignore[attr-defined]


async def _orm_task(db, task_id: uuid.UUID) -> Task:  # type: ignore[no-untyped-def]
    async with db() as session:
        task = await session.get(Task, task_id)
        assert task is not None
        return task


async def test_a_row_version_is_rendered_once(api: Api, caller: Caller, db, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    counting = CountingRender()
    monkeypatch.setattr(render_module, "render_task", counting)
    task_id = uuid.UUID(await add_succeeded_task(db, caller, "text-to-3d-preview", OUTPUTS, runner="procedural"))

    first = await api.client.get(f"{URL}/{task_id}", headers=caller.headers)
    second = await api.client.get(f"{URL}/{task_id}", headers=caller.headers)
    assert first.status_code == second.status_code == 200, first.text
    assert first.headers["content-type"] == "application/json"
    assert first.content == second.content  # byte-identical
    assert counting.calls == 1  # the second came from the cache
    assert len(_entries_for(api, task_id)) == 1

    # The list renders the same object from the same entry.
    listed = await api.client.get(URL, headers=caller.headers)
    assert listed.status_code == 200
    assert listed.content == b"[" + first.content + b"]"
    assert counting.calls == 1 and len(_entries_for(api, task_id)) == 1

    # What the cache serves is exactly what render_task gives for the ORM row (same keys, order and values).
    state = api.app.state.mf  # type: ignore[attr-defined]
    links = AssetLinks(signer=state.signer, base_url=f"{api.base_url}/")
    expected = render_task(await _orm_task(db, task_id), 0, links)
    body = first.json()
    assert list(body) == list(expected)
    assert body == expected
    assert body["model_urls"]["glb"] and body["thumbnail_url"] and body["texture_urls"][0]["base_color"]

    # An UPDATE changes the row version: the next GET renders the new state, with URLs signed for it.
    new_expiry = (await _orm_task(db, task_id)).expires_at + timedelta(days=2)
    async with db() as session, session.begin():
        await session.execute(update(Task).where(Task.id == task_id).values(expires_at=new_expiry))
    third = await api.client.get(f"{URL}/{task_id}", headers=caller.headers)
    assert third.status_code == 200
    assert counting.calls == 2
    entries = _entries_for(api, task_id)
    assert len(entries) == 2 and len({key[1] for key in entries}) == 2  # one per row version
    updated = third.json()
    assert updated["expires_at"] == to_ms(new_expiry) != body["expires_at"]
    for url_then, url_now in (
        (body["model_urls"]["glb"], updated["model_urls"]["glb"]),
        (body["thumbnail_url"], updated["thumbnail_url"]),
        (body["texture_urls"][0]["base_color"], updated["texture_urls"][0]["base_color"]),
    ):
        assert url_then != url_now  # re-signed for the new expiry
        assert url_now.split("?")[0] == url_then.split("?")[0]  # the same file
    assert updated == render_task(await _orm_task(db, task_id), 0, links)
    assert (await api.client.get(f"{URL}/{task_id}", headers=caller.headers)).content == third.content
    assert counting.calls == 2
    assert updated["model_urls"]["glb"].startswith(f"{api.base_url}/")  # on this request's base URL
