"""docs/webhooks.md's receiver, run as written: it verifies real deliveries of a real task and refuses a forgery."""

from __future__ import annotations

import asyncio
import re
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.app.webhooks.conftest import create_preview, eventually, register
from tests.conftest import Api, Caller

pytestmark = pytest.mark.asyncio
DOC = Path(__file__).resolve().parents[3] / "docs" / "webhooks.md"


def receiver_code() -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.DOTALL)
    [code] = [block for block in blocks if "standardwebhooks" in block]
    return code


async def test_the_docs_receiver_verifies_real_deliveries(
    api: Api, caller: Caller, worker, monkeypatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    server = HTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)  # its handler comes from the docs, below
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    hook = await register(api, caller, url)
    monkeypatch.setenv("MESHFOUNDRY_WEBHOOK_SECRET", hook["secret"])
    namespace: dict[str, Any] = {"__name__": "docs_example"}  # not __main__: the block's own server stays off
    exec(compile(receiver_code(), str(DOC), "exec"), namespace)
    server.RequestHandlerClass = namespace["Receiver"]
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    try:
        task_id = await create_preview(api, caller)
        line = f"{task_id} text-to-3d-preview SUCCEEDED 100"
        printed: list[str] = []

        async def succeeded_printed() -> bool:
            printed.append(capsys.readouterr().out)
            return line in "".join(printed)

        await eventually(succeeded_printed, "the docs receiver to print the SUCCEEDED task")
        assert f"{task_id} text-to-3d-preview IN_PROGRESS 0" in "".join(printed)
        shown = (await api.client.get(f"/openapi/v1/webhooks/{hook['id']}", headers=caller.headers)).json()
        assert shown["last_errors"] == [], "the docs receiver accepted every delivery"

        async with httpx.AsyncClient() as client:
            forged = await client.post(url, content=b'{"id": "x"}', headers={
                "webhook-id": "msg_1", "webhook-timestamp": "1", "webhook-signature": "v1,AAAA"})  # fmt: skip
        assert forged.status_code == 400
    finally:
        await asyncio.to_thread(server.shutdown)
        server.server_close()
