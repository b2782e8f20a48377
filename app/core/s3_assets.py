"""The S3-compatible asset store: every publish is a new, immutable generation of objects that one manifest write
makes live, so the attempt fence of the local store holds on a bucket too.

Layout under the bucket's `prefix`:

    <id>/manifest.json          {"generation": g, "files": {name: size}, "published_at": t}: what is live
    <id>/<g>/<file>             the files of one publish (one generation); never changed once written
    .inputs/<id>/<file>         inputs sent inline at create

`stage` uploads a generation where no reader looks; `commit` (under the task's row lock) writes the manifest, the
only object a reader trusts. An attempt that loses the compare-and-set never writes it; what it uploaded is
discarded at once, and whatever a crash leaves behind is removed by `sweep_unreferenced`. Reads that need a local
file go through a bounded cache under `<root>/.cache`, keyed by generation, so a cached file is never stale.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from app.core.assets import AssetStore, Staged, StoredFile, check_names, content_type, valid_filename

MANIFEST = "manifest.json"
INPUTS = ".inputs/"
# A cached file used this recently is never evicted: the caller that asked for it may not have opened it yet.
CACHE_GRACE_S = 3600.0  # files used within the hour are kept even over the bound: a job may hold a path while
# its model loads for minutes before opening it
CHUNK = 1024 * 1024


@dataclass(frozen=True)
class S3Location:
    """Where the bucket is and how to reach it (credentials: these, else boto3's standard chain)."""

    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    public_endpoint_url: str | None = None  # what clients reach, for presigned URLs; default: endpoint_url
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None


@dataclass
class RemoteRead:
    """An open object (or a byte range of it), for streaming through the API."""

    body: Any  # botocore's StreamingBody
    size: int  # the whole object's
    start: int
    length: int
    partial: bool

    def chunks(self) -> Iterator[bytes]:
        try:
            yield from self.body.iter_chunks(CHUNK)
        finally:
            self.body.close()


class RangeNotSatisfiable(Exception):
    def __init__(self, size: int) -> None:
        super().__init__(f"range outside 0-{size}")
        self.size = size


def _client(location: S3Location, endpoint_url: str | None) -> Any:
    config = Config(
        signature_version="s3v4",
        # Path-style for custom endpoints (MinIO, Ceph, moto), which rarely serve a bucket per host name.
        s3={"addressing_style": "path" if endpoint_url else "auto"},
        retries={"max_attempts": 5, "mode": "standard"},
        max_pool_connections=32,
    )
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint_url, region_name=location.region, config=config,
        aws_access_key_id=location.access_key_id, aws_secret_access_key=location.secret_access_key,
    )  # fmt: skip


def _missing(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound")


class S3AssetStore(AssetStore):
    """Published files and inputs in an S3-compatible bucket; `root` stays local (work folders, the read cache)."""

    def __init__(self, root: Path, location: S3Location, *, cache_max_bytes: int = 2 * 1024**3) -> None:
        super().__init__(root)
        self.location = location
        self.bucket = location.bucket
        self.prefix = location.prefix.strip("/") + "/" if location.prefix.strip("/") else ""
        self.cache_max_bytes = cache_max_bytes
        self._s3 = _client(location, location.endpoint_url)
        self._presigner = _client(location, location.public_endpoint_url) if location.public_endpoint_url else self._s3
        self._cache = self.root / ".cache"
        self._trim_lock = threading.Lock()

    # Local folders do not exist here: a caller that still wants one must fail loudly, never read an empty disk.
    def task_dir(self, task_id: uuid.UUID) -> Path:
        raise NotImplementedError("the S3 asset store has no local task folders")

    def inputs_dir(self, task_id: uuid.UUID) -> Path:
        raise NotImplementedError("the S3 asset store has no local input folders")

    # --- publishing ---------------------------------------------------------------------------------------------

    def stage(self, task_id: uuid.UUID, source_dir: Path, filenames: list[str]) -> Staged:
        """Upload the files as a new generation (nothing reads it until `commit`)."""
        check_names(filenames)
        staged = Staged(task_id, {}, uuid.uuid4().hex[:16])
        try:
            for name in filenames:
                path = source_dir / name
                self._s3.upload_file(
                    str(path), self.bucket, self._key(task_id, staged.location, name),
                    ExtraArgs={"ContentType": content_type(name)},
                )  # fmt: skip
                staged.files[name] = path.stat().st_size
        except BaseException:
            self._drop(staged)
            raise
        return staged

    def stage_copy(self, source_id: uuid.UUID, task_id: uuid.UUID, filenames: list[str] | None = None) -> Staged:
        """Server-side copies (CopyObject) of another id's live files into a new generation of `task_id`."""
        manifest = self._manifest(source_id)
        if manifest is None:
            raise FileNotFoundError(f"no files under {source_id}")
        names = filenames if filenames is not None else sorted(manifest["files"])
        check_names(names)
        if any(name not in manifest["files"] for name in names):
            raise FileNotFoundError(f"a file of {source_id} is missing")
        staged = Staged(task_id, {}, uuid.uuid4().hex[:16])
        try:
            for name in names:
                source = {"Bucket": self.bucket, "Key": self._key(source_id, manifest["generation"], name)}
                self._s3.copy(source, self.bucket, self._key(task_id, staged.location, name))
                staged.files[name] = int(manifest["files"][name])
        except ClientError as exc:
            self._drop(staged)
            if _missing(exc):  # the source was deleted meanwhile
                raise FileNotFoundError(f"a file of {source_id} is gone") from exc
            raise
        except BaseException:
            self._drop(staged)
            raise
        return staged

    def _drop(self, staged: Staged) -> None:
        """Remove a failed stage's uploads, keeping the failure that caused it; the sweep catches what this misses."""
        with contextlib.suppress(Exception):
            self._delete_prefix(f"{staged.task_id}/{staged.location}/")

    def commit(self, staged: Staged) -> None:
        """One PUT of the manifest: readers see the old generation or the new one, never a mix (S3 is strongly
        consistent for reads after writes)."""
        body = {"generation": staged.location, "files": staged.files, "published_at": time.time()}
        self._s3.put_object(
            Bucket=self.bucket, Key=self.prefix + f"{staged.task_id}/{MANIFEST}", Body=json.dumps(body).encode(),
            ContentType="application/json", CacheControl="no-store",
        )  # fmt: skip
        staged.committed = True

    def discard(self, staged: Staged) -> None:
        if not staged.committed:
            self._delete_prefix(f"{staged.task_id}/{staged.location}/")

    # --- reading ------------------------------------------------------------------------------------------------

    def _manifest(self, task_id: uuid.UUID) -> dict[str, Any] | None:
        try:
            answer = self._s3.get_object(Bucket=self.bucket, Key=self.prefix + f"{task_id}/{MANIFEST}")
        except ClientError as exc:
            if _missing(exc):
                return None
            raise
        manifest = json.loads(answer["Body"].read())
        if not isinstance(manifest.get("generation"), str) or not isinstance(manifest.get("files"), dict):
            raise ValueError(f"malformed asset manifest for {task_id}")
        return manifest

    def _live_key(self, task_id: uuid.UUID, filename: str) -> tuple[dict[str, Any], str] | None:
        if not valid_filename(filename):
            return None
        manifest = self._manifest(task_id)
        if manifest is None or filename not in manifest["files"]:
            return None
        return manifest, self._key(task_id, manifest["generation"], filename)

    def files_of(self, task_id: uuid.UUID) -> list[str] | None:
        manifest = self._manifest(task_id)
        return sorted(manifest["files"]) if manifest is not None else None

    def stat(self, task_id: uuid.UUID, filename: str) -> StoredFile | None:
        found = self._live_key(task_id, filename)
        if found is None:
            return None
        manifest, _ = found
        return StoredFile(int(manifest["files"][filename]), float(manifest.get("published_at", 0.0)))

    def path_of(self, task_id: uuid.UUID, filename: str) -> Path | None:
        """The file in the local cache, downloaded first when it is not there; None when it is not published."""
        found = self._live_key(task_id, filename)
        if found is None:
            return None
        manifest, key = found
        return self._cached(key, self._cache / str(task_id) / manifest["generation"] / filename)

    def _cached(self, key: str, path: Path) -> Path | None:
        try:
            os.utime(path)  # recently used: evicted last
            return path
        except FileNotFoundError:  # not cached, or evicted a moment ago: download it (again)
            pass
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial")
        try:
            self._s3.download_file(self.bucket, key, str(partial))
            os.replace(partial, path)  # readers see a whole file or none
        except ClientError as exc:
            if _missing(exc):
                return None
            raise
        finally:
            partial.unlink(missing_ok=True)
        self._trim_cache()
        return path

    def _trim_cache(self) -> None:
        """Evict the least recently used cached files until the cache fits its bound."""
        with self._trim_lock:
            files = []
            for folder, _, names in os.walk(self._cache):
                for name in names:
                    with contextlib.suppress(FileNotFoundError):  # evicted by another process meanwhile
                        info = os.stat(os.path.join(folder, name))
                        files.append((info.st_mtime, info.st_size, os.path.join(folder, name)))
            total = sum(size for _, size, _ in files)
            cutoff = time.time() - CACHE_GRACE_S
            for mtime, size, path in sorted(files):
                if total <= self.cache_max_bytes or mtime > cutoff:
                    break
                with contextlib.suppress(FileNotFoundError):  # evicted by another process meanwhile
                    os.unlink(path)
                total -= size

    def presigned_url(self, task_id: uuid.UUID, filename: str, expires_in: int) -> str | None:
        """A short-lived GET URL on the bucket itself (for a redirect); None when the file is not published."""
        found = self._live_key(task_id, filename)
        if found is None:
            return None
        params = {
            "Bucket": self.bucket, "Key": found[1], "ResponseContentType": content_type(filename),
            "ResponseContentDisposition": f'inline; filename="{filename}"',
        }  # fmt: skip
        return self._presigner.generate_presigned_url("get_object", Params=params, ExpiresIn=max(1, expires_in))

    def open_read(self, task_id: uuid.UUID, filename: str, byte_range: tuple[int | None, int | None] | None) -> (
        RemoteRead | None
    ):  # fmt: skip
        """The object's bytes, or one range of them (`(start, end)` inclusive, `(None, n)` the last n bytes), for
        streaming; RangeNotSatisfiable for a range past the end; None when the file is not published."""
        found = self._live_key(task_id, filename)
        if found is None:
            return None
        manifest, key = found
        size = int(manifest["files"][filename])
        start, end = 0, size - 1
        if byte_range is not None:
            first, last = byte_range
            if first is None:  # a suffix: the last `last` bytes
                start = max(0, size - (last or 0))
            else:
                start, end = first, min(end, last if last is not None else end)
            if start >= size or start > end or (first is None and not last):
                raise RangeNotSatisfiable(size)
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if byte_range is not None:
            args["Range"] = f"bytes={start}-{end}"
        try:
            answer = self._s3.get_object(**args)
        except ClientError as exc:
            if _missing(exc):
                return None
            raise
        return RemoteRead(answer["Body"], size, start, end - start + 1, byte_range is not None)

    # --- deleting and sweeping ----------------------------------------------------------------------------------

    def delete(self, task_id: uuid.UUID) -> None:
        self._delete_prefix(f"{task_id}/")
        shutil.rmtree(self._cache / str(task_id), ignore_errors=True)
        self.delete_inputs(task_id)

    def task_ids(self) -> list[uuid.UUID]:
        ids = []
        pages = self._s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix, Delimiter="/"
        )
        for page in pages:
            for common in page.get("CommonPrefixes", []):
                try:
                    ids.append(uuid.UUID(common["Prefix"][len(self.prefix) :].rstrip("/")))
                except ValueError:
                    continue
        return ids

    def sweep_unreferenced(self, older_than: datetime) -> int:
        """Delete generations that no manifest names and that were written before `older_than` (a lost attempt
        that could not clean up, an upload cut by a crash, a replaced publish); how many generations went."""
        stale: dict[uuid.UUID, dict[str, list[str]]] = {}
        pages = self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix)
        for page in pages:
            for item in page.get("Contents", []):
                parts = item["Key"][len(self.prefix) :].split("/")
                if len(parts) != 3 or parts[0] + "/" == INPUTS or item["LastModified"] >= older_than:
                    continue
                try:
                    task_id = uuid.UUID(parts[0])
                except ValueError:
                    continue
                stale.setdefault(task_id, {}).setdefault(parts[1], []).append(item["Key"])
        removed = 0
        for task_id, generations in stale.items():
            manifest = self._manifest(task_id)
            live = manifest["generation"] if manifest is not None else None
            for generation, keys in generations.items():
                if generation != live:
                    self._delete_keys(keys)
                    removed += 1
        return removed

    def _key(self, task_id: uuid.UUID, generation: str, filename: str) -> str:
        return self.prefix + f"{task_id}/{generation}/{filename}"

    def _delete_prefix(self, prefix: str) -> None:
        pages = self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix + prefix)
        for page in pages:
            self._delete_keys([item["Key"] for item in page.get("Contents", [])])

    def _delete_keys(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
            batch = [{"Key": key} for key in keys[start : start + 1000]]
            self._s3.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})

    # --- inputs -------------------------------------------------------------------------------------------------

    def save_input(self, task_id: uuid.UUID, filename: str, content: bytes) -> None:
        if not valid_filename(filename):
            raise ValueError(f"unsafe input name {filename!r}")
        self._s3.put_object(Bucket=self.bucket, Key=self._input_key(task_id, filename), Body=content)

    def input_path(self, task_id: uuid.UUID, filename: str) -> Path | None:
        if not valid_filename(filename):
            return None
        return self._cached(self._input_key(task_id, filename), self._cache / ".inputs" / str(task_id) / filename)

    def input_ids(self) -> dict[uuid.UUID, float]:
        stored: dict[uuid.UUID, float] = {}
        pages = self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix + INPUTS)
        for page in pages:
            for item in page.get("Contents", []):
                try:
                    task_id = uuid.UUID(item["Key"][len(self.prefix + INPUTS) :].split("/")[0])
                except ValueError:
                    continue
                stored[task_id] = max(stored.get(task_id, 0.0), item["LastModified"].timestamp())
        return stored

    def delete_inputs(self, task_id: uuid.UUID) -> None:
        self._delete_prefix(f"{INPUTS}{task_id}/")
        shutil.rmtree(self._cache / ".inputs" / str(task_id), ignore_errors=True)

    def _input_key(self, task_id: uuid.UUID, filename: str) -> str:
        return self.prefix + f"{INPUTS}{task_id}/{filename}"
