"""The event hub's bookkeeping for queue positions, driven directly (its loader and ranker are plain callables)."""

from __future__ import annotations

import uuid

import pytest

from app.tasks.events import Snapshot, TaskEventHub
from app.tasks.models import Task


def pending(pool: str = "default") -> Task:
    return Task(id=uuid.uuid4(), status="PENDING", progress=0, pool=pool)


class Ranker:
    def __init__(self) -> None:
        self.ranks: dict[uuid.UUID, int] = {}
        self.calls: list[tuple[str, list[uuid.UUID]]] = []

    async def __call__(self, pool: str, ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
        self.calls.append((pool, sorted(ids)))
        return {i: self.ranks[i] for i in ids if i in self.ranks}


async def no_load(_task_id: uuid.UUID) -> Snapshot | None:
    raise AssertionError("not expected to read the row")


@pytest.mark.asyncio
async def test_a_new_watcher_gets_ranked_and_only_changes_are_sent() -> None:
    ranker = Ranker()
    hub = TaskEventHub("postgresql://unused", no_load, ranker)
    task = pending()
    sub = hub.subscribe(task.id)
    hub.seed(task.id, Snapshot(task, 5))
    assert hub._changed_pools == {"default"}  # the queue may have moved while the stream read its row

    ranker.ranks[task.id] = 5
    await hub._rank("default")
    assert sub.latest is None  # unchanged: nothing sent
    ranker.ranks[task.id] = 4
    await hub._rank("default")
    assert isinstance(sub.latest, Snapshot) and sub.latest.preceding == 4 and sub.latest.task is task

    sub.close()
    assert not hub._last and not hub._waiting  # nothing kept for unwatched tasks


@pytest.mark.asyncio
async def test_an_older_read_that_finishes_later_is_dropped() -> None:
    hub = TaskEventHub("postgresql://unused", no_load, Ranker())
    task = pending()
    sub = hub.subscribe(task.id)
    newer, older = Snapshot(task, 2), Snapshot(task, 3)
    hub._publish(task.id, newer, stamp=8)
    hub._publish(task.id, older, stamp=7)
    assert sub.latest is newer
    started = Task(id=task.id, status="IN_PROGRESS", progress=0, pool="default")
    hub._publish(task.id, Snapshot(started), stamp=9)
    assert hub._waiting == {}  # it left the queue: no more ranking for it
