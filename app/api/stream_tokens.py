"""Short-lived stream tokens (JWT) so a browser's EventSource, which cannot send headers, can follow a task."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from app.api import testmode
from app.api.deps import ApiKeyAuth, ReadSession, State
from app.api.errors import error_responses
from app.api.tokens import issue
from app.core.errors import BadRequest
from app.core.ids import parse_id
from app.tasks.errors import TaskNotFound
from app.tasks.repository import TaskRepository

router = APIRouter(prefix="/openapi/v1/stream-tokens", tags=["Streaming"])


class StreamTokenRequest(BaseModel):
    task_id: str | None = Field(None, description="Limit the token to this task's stream (recommended).")
    ttl_seconds: int = Field(600, ge=10, le=3600, description="Lifetime, 10 s to 1 h.")


class StreamToken(BaseModel):
    token: str = Field(description="Pass as `?token=` to `GET .../{id}/stream`; works on no other route.")
    expires_at: int = Field(description="Epoch milliseconds.")


@router.post("", responses=error_responses(400, 401, 404, 429))
async def create_stream_token(
    principal: ApiKeyAuth, session: ReadSession, state: State, body: StreamTokenRequest | None = None
) -> StreamToken:
    """A short-lived token for `new EventSource(".../{id}/stream?token=...")` in a browser."""
    body = body or StreamTokenRequest()
    task_id = None
    if body.task_id is not None:
        task_id = parse_id(body.task_id)
        owned = (
            task_id
            and not principal.test_mode
            and await TaskRepository(session).get_owned_any(task_id, principal.account_id)
        )
        if not owned and not (principal.test_mode and task_id in testmode.SAMPLES):
            raise TaskNotFound()
    if body.ttl_seconds > state.settings.stream_token_max_ttl_s:
        raise BadRequest(f"ttl_seconds must be at most {state.settings.stream_token_max_ttl_s}")
    token, expires = issue(
        state.secret, account_id=principal.account_id, key_id=principal.key_id, task_id=task_id,
        ttl_s=body.ttl_seconds,
    )  # fmt: skip
    return StreamToken(token=token, expires_at=expires * 1000)
