"""`GET /openapi/v1/models`: every resource's models, runners, pools, prices, and whether a worker serves them now."""

from __future__ import annotations

import asyncio

import pytest

from app.api.catalog import RESOURCES
from tests.conftest import Api, Caller

pytestmark = pytest.mark.asyncio
URL = "/openapi/v1/models"


def by_slug(answer: dict) -> dict[str, dict]:
    return {r["resource"]: r for r in answer["resources"]}


async def test_lists_every_resource_with_prices_and_no_live_worker(api: Api, caller: Caller) -> None:
    assert (await api.client.get(URL)).status_code == 401
    answer = (await api.client.get(URL, headers=caller.headers)).json()
    resources = by_slug(answer)
    assert set(resources) == {r.slug for r in RESOURCES}
    assert all(resources[r.slug]["models"] for r in RESOURCES), "every resource maps at least one ai_model"
    latest = {m["ai_model"]: m for m in resources["text-to-3d"]["models"] if m["task_type"] == "text-to-3d-preview"}
    assert latest["latest"]["runner"] == "procedural" and latest["latest"]["price"] == 20
    assert latest["meshy-5"]["price"] == 5 and latest["latest"]["price_variants"] == {"retrieved": 2}
    image = next(m for m in resources["image-to-3d"]["models"] if m["ai_model"] == "latest")
    assert image["price"] == 20 and image["price_variants"] == {"textured": 30, "retrieved": 2}
    motion = next(m for m in resources["text-to-motion"]["models"] if m["ai_model"] == "latest")
    assert (motion["price"], motion["price_variants"], motion["runner"]) == (10, {"swift": 3}, "motion-library")
    assert answer["pools"] == {"default": False}  # no worker runs in this test
    assert all(not m["worker_online"] for r in answer["resources"] for m in r["models"])


async def test_a_running_worker_shows_its_pool_online(api: Api, caller: Caller, worker) -> None:  # type: ignore[no-untyped-def]
    for _ in range(50):  # arq writes its health-check key on its first poll of the queue
        answer = (await api.client.get(URL, headers=caller.headers)).json()
        if answer["pools"]["default"]:
            break
        await asyncio.sleep(0.1)
    assert answer["pools"]["default"] is True
    rig = by_slug(answer)["rigging"]["models"][0]
    assert rig["worker_online"] and rig["pool"] == "default" and rig["vram_gb"] == 0 and rig["price"] == 5
