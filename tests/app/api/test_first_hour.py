"""What a newcomer meets in the first hour, as an HTTP client sees it: clear words for common mistakes."""

from __future__ import annotations

import pytest

from app.api.main import create_app
from tests.conftest import Caller

pytestmark = pytest.mark.asyncio


async def test_a_json_body_without_its_content_type_is_explained(api, caller: Caller) -> None:
    # curl -d '{...}' without -H 'Content-Type: application/json' sends application/x-www-form-urlencoded.
    response = await api.client.post(
        "/openapi/v2/text-to-3d", content=b'{"mode": "preview", "prompt": "a cup"}',
        headers=caller.headers | {"Content-Type": "application/x-www-form-urlencoded"},
    )  # fmt: skip
    assert response.status_code == 400
    assert response.json() == {"message": "The request body must be JSON, sent with Content-Type: application/json"}


async def test_sort_by_errors_list_the_values_a_person_can_type(api, caller: Caller) -> None:
    response = await api.client.get("/openapi/v2/text-to-3d?sort_by=newest", headers=caller.headers)
    assert response.status_code == 400
    message = response.json()["message"]
    assert message == "Invalid parameter sort_by: must be '+created_at' or '-created_at'"


async def test_a_blank_prompt_is_said_plainly(api, caller: Caller) -> None:
    response = await api.client.post("/openapi/v2/text-to-3d", json={"mode": "preview", "prompt": "   "},
                                     headers=caller.headers)  # fmt: skip
    assert response.status_code == 400
    assert "Value error" not in response.json()["message"]
    assert "prompt" in response.json()["message"]


async def test_the_root_points_at_the_docs(api) -> None:
    response = await api.client.get("/", follow_redirects=False)
    assert response.status_code in (302, 307) and response.headers["location"] == "/docs"


async def test_admin_routes_are_documented_only_when_switched_on(settings) -> None:
    paths = create_app(settings).openapi()["paths"]
    assert not any(path.startswith("/admin") for path in paths)
    admin = settings.model_copy(update={"admin_token": "x" * 24})
    assert any(path.startswith("/admin") for path in create_app(admin).openapi()["paths"])
