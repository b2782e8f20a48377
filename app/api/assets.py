"""Signed asset downloads: no Authorization header, like Meshy's CDN links; Range requests supported."""

from __future__ import annotations

import time
from pathlib import PurePosixPath

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse

from app.api.deps import State
from app.api.errors import error_responses
from app.core.assets import CONTENT_TYPES
from app.core.errors import Forbidden, NotFound
from app.core.ids import parse_id

router = APIRouter(tags=["Assets"])


@router.get("/assets/{task_id}/{filename}", responses=error_responses(403, 404), response_class=FileResponse)
async def download_asset(
    task_id: str,
    filename: str,
    state: State,
    expires: int = Query(alias="Expires"),
    signature: str = Query(alias="Signature", max_length=128),
) -> FileResponse:
    """Stream one of a task's files, if the URL's signature is valid and it has not expired."""
    parsed = parse_id(task_id)
    if parsed is None or not state.signer.verify(parsed, filename, expires, signature):
        raise Forbidden("Invalid signature")
    if expires < time.time():
        raise Forbidden("Asset URL expired")
    path = state.store.path_of(parsed, filename)
    if path is None:
        raise NotFound("Asset not found")
    media_type = CONTENT_TYPES.get(PurePosixPath(filename).suffix.lower(), "application/octet-stream")
    return FileResponse(path, media_type=media_type, filename=filename, content_disposition_type="inline")
