"""The S3 asset store against a real S3 API (moto's server on loopback, real boto3 requests): publish, read, copy,
delete, inputs, names, the sweep of unreferenced uploads, the read cache, ranges and presigned URLs."""

from __future__ import annotations

import os
import time
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from app.core.assets import AssetStore
from app.core.clock import utcnow
from app.core.config import Settings
from app.core.s3_assets import RangeNotSatisfiable, S3AssetStore
from app.core.storage import store_from_settings
from tests.app.conftest import bucket_keys, s3_client, use_s3

# The rule docs/deployment.md gives for redirect mode.
BUCKET_CORS_RULE = {
    "AllowedOrigins": ["*"], "AllowedMethods": ["GET", "HEAD"], "AllowedHeaders": ["Range"],
    "ExposeHeaders": ["Content-Length", "Content-Range", "ETag"], "MaxAgeSeconds": 3600,
}  # fmt: skip


def work(tmp_path: Path, files: dict[str, bytes]) -> Path:
    folder = tmp_path / f"work-{uuid.uuid4().hex[:6]}"
    folder.mkdir()
    for name, content in files.items():
        (folder / name).write_bytes(content)
    return folder


def keys(store: S3AssetStore, task_id: uuid.UUID) -> list[str]:
    return bucket_keys(store.location.endpoint_url or "", store.bucket, f"mf/{task_id}/")


class TestPublish:
    def test_round_trip(self, s3_store: S3AssetStore, tmp_path: Path) -> None:
        task_id = uuid.uuid4()
        s3_store.publish(task_id, work(tmp_path, {"model.glb": b"glTF-one", "preview.png": b"png"}),
                         ["model.glb", "preview.png"])  # fmt: skip
        assert s3_store.files_of(task_id) == ["model.glb", "preview.png"]
        assert s3_store.stat(task_id, "model.glb").size == len(b"glTF-one")  # type: ignore[union-attr]
        path = s3_store.path_of(task_id, "model.glb")
        assert path is not None and path.read_bytes() == b"glTF-one"
        assert path.is_relative_to(s3_store.root / ".cache")
        assert s3_store.path_of(task_id, "model.glb") == path  # the second read is the cached file
        assert s3_store.path_of(task_id, "missing.glb") is None
        assert s3_store.path_of(uuid.uuid4(), "model.glb") is None
        live = [k for k in keys(s3_store, task_id) if not k.endswith("manifest.json")]
        assert len(live) == 2 and all(k.startswith(f"mf/{task_id}/") for k in live)

    def test_a_stage_is_invisible_until_committed(self, s3_store: S3AssetStore, tmp_path: Path) -> None:
        task_id = uuid.uuid4()
        staged = s3_store.stage(task_id, work(tmp_path, {"model.glb": b"staged"}), ["model.glb"])
        assert len(keys(s3_store, task_id)) == 1  # uploaded ...
        assert s3_store.files_of(task_id) is None and s3_store.path_of(task_id, "model.glb") is None  # ... unseen
        s3_store.commit(staged)
        assert s3_store.path_of(task_id, "model.glb").read_bytes() == b"staged"  # type: ignore[union-attr]
        s3_store.discard(staged)  # a committed stage is never discarded
        assert s3_store.files_of(task_id) == ["model.glb"]

    def test_a_discarded_stage_leaves_nothing(self, s3_store: S3AssetStore, tmp_path: Path) -> None:
        task_id = uuid.uuid4()
        staged = s3_store.stage(task_id, work(tmp_path, {"a.glb": b"1", "b.png": b"2"}), ["a.glb", "b.png"])
        s3_store.discard(staged)
        assert keys(s3_store, task_id) == []

    def test_a_publish_replaces_the_files_whole(self, s3_store: S3AssetStore, tmp_path: Path) -> None:
        task_id = uuid.uuid4()
        s3_store.publish(task_id, work(tmp_path, {"old.obj": b"old", "model.glb": b"v1"}), ["old.obj", "model.glb"])
        s3_store.publish(task_id, work(tmp_path, {"model.glb": b"v2"}), ["model.glb"])
        assert s3_store.files_of(task_id) == ["model.glb"]
        assert s3_store.path_of(task_id, "old.obj") is None
        assert s3_store.path_of(task_id, "model.glb").read_bytes() == b"v2"  # type: ignore[union-attr]

    def test_a_copy_is_server_side_and_refuses_a_gone_source(self, s3_store: S3AssetStore, tmp_path: Path) -> None:
        source, copy, late = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        s3_store.publish(source, work(tmp_path, {"model.glb": b"reuse", "preview.png": b"p"}),
                         ["model.glb", "preview.png"])  # fmt: skip
        s3_store.commit(s3_store.stage_copy(source, copy))
        assert s3_store.files_of(copy) == ["model.glb", "preview.png"]
        assert s3_store.path_of(copy, "model.glb").read_bytes() == b"reuse"  # type: ignore[union-attr]
        s3_store.delete(source)
        assert s3_store.path_of(copy, "model.glb") is not None  # a copy, not a reference
        with pytest.raises(FileNotFoundError):
            s3_store.stage_copy(source, late)
        assert keys(s3_store, late) == []


class TestNames:
    @pytest.mark.parametrize("name", ["../escape.glb", "a/b.glb", ".hidden", "..", "x" * 200, "a\\b.glb"])
    def test_unsafe_names_never_become_keys(self, s3_store: S3AssetStore, tmp_path: Path, name: str) -> None:
        task_id = uuid.uuid4()
        with pytest.raises(ValueError, match="unsafe"):
            s3_store.stage(task_id, tmp_path, [name])
        with pytest.raises(ValueError, match="unsafe"):
            s3_store.save_input(task_id, name, b"x")
        assert s3_store.path_of(task_id, name) is None and s3_store.input_path(task_id, name) is None
        assert bucket_keys(s3_store.location.endpoint_url or "", s3_store.bucket) == []

    def test_a_traversing_name_reads_nothing_outside_the_task(self, s3_store: S3AssetStore, tmp_path: Path) -> None:
        victim, attacker = uuid.uuid4(), uuid.uuid4()
        s3_store.publish(victim, work(tmp_path, {"model.glb": b"secret"}), ["model.glb"])
        s3_store.publish(attacker, work(tmp_path, {"model.glb": b"mine"}), ["model.glb"])
        for name in (f"../{victim}/model.glb", f"..%2F{victim}%2Fmodel.glb", "../manifest.json"):
            assert s3_store.path_of(attacker, name) is None
            assert s3_store.presigned_url(attacker, name, 60) is None

    def test_local_folders_do_not_exist(self, s3_store: S3AssetStore) -> None:
        with pytest.raises(NotImplementedError):
            s3_store.task_dir(uuid.uuid4())


class TestDeleteAndSweep:
    def test_delete_removes_outputs_inputs_and_cache(self, s3_store: S3AssetStore, tmp_path: Path) -> None:
        task_id, other = uuid.uuid4(), uuid.uuid4()
        s3_store.publish(task_id, work(tmp_path, {"model.glb": b"x"}), ["model.glb"])
        s3_store.publish(other, work(tmp_path, {"model.glb": b"y"}), ["model.glb"])
        s3_store.save_input(task_id, "image_url_0.png", b"png")
        assert s3_store.path_of(task_id, "model.glb") is not None
        s3_store.delete(task_id)
        endpoint = s3_store.location.endpoint_url or ""
        assert keys(s3_store, task_id) == [] and bucket_keys(endpoint, s3_store.bucket, f"mf/.inputs/{task_id}/") == []
        assert not (s3_store.root / ".cache" / str(task_id)).exists()
        assert s3_store.files_of(other) == ["model.glb"]  # nothing else went
        assert s3_store.task_ids() == [other]

    def test_sweep_removes_old_unreferenced_uploads_only(self, s3_store: S3AssetStore, tmp_path: Path) -> None:
        task_id, orphan = uuid.uuid4(), uuid.uuid4()
        s3_store.publish(task_id, work(tmp_path, {"model.glb": b"live"}), ["model.glb"])
        s3_store.stage(task_id, work(tmp_path, {"model.glb": b"zombie"}), ["model.glb"])  # a crash before commit
        s3_store.stage(orphan, work(tmp_path, {"model.glb": b"cut"}), ["model.glb"])  # its task was deleted since
        assert s3_store.sweep_unreferenced(utcnow() - timedelta(hours=1)) == 0  # too young: may be about to commit
        assert len(keys(s3_store, task_id)) == 3
        assert s3_store.sweep_unreferenced(utcnow() + timedelta(minutes=1)) == 2
        assert len(keys(s3_store, task_id)) == 2 and keys(s3_store, orphan) == []
        assert s3_store.path_of(task_id, "model.glb").read_bytes() == b"live"  # type: ignore[union-attr]


class TestInputs:
    def test_round_trip(self, s3_store: S3AssetStore) -> None:
        task_id = uuid.uuid4()
        s3_store.save_input(task_id, "image_url_0.png", b"\x89PNG-bytes")
        path = s3_store.input_path(task_id, "image_url_0.png")
        assert path is not None and path.read_bytes() == b"\x89PNG-bytes"
        assert s3_store.input_path(task_id, "other.png") is None
        assert list(s3_store.input_ids()) == [task_id]
        assert s3_store.input_ids()[task_id] > time.time() - 600
        assert s3_store.task_ids() == []  # inputs are not published files
        s3_store.delete_inputs(task_id)
        assert s3_store.input_ids() == {} and not path.exists()


class TestReads:
    def test_the_cache_evicts_the_least_recently_used(self, s3_store: S3AssetStore, tmp_path: Path) -> None:
        first, second = uuid.uuid4(), uuid.uuid4()
        s3_store.publish(first, work(tmp_path, {"a.bin": b"a" * 600}), ["a.bin"])
        s3_store.publish(second, work(tmp_path, {"b.bin": b"b" * 600}), ["b.bin"])
        s3_store.cache_max_bytes = 1000
        old = s3_store.path_of(first, "a.bin")
        assert old is not None
        past = time.time() - 7200
        os.utime(old, (past, past))  # last used two hours ago
        new = s3_store.path_of(second, "b.bin")
        assert new is not None and new.exists() and not old.exists()
        again = s3_store.path_of(first, "a.bin")  # evicted files come back from the bucket
        assert again is not None and again.read_bytes() == b"a" * 600
        assert new.exists(), "a file used within the last hour is never evicted"

    @pytest.mark.parametrize(
        ("byte_range", "expected", "partial"),
        [(None, b"0123456789", False), ((0, 3), b"0123", True), ((5, None), b"56789", True),
         ((None, 4), b"6789", True), ((8, 100), b"89", True)],
    )  # fmt: skip
    def test_ranges(self, s3_store: S3AssetStore, tmp_path: Path, byte_range, expected: bytes, partial: bool) -> None:  # type: ignore[no-untyped-def]
        task_id = uuid.uuid4()
        s3_store.publish(task_id, work(tmp_path, {"model.glb": b"0123456789"}), ["model.glb"])
        read = s3_store.open_read(task_id, "model.glb", byte_range)
        assert read is not None
        assert b"".join(read.chunks()) == expected
        assert (read.partial, read.length, read.size) == (partial, len(expected), 10)

    @pytest.mark.parametrize("byte_range", [(10, None), (12, 20), (None, 0)])
    def test_unsatisfiable_ranges(self, s3_store: S3AssetStore, tmp_path: Path, byte_range) -> None:  # type: ignore[no-untyped-def]
        task_id = uuid.uuid4()
        s3_store.publish(task_id, work(tmp_path, {"model.glb": b"0123456789"}), ["model.glb"])
        with pytest.raises(RangeNotSatisfiable):
            s3_store.open_read(task_id, "model.glb", byte_range)

    def test_presigned_url_serves_the_live_file(self, s3_store: S3AssetStore, tmp_path: Path) -> None:
        task_id = uuid.uuid4()
        s3_store.publish(task_id, work(tmp_path, {"model.glb": b"glTF-presigned"}), ["model.glb"])
        url = s3_store.presigned_url(task_id, "model.glb", 60)
        assert url is not None and url.startswith(f"{s3_store.location.endpoint_url}/{s3_store.bucket}/mf/{task_id}/")
        assert "X-Amz-Signature=" in url and "X-Amz-Expires=60" in url  # SigV4, as every S3 implementation takes
        answer = httpx.get(url)
        assert answer.status_code == 200 and answer.content == b"glTF-presigned"
        assert answer.headers["content-type"] == "model/gltf-binary"
        assert answer.headers["content-disposition"] == 'inline; filename="model.glb"'

    def test_the_documented_bucket_cors_rule_lets_browsers_read(self, s3_store: S3AssetStore, tmp_path: Path) -> None:
        # A page on another origin follows our 302 to the bucket: its Origin is then "null" (a tainted origin).
        client = s3_client(s3_store.location.endpoint_url or "")
        client.put_bucket_cors(Bucket=s3_store.bucket, CORSConfiguration={"CORSRules": [BUCKET_CORS_RULE]})
        task_id = uuid.uuid4()
        s3_store.publish(task_id, work(tmp_path, {"model.glb": b"glTF"}), ["model.glb"])
        url = s3_store.presigned_url(task_id, "model.glb", 60)
        assert url is not None
        for origin in ("null", "https://app.example.com"):
            answer = httpx.get(url, headers={"Origin": origin, "Range": "bytes=0-1"})
            assert answer.status_code == 206 and answer.content == b"gl"
            assert answer.headers.get("access-control-allow-origin") in ("*", origin)


class TestSettings:
    def test_the_factory_follows_the_setting(self, settings: Settings, s3_endpoint: str, s3_bucket: str) -> None:
        assert type(store_from_settings(settings)) is AssetStore
        store = store_from_settings(use_s3(settings, s3_endpoint, s3_bucket))
        assert isinstance(store, S3AssetStore) and store.root == settings.assets_path
        assert store.prefix == "mf/" and store.bucket == s3_bucket

    def test_s3_needs_a_bucket_and_whole_credentials(self) -> None:
        with pytest.raises(ValidationError, match="S3_BUCKET"):
            Settings(app_env="testing", asset_store="s3")
        with pytest.raises(ValidationError, match="go together"):
            Settings(app_env="testing", asset_store="s3", s3_bucket="b", s3_access_key_id="k")
        assert Settings(app_env="testing", asset_store="s3", s3_bucket="b", s3_url_mode="proxy").s3_url_mode == "proxy"
