"""The asset store a process uses, chosen by settings: the local directory (the default) or an S3-compatible bucket."""

from __future__ import annotations

from app.core.assets import AssetStore
from app.core.config import AssetStoreKind, Settings
from app.core.s3_assets import S3AssetStore, S3Location


def s3_location(settings: Settings) -> S3Location:
    secret = settings.s3_secret_access_key
    return S3Location(
        bucket=settings.s3_bucket or "", prefix=settings.s3_prefix, endpoint_url=settings.s3_endpoint_url,
        public_endpoint_url=settings.s3_public_endpoint_url, region=settings.s3_region,
        access_key_id=settings.s3_access_key_id, secret_access_key=secret.get_secret_value() if secret else None,
    )  # fmt: skip


def store_from_settings(settings: Settings) -> AssetStore:
    """The one place a store is built (API lifespan, worker startup, the CLI). Both keep their work folders and
    caches under the local asset directory."""
    if settings.asset_store == AssetStoreKind.s3:
        return S3AssetStore(settings.assets_path, s3_location(settings), cache_max_bytes=settings.s3_cache_max_bytes)
    return AssetStore(settings.assets_path)
