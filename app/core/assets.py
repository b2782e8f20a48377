"""Asset storage on the local disk and the signed, expiring URLs that serve it without a bearer key."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import shutil
import uuid
from pathlib import Path
from urllib.parse import quote

_FILENAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")

CONTENT_TYPES = {
    ".glb": "model/gltf-binary",
    ".gltf": "model/gltf+json",
    ".obj": "model/obj",
    ".mtl": "model/mtl",
    ".fbx": "application/octet-stream",
    ".usdz": "model/vnd.usdz+zip",
    ".stl": "model/stl",
    ".3mf": "model/3mf",
    ".ply": "application/octet-stream",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".mp4": "video/mp4",
}


def valid_filename(name: str) -> bool:
    return bool(_FILENAME.match(name)) and ".." not in name


class AssetStore:
    """Task assets under `<root>/<task id>/<file>`; every path is checked to stay inside the root."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def task_dir(self, task_id: uuid.UUID) -> Path:
        return self.root / str(task_id)

    def path_of(self, task_id: uuid.UUID, filename: str) -> Path | None:
        """The file's path, or None when the name is unsafe or the file is missing."""
        if not valid_filename(filename):
            return None
        path = (self.task_dir(task_id) / filename).resolve()
        if path.parent != self.task_dir(task_id).resolve() or not path.is_file():
            return None
        return path

    def publish(self, task_id: uuid.UUID, source_dir: Path, filenames: list[str]) -> None:
        """Make `filenames` (from `source_dir`, on the same filesystem) the task's whole directory.

        The files are gathered in a staging folder, then renamed into place; whatever an earlier attempt left
        there is replaced, not merged, so a task's directory always holds exactly one attempt's files.
        """
        for name in filenames:
            if not valid_filename(name):
                raise ValueError(f"unsafe asset name {name!r}")
        staging = source_dir / ".publish"
        staging.mkdir()
        for name in filenames:
            os.replace(source_dir / name, staging / name)
        target = self.task_dir(task_id)
        if target.exists():
            leftover = source_dir / ".replaced"
            os.replace(target, leftover)
            shutil.rmtree(leftover, ignore_errors=True)
        os.replace(staging, target)

    def delete(self, task_id: uuid.UUID) -> None:
        shutil.rmtree(self.task_dir(task_id), ignore_errors=True)
        shutil.rmtree(self.inputs_dir(task_id), ignore_errors=True)

    # Inputs a caller sent inline (data: URIs) are stored at create time, apart from the outputs: a publish
    # replaces the output folder whole, and inputs are never served back.
    def inputs_dir(self, task_id: uuid.UUID) -> Path:
        return self.root / ".inputs" / str(task_id)

    def save_input(self, task_id: uuid.UUID, filename: str, content: bytes) -> None:
        if not valid_filename(filename):
            raise ValueError(f"unsafe input name {filename!r}")
        folder = self.inputs_dir(task_id)
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / f".{filename}.partial"
        partial.write_bytes(content)
        os.replace(partial, folder / filename)

    def input_path(self, task_id: uuid.UUID, filename: str) -> Path | None:
        if not valid_filename(filename):
            return None
        path = (self.inputs_dir(task_id) / filename).resolve()
        if path.parent != self.inputs_dir(task_id).resolve() or not path.is_file():
            return None
        return path


class UrlSigner:
    """HMAC-signed asset URLs in the CloudFront style Meshy clients know (`?Expires=&Signature=`)."""

    def __init__(self, secret: bytes) -> None:
        self._key = hashlib.sha256(b"asset-url:" + secret).digest()

    def signature(self, task_id: uuid.UUID, filename: str, expires: int) -> str:
        message = f"{task_id}/{filename}:{expires}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def url(self, base_url: str, task_id: uuid.UUID, filename: str, expires: int) -> str:
        sig = self.signature(task_id, filename, expires)
        return f"{base_url.rstrip('/')}/assets/{task_id}/{quote(filename)}?Expires={expires}&Signature={sig}"

    def verify(self, task_id: uuid.UUID, filename: str, expires: int, signature: str) -> bool:
        # Bytes, not str: compare_digest refuses non-ASCII strings, and a signature is whatever the URL says.
        return hmac.compare_digest(self.signature(task_id, filename, expires).encode(), signature.encode())
