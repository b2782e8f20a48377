"""Asset storage (a local directory by default) and the signed, expiring URLs that serve it without a bearer key.

A store keeps each task's published files, the inputs a caller sent inline at create, and a local area under `root`
for work folders and caches. Publishing takes two steps, so that a task's files change only while its row is locked
by the compare-and-set that finishes it: `stage` gathers (or uploads) one attempt's files out of sight, then
`commit` makes them the task's whole set at once; `discard` drops a stage that lost. `app.core.s3_assets` holds the
S3-compatible store and `app.core.storage` picks one from settings.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from datetime import datetime
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


def content_type(filename: str) -> str:
    return CONTENT_TYPES.get(os.path.splitext(filename)[1].lower(), "application/octet-stream")


def check_names(filenames: list[str]) -> None:
    for name in filenames:
        if not valid_filename(name):
            raise ValueError(f"unsafe asset name {name!r}")


@dataclass
class Staged:
    """One publish of `task_id`, gathered but not yet visible; `AssetStore.commit` makes it the task's files."""

    task_id: uuid.UUID
    files: dict[str, int]  # name -> size in bytes
    location: str  # the local store's staging folder; the S3 store's generation
    committed: bool = False


@dataclass(frozen=True)
class StoredFile:
    size: int
    modified: float  # epoch seconds


class AssetStore:
    """Task assets under `<root>/<task id>/<file>`; every path is checked to stay inside the root."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def task_dir(self, task_id: uuid.UUID) -> Path:
        return self.root / str(task_id)

    def path_of(self, task_id: uuid.UUID, filename: str) -> Path | None:
        """A local path to the file, or None when the name is unsafe or the file is missing."""
        if not valid_filename(filename):
            return None
        path = (self.task_dir(task_id) / filename).resolve()
        if path.parent != self.task_dir(task_id).resolve() or not path.is_file():
            return None
        return path

    def stat(self, task_id: uuid.UUID, filename: str) -> StoredFile | None:
        """Size and time of a published file, without reading it; None when it is missing."""
        path = self.path_of(task_id, filename)
        if path is None:
            return None
        info = path.stat()
        return StoredFile(info.st_size, info.st_mtime)

    def files_of(self, task_id: uuid.UUID) -> list[str] | None:
        """The names of the task's published files, or None when it has none."""
        folder = self.task_dir(task_id)
        if not folder.is_dir():
            return None
        return sorted(p.name for p in folder.iterdir() if p.is_file() and valid_filename(p.name))

    def stage(self, task_id: uuid.UUID, source_dir: Path, filenames: list[str]) -> Staged:
        """Gather `filenames` (moved out of `source_dir`, which is on the root's filesystem) for one publish."""
        check_names(filenames)
        staging = source_dir / ".publish"
        staging.mkdir()
        for name in filenames:
            os.replace(source_dir / name, staging / name)
        return Staged(task_id, {name: (staging / name).stat().st_size for name in filenames}, str(staging))

    def stage_copy(self, source_id: uuid.UUID, task_id: uuid.UUID, filenames: list[str] | None = None) -> Staged:
        """Stage another task's (or library asset's) published files, all of them or `filenames`, for `task_id`:
        hard links where possible. FileNotFoundError when they are gone, with nothing left behind."""
        source = self.task_dir(source_id)
        staging = self.root / f".{task_id}.reuse"
        shutil.rmtree(staging, ignore_errors=True)
        try:
            names = filenames if filenames is not None else self.files_of(source_id)
            if names is None:
                raise FileNotFoundError(f"no files under {source_id}")
            check_names(names)
            staging.mkdir(parents=True)
            for name in names:
                try:
                    os.link(source / name, staging / name)
                except FileNotFoundError:
                    raise
                except OSError:  # another filesystem, or links not allowed
                    shutil.copy2(source / name, staging / name)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return Staged(task_id, {name: (staging / name).stat().st_size for name in names}, str(staging))

    def commit(self, staged: Staged) -> None:
        """Make the staged files the task's whole directory: whatever was there before is replaced, not merged."""
        staging = Path(staged.location)
        target = self.task_dir(staged.task_id)
        if target.exists():
            leftover = staging.with_name(staging.name + ".replaced")
            os.replace(target, leftover)
            shutil.rmtree(leftover, ignore_errors=True)
        os.replace(staging, target)
        staged.committed = True

    def discard(self, staged: Staged) -> None:
        """Drop a stage that was not committed (a lost compare-and-set, a failed create)."""
        if not staged.committed:
            shutil.rmtree(staged.location, ignore_errors=True)

    def publish(self, task_id: uuid.UUID, source_dir: Path, filenames: list[str]) -> None:
        """Stage and commit at once, for callers that hold no task row (library imports, samples)."""
        self.commit(self.stage(task_id, source_dir, filenames))

    def delete(self, task_id: uuid.UUID) -> None:
        shutil.rmtree(self.task_dir(task_id), ignore_errors=True)
        self.delete_inputs(task_id)

    def task_ids(self) -> list[uuid.UUID]:
        """Every id that has published files (tasks, library assets, samples)."""
        return list(_uuid_names(self.root))

    def sweep_unreferenced(self, older_than: datetime) -> int:
        """Remove staged uploads that no publish references; a local publish renames whole folders, so none."""
        del older_than
        return 0

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

    def input_ids(self) -> dict[uuid.UUID, float]:
        """Every id with stored inputs, and when they were stored (epoch seconds)."""
        folder = self.root / ".inputs"
        return {task_id: _mtime(folder / str(task_id)) for task_id in _uuid_names(folder)}

    def delete_inputs(self, task_id: uuid.UUID) -> None:
        shutil.rmtree(self.inputs_dir(task_id), ignore_errors=True)


def _uuid_names(folder: Path) -> list[uuid.UUID]:
    ids = []
    for entry in folder.iterdir() if folder.is_dir() else ():
        try:
            ids.append(uuid.UUID(entry.name))
        except ValueError:
            continue
    return ids


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


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
