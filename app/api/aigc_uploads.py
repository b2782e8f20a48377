"""3DAIGC-API's file uploads (`POST /api/v1/file-upload/image|mesh`, multipart field `file`) on MeshFoundry's keys.

An upload belongs to the calling account: it is stored under `<assets>/.uploads/<account id>/<file id><ext>` with a
small JSON record beside it, and a `file_id` of another account's is "not found". It expires after
`UPLOAD_TTL` (24 h, as the seed says; there it was never enforced, here an expired id is gone). Content is checked
as the rest of MeshFoundry checks its inputs: images are sniffed and fully decoded (PNG and JPEG kept as they are;
WebP, BMP, TIFF and TGA converted to PNG; at most 25 MP and 8192 px a side), models sniffed as GLB, glTF, OBJ, FBX
or STL (PLY, which the seed also took, is refused: the model reader does not take it). Sizes: the request-body limit
(`MAX_BODY_BYTES`) and `FETCH_MAX_BYTES` for what a task may read.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Query, UploadFile
from PIL import Image

from app.api.deps import ApiKeyAuth, State
from app.api.errors import error_responses
from app.core.clock import utcnow
from app.core.errors import BadRequest, NotFound
from app.core.fetch import FetchRefused
from app.core.images import inspect_image
from app.core.model_files import sniff_model

router = APIRouter(prefix="/api/v1/file-upload", tags=["3DAIGC-API"])
UPLOAD_TTL = timedelta(hours=24)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tiff", ".tga")
MESH_EXTENSIONS = (".glb", ".obj", ".fbx", ".stl", ".gltf")
_CONVERTED = {".webp", ".bmp", ".tiff", ".tga"}
MAX_PIXELS = 25_000_000
MAX_SIDE = 8192
Kind = Literal["image", "mesh"]


class FileGone(NotFound):
    message = "File not found"


@dataclass
class Upload:
    file_id: str
    filename: str
    file_type: str
    file_size_mb: float
    upload_time: str
    expires_at: str
    stored_as: str  # the stored file's name: <file id><ext>

    def public(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "stored_as"}


class UploadStore:
    """Uploads per account on disk; every path is built from a parsed UUID, never from what a client sent."""

    def __init__(self, assets_root: Path) -> None:
        self.root = Path(assets_root) / ".uploads"

    def _folder(self, account_id: uuid.UUID) -> Path:
        return self.root / str(account_id)

    def save(
        self, account_id: uuid.UUID, kind: Kind, filename: str, content: bytes, suffix: str,
        file_id: uuid.UUID | None = None,
    ) -> Upload:  # fmt: skip
        file_id = str(file_id or uuid.uuid4())
        now = utcnow().replace(tzinfo=None)
        record = Upload(file_id=file_id, filename=filename, file_type=kind, file_size_mb=len(content) / 2**20,
                        upload_time=now.isoformat(), expires_at=(now + UPLOAD_TTL).isoformat(),
                        stored_as=file_id + suffix)  # fmt: skip
        folder = self._folder(account_id)
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / f".{file_id}.partial"
        partial.write_bytes(content)
        partial.replace(folder / record.stored_as)
        (folder / f"{file_id}.json").write_text(json.dumps(asdict(record)))
        return record

    def get(self, account_id: uuid.UUID, file_id: str, kind: Kind | None = None) -> tuple[Upload, Path] | None:
        """The account's live upload `file_id` (of `kind`) and its path; None if unknown, foreign or expired."""
        try:
            parsed = str(uuid.UUID(str(file_id)))
        except ValueError:
            return None
        folder = self._folder(account_id)
        meta = folder / f"{parsed}.json"
        try:
            record = Upload(**json.loads(meta.read_text()))
        except (OSError, ValueError, TypeError):
            return None
        path = folder / record.stored_as
        if datetime.fromisoformat(record.expires_at) <= utcnow().replace(tzinfo=None) or not path.is_file():
            self.delete(account_id, parsed)
            return None
        if kind is not None and record.file_type != kind:
            return None
        return record, path

    def delete(self, account_id: uuid.UUID, file_id: str) -> Upload | None:
        folder = self._folder(account_id)
        meta = folder / f"{file_id}.json"
        try:
            record = Upload(**json.loads(meta.read_text()))
        except (OSError, ValueError, TypeError):
            return None
        for path in (folder / record.stored_as, meta):
            path.unlink(missing_ok=True)
        return record

    def list(self, account_id: uuid.UUID, kind: Kind | None, limit: int) -> list[Upload]:
        folder = self._folder(account_id)
        if not folder.is_dir():
            return []
        out = []
        for meta in sorted(folder.glob("*.json"), key=os.path.getmtime, reverse=True):
            found = self.get(account_id, meta.stem, kind)
            if found is not None:
                out.append(found[0])
            if len(out) >= limit:
                break
        return out

    def purge(self, account_id: uuid.UUID) -> None:
        shutil.rmtree(self._folder(account_id), ignore_errors=True)


def _checked_image(content: bytes, suffix: str) -> tuple[bytes, str]:
    """(bytes to store, suffix): PNG/JPEG checked as every image input is; the other formats decoded and re-encoded
    as PNG (so tasks read one of the two)."""
    if suffix not in _CONVERTED:
        info = inspect_image(content)
        return content, info.extension
    try:
        with Image.open(io.BytesIO(content)) as img:
            width, height = img.size
            if width * height > MAX_PIXELS or max(width, height) > MAX_SIDE:
                raise FetchRefused(f"the image is {width}x{height}; at most {MAX_SIDE} px a side and 25 MP")
            out = io.BytesIO()
            img.convert("RGBA").save(out, format="PNG")
    except FetchRefused:
        raise
    except Exception as exc:  # noqa: BLE001 (whatever PIL trips on is a bad file)
        raise FetchRefused("the image could not be decoded") from exc
    converted = out.getvalue()
    inspect_image(converted)
    return converted, ".png"


async def _upload(kind: Kind, file: UploadFile, principal: Any, state: Any) -> dict[str, Any]:
    name = os.path.basename(file.filename or "")
    if not name:
        raise BadRequest("Filename is required")
    suffix = os.path.splitext(name)[1].lower()
    allowed = IMAGE_EXTENSIONS if kind == "image" else MESH_EXTENSIONS
    if suffix not in allowed:
        raise BadRequest(f"Unsupported file type. Allowed extensions: {list(allowed)}")
    content = await file.read(state.settings.fetch_max_bytes + 1)
    if len(content) > state.settings.fetch_max_bytes:
        raise BadRequest(f"File upload failed for '{name}': the file is larger than "
                         f"{state.settings.fetch_max_bytes // 2**20} MB")  # fmt: skip
    try:
        if kind == "image":
            content, suffix = await asyncio.to_thread(_checked_image, content, suffix)
        else:
            suffix = "." + sniff_model(content, name)
    except FetchRefused as exc:
        raise BadRequest(f"File upload failed for '{name}': {exc}") from exc
    store = UploadStore(state.settings.assets_path)
    record = await asyncio.to_thread(store.save, principal.account_id, kind, name, content, suffix)
    return record.public()


@router.post("/image", responses=error_responses(400, 401, 413, 429))
async def upload_image(file: Annotated[UploadFile, File()], principal: ApiKeyAuth, state: State) -> dict[str, Any]:
    """Upload an image (multipart field `file`): `{file_id, filename, file_type, file_size_mb, upload_time,
    expires_at}`; use the id as `image_file_id` for 24 hours."""
    return await _upload("image", file, principal, state)


@router.post("/mesh", responses=error_responses(400, 401, 413, 429))
async def upload_mesh(file: Annotated[UploadFile, File()], principal: ApiKeyAuth, state: State) -> dict[str, Any]:
    """Upload a model (GLB, glTF, OBJ, FBX, STL; multipart field `file`); use the id as `mesh_file_id`."""
    return await _upload("mesh", file, principal, state)


@router.get("/metadata/{file_id}", responses=error_responses(401, 404, 429))
async def metadata(file_id: str, principal: ApiKeyAuth, state: State) -> dict[str, Any]:
    """An upload of the caller's that has not expired."""
    found = UploadStore(state.settings.assets_path).get(principal.account_id, file_id)
    if found is None:
        raise FileGone()
    return {**found[0].public(), "is_available": True}


@router.delete("/{file_id}", responses=error_responses(401, 404, 429))
async def delete_upload(file_id: str, principal: ApiKeyAuth, state: State) -> dict[str, Any]:
    """Delete an upload of the caller's."""
    store = UploadStore(state.settings.assets_path)
    if store.get(principal.account_id, file_id) is None:
        raise FileGone()
    record = store.delete(principal.account_id, str(uuid.UUID(file_id)))
    return {"file_id": file_id, "message": "File deleted successfully", "filename": record.filename if record else ""}


@router.get("/list", responses=error_responses(401, 429))
async def list_uploads(
    principal: ApiKeyAuth,
    state: State,
    file_type: Annotated[Literal["image", "mesh"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """The caller's live uploads, newest first."""
    files = UploadStore(state.settings.assets_path).list(principal.account_id, file_type, limit)
    items = [{**f.public(), "is_available": True} for f in files]
    return {"files": items, "count": len(items), "total_files": len(items)}


@router.get("/supported-formats")
async def supported_formats(state: State) -> dict[str, Any]:
    """What the upload routes take (no key needed)."""
    max_mb = state.settings.fetch_max_bytes // 2**20
    return {
        "image": {"formats": list(IMAGE_EXTENSIONS), "max_size_mb": max_mb, "description": "PNG and JPEG kept; "
                  "others converted to PNG"},
        "mesh": {"formats": list(MESH_EXTENSIONS), "max_size_mb": max_mb, "description": "GLB, glTF (embedded), "
                 "OBJ, binary FBX, STL"},
        "retention": {"default_hours": 24, "description": "Files are deleted after 24 hours"},
    }  # fmt: skip
