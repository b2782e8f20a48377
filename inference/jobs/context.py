"""What every job and step shares: the job context, Meshy-shaped task errors, and the invalid-input signal."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.assets import AssetStore
from app.core.config import Settings
from inference.runtime import RunnerSet


@dataclass
class JobContext:
    settings: Settings
    sessionmaker: async_sessionmaker[AsyncSession]
    store: AssetStore
    runners: RunnerSet


# Meshy's task errors carry `doc_url` whenever they carry `code` (meshy-api.md §2.7); the codes are Meshy's.
ERRORS_DOC = "https://docs.meshy.ai/en/api/errors#"


def task_error(message: str, kind: str = "server_error", code: str | None = None) -> dict[str, Any]:
    """A task_error as Meshy shapes it: `type` and `message`, plus `code` and its `doc_url` when there is a code."""
    error: dict[str, Any] = {"type": kind, "message": message}
    if code:
        error["code"] = code
        error["doc_url"] = ERRORS_DOC + code.replace("_", "-")
    return error


TIMED_OUT = task_error("The task timed out.", "timeout", "timeout")
# One message however the exhaustion is noticed: by the reaper (stale heartbeat) or by a worker claiming the task.
LOST_WORKER = task_error("The worker running this task stopped; retries are exhausted.")
# A runner's CUDA out-of-memory error, again after idle models were unloaded (inference.runtime.OutOfGpuMemory).
OUT_OF_MEMORY = task_error("The GPU ran out of memory for this task, again after freeing memory and retrying once.")


class InvalidInput(Exception):
    """The task's own input is unusable; the message is shown to the caller in task_error, with Meshy's `code`."""

    def __init__(self, message: str, code: str = "invalid_input") -> None:
        super().__init__(message)
        self.code = code
