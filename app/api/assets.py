"""Signed asset downloads: no Authorization header, like Meshy's CDN links; Range requests supported.

With the local store the file is sent from disk. With the S3 store the URL's signature and expiry are checked here
all the same, then the file is delivered as `S3_URL_MODE` says: a 302 to a short-lived presigned URL on the bucket
(no bytes through the API), or streamed through the API (`proxy`).
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, RedirectResponse, Response, StreamingResponse
from starlette.concurrency import iterate_in_threadpool

from app.api.deps import State
from app.api.errors import error_responses
from app.api.state import AppState
from app.core.assets import content_type
from app.core.config import S3UrlMode
from app.core.errors import Forbidden, NotFound
from app.core.ids import parse_id
from app.core.s3_assets import RangeNotSatisfiable, S3AssetStore

router = APIRouter(tags=["Assets"])
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


@router.get("/assets/{task_id}/{filename}", responses=error_responses(403, 404), response_class=FileResponse)
async def download_asset(
    task_id: str,
    filename: str,
    request: Request,
    state: State,
    expires: int = Query(alias="Expires"),
    signature: str = Query(alias="Signature", max_length=128),
) -> Response:
    """Send one of a task's files, if the URL's signature is valid and it has not expired."""
    parsed = parse_id(task_id)
    if parsed is None or not state.signer.verify(parsed, filename, expires, signature):
        raise Forbidden("Invalid signature")
    if expires < time.time():
        raise Forbidden("Asset URL expired")
    if isinstance(state.store, S3AssetStore):
        return await _from_s3(state, state.store, parsed, filename, expires, request.headers.get("range"))
    path = state.store.path_of(parsed, filename)
    if path is None:
        raise NotFound("Asset not found")
    return FileResponse(path, media_type=content_type(filename), filename=filename, content_disposition_type="inline")


async def _from_s3(
    state: AppState, store: S3AssetStore, task_id: uuid.UUID, filename: str, expires: int, range_header: str | None
) -> Response:
    if state.settings.s3_url_mode == S3UrlMode.redirect:
        # Never valid past the signed URL itself; S3 checks the expiry when a download starts, not while it runs.
        ttl = min(state.settings.s3_presign_ttl_s, expires - int(time.time()))
        url = await asyncio.to_thread(store.presigned_url, task_id, filename, ttl)
        if url is None:
            raise NotFound("Asset not found")
        return RedirectResponse(url, status_code=302, headers={"Cache-Control": "no-store"})
    try:
        read = await asyncio.to_thread(store.open_read, task_id, filename, _byte_range(range_header))
    except RangeNotSatisfiable as exc:
        return Response(status_code=416, headers={"Content-Range": f"bytes */{exc.size}"})
    if read is None:
        raise NotFound("Asset not found")
    headers = {"Accept-Ranges": "bytes", "Content-Length": str(read.length),
               "Content-Disposition": f'inline; filename="{filename}"'}  # fmt: skip
    if read.partial:
        headers["Content-Range"] = f"bytes {read.start}-{read.start + read.length - 1}/{read.size}"
    chunks: Any = iterate_in_threadpool(read.chunks())
    return StreamingResponse(
        chunks, status_code=206 if read.partial else 200, media_type=content_type(filename), headers=headers
    )


def _byte_range(header: str | None) -> tuple[int | None, int | None] | None:
    """One `bytes=a-b`, `a-` or `-n` range; anything else (several ranges, another unit) is ignored, which HTTP
    allows: the whole file is sent."""
    match = _RANGE.match((header or "").strip())
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first, last = (int(g) if g else None for g in match.groups())
    return first, last
