"""Signed asset URLs: tampered, expired, traversing or unsigned URLs are refused."""

from __future__ import annotations

import time
import uuid

import pytest

from app.core.assets import UrlSigner
from tests.conftest import Api

pytestmark = pytest.mark.asyncio


@pytest.fixture
def asset(settings) -> tuple[uuid.UUID, bytes]:
    task_id = uuid.uuid4()
    folder = settings.assets_path / str(task_id)
    folder.mkdir(parents=True)
    (folder / "model.glb").write_bytes(b"glTF-test-bytes")
    (settings.assets_path / "secret.txt").write_bytes(b"outside the task")
    return task_id, b"glTF-test-bytes"


def signed(settings, task_id: uuid.UUID, name: str, expires: int) -> str:
    return UrlSigner(settings.secret()).url("", task_id, name, expires)


async def test_valid_url_serves_the_file(api: Api, settings, asset) -> None:
    task_id, content = asset
    response = await api.client.get(signed(settings, task_id, "model.glb", int(time.time()) + 60))
    assert response.status_code == 200
    assert response.content == content


async def test_tampered_url_is_refused(api: Api, settings, asset) -> None:
    task_id, _ = asset
    expires = int(time.time()) + 60
    url = signed(settings, task_id, "model.glb", expires)
    later = url.replace(f"Expires={expires}", f"Expires={expires + 10_000}")
    flipped = url[:-1] + ("0" if url[-1] != "0" else "1")
    non_ascii = url.split("&Signature=")[0] + "&Signature=%F1%A1%8A%82V%C3%84"
    for bad in (later, flipped, url.split("?")[0], url.replace("model.glb", "model.obj"), non_ascii):
        response = await api.client.get(bad)
        assert response.status_code in (400, 403), bad
        assert set(response.json()) == {"message"}


async def test_expired_url_is_refused(api: Api, settings, asset) -> None:
    task_id, _ = asset
    response = await api.client.get(signed(settings, task_id, "model.glb", int(time.time()) - 1))
    assert response.status_code == 403
    assert response.json() == {"message": "Asset URL expired"}


async def test_another_signers_url_is_refused(api: Api, asset) -> None:
    task_id, _ = asset
    url = UrlSigner(b"someone else's secret").url("", task_id, "model.glb", int(time.time()) + 60)
    assert (await api.client.get(url)).status_code == 403


@pytest.mark.parametrize("name", ["../secret.txt", "..%2Fsecret.txt", ".hidden", "a/../../secret.txt"])
async def test_no_path_traversal_even_when_signed(api: Api, settings, asset, name: str) -> None:
    task_id, _ = asset
    url = signed(settings, task_id, name, int(time.time()) + 60)
    response = await api.client.get(url)
    assert response.status_code in (403, 404)
    assert b"outside the task" not in response.content
