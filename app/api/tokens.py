"""Signing and checking stream tokens: JWTs scoped to one account and, optionally, one task's stream."""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass

import jwt

AUDIENCE = "meshfoundry:stream"
ALGORITHM = "HS256"


class StreamTokenInvalid(Exception):
    """The token is expired, tampered with, for another task, or not a stream token."""


@dataclass(frozen=True)
class StreamGrant:
    account_id: uuid.UUID
    key_id: uuid.UUID
    task_id: uuid.UUID | None


def _key(secret: bytes) -> bytes:
    # A key of its own, so a stream token can never pass for anything else signed with the server secret.
    return hashlib.sha256(b"stream-token:" + secret).digest()


def issue(
    secret: bytes, *, account_id: uuid.UUID, key_id: uuid.UUID, task_id: uuid.UUID | None, ttl_s: int
) -> tuple[str, int]:
    """A signed token for `account_id` via `key_id` (and only `task_id`, when given): it and its expiry (epoch s).

    The key id goes in, so revoking the key also ends its stream tokens.
    """
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": str(account_id), "key": str(key_id), "aud": AUDIENCE, "iat": now, "exp": now + ttl_s,
    }  # fmt: skip
    if task_id is not None:
        claims["task"] = str(task_id)
    return jwt.encode(claims, _key(secret), algorithm=ALGORITHM), now + ttl_s


def verify(secret: bytes, token: str, *, task_id: uuid.UUID) -> StreamGrant:
    try:
        claims = jwt.decode(
            token, _key(secret), algorithms=[ALGORITHM], audience=AUDIENCE,
            options={"require": ["exp", "sub", "aud", "key"]},
        )  # fmt: skip
        account_id = uuid.UUID(claims["sub"])
        key_id = uuid.UUID(claims["key"])
        scoped = uuid.UUID(claims["task"]) if "task" in claims else None
    except jwt.ExpiredSignatureError as exc:
        raise StreamTokenInvalid("Stream token expired") from exc
    except (jwt.InvalidTokenError, ValueError, KeyError) as exc:
        raise StreamTokenInvalid("Invalid stream token") from exc
    if scoped is not None and scoped != task_id:
        raise StreamTokenInvalid("Stream token is not valid for this task")
    return StreamGrant(account_id=account_id, key_id=key_id, task_id=scoped)
