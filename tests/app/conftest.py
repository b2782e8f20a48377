"""A real S3 API for the S3 asset store's tests: moto's server on a loopback port, one bucket per test."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from pydantic import SecretStr

from app.core.config import AssetStoreKind, Settings
from app.core.s3_assets import S3AssetStore, S3Location

# moto accepts any credentials; explicit ones keep boto3 from searching the machine (or an instance role) for some.
KEY_ID, SECRET = "test-key-id", "test-secret-key"
REGION = "us-east-1"


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on a free loopback port, for the whole session: real HTTP, real SigV4 requests."""
    from moto.server import ThreadedMotoServer  # half a second to import: only sessions with S3 tests pay it

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one access line per S3 request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def s3_client(endpoint: str) -> Any:
    return boto3.client("s3", endpoint_url=endpoint, region_name=REGION, aws_access_key_id=KEY_ID,
                        aws_secret_access_key=SECRET)  # fmt: skip


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> str:
    bucket = f"mf-test-{uuid.uuid4().hex[:12]}"
    s3_client(s3_endpoint).create_bucket(Bucket=bucket)
    return bucket


def use_s3(settings: Settings, endpoint: str, bucket: str) -> Settings:
    """Put `settings` on the S3 store (in place: the api and worker fixtures read the same object)."""
    settings.asset_store = AssetStoreKind.s3
    settings.s3_endpoint_url = endpoint
    settings.s3_bucket = bucket
    settings.s3_prefix = "mf"
    settings.s3_region = REGION
    settings.s3_access_key_id = KEY_ID
    settings.s3_secret_access_key = SecretStr(SECRET)
    return settings


@pytest.fixture
def s3_store(tmp_path, s3_endpoint: str, s3_bucket: str) -> S3AssetStore:  # type: ignore[no-untyped-def]
    location = S3Location(bucket=s3_bucket, prefix="mf", endpoint_url=s3_endpoint, region=REGION,
                          access_key_id=KEY_ID, secret_access_key=SECRET)  # fmt: skip
    return S3AssetStore(tmp_path / "assets", location)


def bucket_keys(endpoint: str, bucket: str, prefix: str = "") -> list[str]:
    pages = s3_client(endpoint).get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))
