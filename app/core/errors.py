"""Domain errors: each carries the HTTP status the edge answers with, and a Meshy-style message."""

from __future__ import annotations

from typing import ClassVar


class AppError(Exception):
    status_code: ClassVar[int] = 500
    message: ClassVar[str] = "Internal server error"

    def __init__(self, message: str | None = None) -> None:
        self.detail = message or self.message
        super().__init__(self.detail)


class BadRequest(AppError):
    status_code = 400
    message = "Bad request"


class Unauthorized(AppError):
    status_code = 401
    message = "Invalid API key"


class NotFound(AppError):
    status_code = 404
    message = "Task not found"


class Conflict(AppError):
    status_code = 409
    message = "Conflict"


class Forbidden(AppError):
    status_code = 403
    message = "Forbidden"
