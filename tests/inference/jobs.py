"""Helpers for tests that call the worker's jobs directly, without a worker process."""

from __future__ import annotations

from app.core.assets import AssetStore
from inference.jobs.generate_model import JobContext


def job_context(settings, db, store: AssetStore | None = None) -> JobContext:  # type: ignore[no-untyped-def]
    """A job context without model runners: enough for every path that fails, finishes or publishes."""
    return JobContext(
        settings=settings,
        sessionmaker=db,
        store=store if store is not None else AssetStore(settings.assets_path),
        runners=None,  # type: ignore[arg-type]
    )
