"""The OpenAPI schema is complete and truthful, and /docs works without a CDN."""

from __future__ import annotations

import pytest

from tests.conftest import Api

pytestmark = pytest.mark.asyncio


async def test_every_operation_is_described_with_meshy_errors(api: Api) -> None:
    spec = (await api.client.get("/openapi.json")).json()
    operations = [(path, method, op) for path, ops in spec["paths"].items() for method, op in ops.items()]
    assert len(operations) >= 19
    for path, method, op in operations:
        responses = op["responses"]
        assert op.get("description"), (method, path)
        assert "422" not in responses, "validation errors are 400 here"
        if path.startswith("/openapi/"):
            assert "401" in responses and "429" in responses, (method, path)
        for code, response in responses.items():
            if code.startswith(("4", "5")) and "content" in response:
                schema = response["content"]["application/json"]["schema"]
                assert schema["properties"] == {"message": {"type": "string"}}, (method, path, code)
    create = spec["paths"]["/openapi/v2/text-to-3d"]["post"]
    assert {"202", "400", "401", "402", "404", "409", "429"} <= set(create["responses"])
    schemas = spec["components"]["schemas"]
    assert schemas["TextTo3DPreview"]["examples"] and schemas["TextTo3DRefine"]["examples"]
    assert schemas["TextTo3DTask"]["examples"][0]["status"] == "SUCCEEDED"


async def test_docs_ui_is_served_from_local_files(api: Api) -> None:
    page = await api.client.get("/docs")
    assert page.status_code == 200
    assert "cdn" not in page.text.lower()
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert (await api.client.get(f"/playground/vendor/swagger-ui/{asset}")).status_code == 200
    assert (await api.client.get("/playground")).status_code == 200
