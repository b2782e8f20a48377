"""The other shapes Meshy clients arrive in (docs/clients.md).

- ComfyUI's Meshy nodes call `<api base>/proxy/meshy/openapi/...`; Meshy's older clients call `/v1/...` and
  `/v2/...` (the paths before `/openapi`). `app.api.edge.Edge` maps both onto the routes, so the task objects,
  errors and limits are the same ones.
- ComfyUI sends the key as `X-API-KEY` or as a bearer token: app.api.deps accepts both.
- ComfyUI uploads an image before it names it: `POST /customers/storage {file_name, content_type}` answers a signed,
  15-minute, single-use `upload_url` (no credentials on the PUT, as with S3's presigned URLs) and a signed
  `download_url`. A create body that names the caller's own `download_url` reads the stored file directly: nothing is
  fetched over the network, and another account's upload is refused.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import time
import uuid
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field

from app.api.aigc_uploads import IMAGE_EXTENSIONS, MESH_EXTENSIONS, UploadStore, _checked_image
from app.api.deps import ApiKeyAuth, Links, State
from app.api.errors import error_responses
from app.api.state import AppState
from app.core.assets import CONTENT_TYPES
from app.core.errors import AppError, BadRequest, Forbidden, NotFound
from app.core.fetch import FetchRefused
from app.core.model_files import sniff_model
from billing.service import Principal

PREFIX = "/proxy/meshy"
PUT_TTL_S = 15 * 60
GET_TTL_S = 24 * 3600
router = APIRouter(tags=["ComfyUI"])


def alias(path: str) -> str:
    """The route a path names: without ComfyUI's prefix, and `/v1`, `/v2` under `/openapi`."""
    if path == PREFIX or path.startswith(PREFIX + "/"):
        path = path[len(PREFIX) :] or "/"
    if path.startswith(("/v1/", "/v2/")):
        path = "/openapi" + path
    return path


class StorageRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    file_name: str = Field(min_length=1, max_length=255)
    content_type: str = Field("application/octet-stream", max_length=100)


class StorageSlot(BaseModel):
    upload_url: str = Field(description="PUT the file's bytes here within 15 minutes, once; no credentials needed.")
    download_url: str = Field(description="Name this URL as an input of a task (signed; valid 24 h).")
    expires_at: int = Field(description="When upload_url expires (unix seconds).")


class AlreadyUploaded(AppError):
    status_code = 409
    message = "This upload URL has been used already"


def _kind(file_name: str, content_type: str) -> tuple[str, str]:
    """("image" | "mesh", the suffix) from the declared name and type; a 400 for anything else."""
    suffix = os.path.splitext(os.path.basename(file_name))[1].lower()
    if content_type.startswith("image/") or suffix in IMAGE_EXTENSIONS:
        return "image", suffix if suffix in IMAGE_EXTENSIONS else ".png"
    if suffix in MESH_EXTENSIONS:
        return "mesh", suffix
    raise BadRequest("Unsupported file type: upload an image (PNG, JPEG, WebP...) or a model (GLB, OBJ, FBX, STL)")


def _url(links: Any, path: str, expires: int, signature: str) -> str:
    return f"{links.base_url.rstrip('/')}{path}?Expires={expires}&Signature={signature}"


@router.post("/customers/storage", responses=error_responses(400, 401, 429), operation_id="comfy_storage_slot")
async def storage_slot(body: StorageRequest, principal: ApiKeyAuth, state: State, links: Links) -> StorageSlot:
    """ComfyUI's upload flow, step one: a signed, single-use `upload_url` for one file and its `download_url`."""
    kind, suffix = _kind(body.file_name, body.content_type)
    slot = uuid.uuid4()
    account = principal.account_id
    name = f"{kind}{suffix}"
    put_expires = int(time.time()) + PUT_TTL_S
    get_expires = int(time.time()) + GET_TTL_S
    put_path = f"/customers/storage/uploads/{account}/{slot}/{name}"
    get_path = f"/customers/storage/files/{account}/{slot}/{name}"
    return StorageSlot(
        upload_url=_url(links, put_path, put_expires, state.signer.signature(slot, f"put:{account}", put_expires)),
        download_url=_url(links, get_path, get_expires, state.signer.signature(slot, f"get:{account}", get_expires)),
        expires_at=put_expires,
    )


def _check(state: AppState, verb: str, account: uuid.UUID, slot: uuid.UUID, expires: int, signature: str) -> None:
    if not state.signer.verify(slot, f"{verb}:{account}", expires, signature):
        raise Forbidden("Invalid signature")
    if expires < time.time():
        raise Forbidden("Upload URL expired" if verb == "put" else "Download URL expired")


@router.put("/customers/storage/uploads/{account_id}/{slot_id}/{name}", responses=error_responses(400, 403, 409, 413),
            operation_id="comfy_storage_put", status_code=200)  # fmt: skip
async def storage_put(
    account_id: uuid.UUID, slot_id: uuid.UUID, name: str, request: Request, state: State,
    expires: int = Query(alias="Expires"), signature: str = Query(alias="Signature", max_length=128),
) -> dict[str, Any]:  # fmt: skip
    """Step two: the file's bytes (authorised by the URL's signature alone; once; checked by their content)."""
    _check(state, "put", account_id, slot_id, expires, signature)
    kind, suffix = _kind(name, "")
    limit = state.settings.fetch_max_bytes
    content = bytearray()
    async for chunk in request.stream():
        content += chunk
        if len(content) > limit:
            raise BadRequest(f"The file is larger than {limit // 2**20} MB")
    if not content:
        raise BadRequest("The file is empty")
    try:
        if kind == "image":
            data, suffix = await asyncio.to_thread(_checked_image, bytes(content), suffix)
        else:
            data, suffix = bytes(content), "." + sniff_model(bytes(content), name)
    except FetchRefused as exc:
        raise BadRequest(f"Invalid file: {exc}") from exc
    store = UploadStore(state.settings.assets_path)
    marker = store.root / str(account_id) / f".put-{slot_id}"
    marker.parent.mkdir(parents=True, exist_ok=True)
    try:  # the first PUT claims the slot; a replay of the URL cannot replace the file
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError as exc:
        raise AlreadyUploaded() from exc
    os.close(fd)
    await asyncio.to_thread(store.save, account_id, kind, name, data, suffix, slot_id)
    return {"status": "uploaded", "size": len(data)}


@router.get("/customers/storage/files/{account_id}/{slot_id}/{name}", responses=error_responses(403, 404),
            response_class=FileResponse, operation_id="comfy_storage_get")  # fmt: skip
async def storage_get(
    account_id: uuid.UUID, slot_id: uuid.UUID, name: str, state: State,
    expires: int = Query(alias="Expires"), signature: str = Query(alias="Signature", max_length=128),
) -> FileResponse:  # fmt: skip
    """The uploaded file, for whoever holds the signed download URL (like an asset URL)."""
    _check(state, "get", account_id, slot_id, expires, signature)
    found = UploadStore(state.settings.assets_path).get(account_id, str(slot_id))
    if found is None:
        raise NotFound("File not found")
    record, path = found
    media_type = CONTENT_TYPES.get(os.path.splitext(record.stored_as)[1], "application/octet-stream")
    return FileResponse(path, media_type=media_type)


UPLOAD_MARK = "/customers/storage/files/"
_DOWNLOAD = re.compile(r"^(?:/proxy/meshy)?/customers/storage/files/([0-9a-f-]{36})/([0-9a-f-]{36})/[^/]+$")


def own_upload(value: str, principal: Principal, state: AppState) -> str | None:
    """A data URI of the caller's upload when `value` is one of this server's download URLs; None when it is not
    one (it is then fetched as any URL); a 400 when it is one but expired, tampered with or someone else's."""
    if not isinstance(value, str) or UPLOAD_MARK not in value or value.startswith("data:"):
        return None
    parts = urlsplit(value)
    match = _DOWNLOAD.match(parts.path)
    if match is None:
        return None
    query = dict(parse_qsl(parts.query))
    try:
        account, slot, expires = uuid.UUID(match[1]), uuid.UUID(match[2]), int(query.get("Expires", "0"))
    except ValueError:
        raise BadRequest("Invalid upload URL") from None
    if not state.signer.verify(slot, f"get:{account}", expires, query.get("Signature", "")) or expires < time.time():
        raise BadRequest("Invalid upload URL: it is expired or was altered")
    if account != principal.account_id:
        raise BadRequest("Invalid upload URL: the file belongs to another account")
    found = UploadStore(state.settings.assets_path).get(account, str(slot))
    if found is None:
        raise BadRequest("Invalid upload URL: nothing was uploaded there, or it has expired")
    record, path = found
    media = CONTENT_TYPES.get(os.path.splitext(record.stored_as)[1], "application/octet-stream")
    if record.file_type == "mesh":
        media = "application/octet-stream"
    return f"data:{media};base64," + base64.b64encode(path.read_bytes()).decode()


def names_uploads(body: BaseModel) -> bool:
    """Whether any top-level value may be one of this server's download URLs (cheap: no file is read)."""
    for _field, value in body:
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, str) and UPLOAD_MARK in v for v in values):
            return True
    return False


def inline_uploads(body: BaseModel, principal: Principal, state: AppState) -> BaseModel:
    """`body` with every top-level URL (or list of URLs) that names the caller's own upload read in as a data URI."""
    changes: dict[str, Any] = {}
    for field, value in body:
        if isinstance(value, str):
            inlined = own_upload(value, principal, state)
            if inlined is not None:
                changes[field] = inlined
        elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            replaced = [own_upload(v, principal, state) or v for v in value]
            if replaced != value:
                changes[field] = replaced
    return body.model_copy(update=changes) if changes else body
