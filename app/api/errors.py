"""The only place that decides the wire shape of errors: Meshy's `{"message": "..."}`."""

from __future__ import annotations

import logging
import traceback
from typing import Any

import asyncpg
import redis.exceptions
import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.core.errors import AppError
from app.core.rowdb import PoolExhausted

log = logging.getLogger(__name__)


def _describe(error: dict[str, Any]) -> str:
    if error.get("type") == "json_invalid":
        return "Invalid JSON body"
    if tuple(error.get("loc", ())) == ("body",) and error.get("type") in ("model_attributes_type", "dict_type"):
        # The body arrived as text: most often curl -d without -H 'Content-Type: application/json'.
        return "The request body must be JSON, sent with Content-Type: application/json"
    loc = [str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path", "header")]
    # Discriminated unions put the tag in the location ("preview.prompt"): drop it for a plain field name.
    if loc and loc[0] in ("preview", "refine"):
        loc = loc[1:]
    field = ".".join(loc)
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    if field == "sort_by":  # " created_at" (an unencoded "+") is accepted, never offered
        return "Invalid parameter sort_by: must be '+created_at' or '-created_at'"
    if error.get("type") == "missing":
        return f"Missing required parameter: {field}" if field else "Missing request body"
    if error.get("type") == "union_tag_invalid" or error.get("type") == "union_tag_not_found":
        return "Invalid mode: must be 'preview' or 'refine'" if "mode" in message else message
    return f"Invalid parameter {field}: {message}" if field else message


# Routes of the seed services whose own clients read FastAPI's `{"detail"}`: their errors carry both keys.
_DETAIL_PATHS = frozenset({"/generate-motion"})
_DETAIL_PREFIX = "/api/v1/"  # 3DAIGC-API's routes; their 404s also carry its `error: NOT_FOUND` wrapper
_DICE_TALK_PREFIX = "/api/v1/synthesis"  # DICE-Talk's: `{"error": ...}`


def meshy_error(
    status_code: int, message: str, headers: dict[str, str] | None = None, request: Request | None = None
) -> JSONResponse:
    body: dict[str, Any] = {"message": message}
    if request is not None:
        path = request.url.path
        if path in _DETAIL_PATHS or path.startswith(_DETAIL_PREFIX):
            body["detail"] = message
        if path.startswith(_DICE_TALK_PREFIX):  # DICE-Talk's clients read `error`
            body = {"message": message, "detail": message, "error": message}
        elif path.startswith(_DETAIL_PREFIX) and status_code == 404:
            body = {"error": "NOT_FOUND", "message": "Resource not found", "detail": message}
    return JSONResponse(body, status_code=status_code, headers=headers)


# A dependency went away (a restart, a failover, a full connection pool): the request may be retried as is.
_DB_LOST = (
    asyncpg.PostgresConnectionError,  # ConnectionDoesNotExistError, ConnectionFailureError, ...
    asyncpg.exceptions.OperatorInterventionError,  # AdminShutdown, CrashShutdown, CannotConnectNow (starting up)
    asyncpg.exceptions.TooManyConnectionsError,
    PoolExhausted,  # the read pool had no free connection in time
)
_REDIS_LOST = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
RETRY_AFTER_S = 2


def unavailable(exc: BaseException) -> str | None:
    """'database' or 'Redis' when `exc` (or what caused it) is a lost or refused connection, else None."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        err = stack.pop()
        if err is None or id(err) in seen:
            continue
        seen.add(id(err))
        if isinstance(err, _REDIS_LOST):
            return "Redis"
        if isinstance(err, sqlalchemy.exc.DBAPIError) and err.connection_invalidated:
            return "database"
        if isinstance(err, (sqlalchemy.exc.TimeoutError, *_DB_LOST)):  # pool exhausted waiting, or a lost server
            return "database"
        # "connection is closed" is an outage; asyncpg's other interface errors ("another operation is in
        # progress") are our bugs and stay 500s, with their tracebacks.
        if isinstance(err, asyncpg.InterfaceError) and "closed" in str(err):
            return "database"
        if isinstance(err, sqlalchemy.exc.DBAPIError) and isinstance(err.orig, (OSError, *_DB_LOST)):
            return "database"
        if isinstance(err, OSError) and (where := _raised_in(err)) is not None:  # e.g. the server's socket is gone
            return where
        stack += [getattr(err, "orig", None), err.__cause__, err.__context__]
    return None


def _raised_in(err: BaseException) -> str | None:
    """'database' or 'Redis' when an OS-level error (refused, reset, no socket) came from their client libraries."""
    for frame, _line in traceback.walk_tb(err.__traceback__):
        filename = frame.f_code.co_filename
        if "/asyncpg/" in filename:
            return "database"
        if "/redis/" in filename:
            return "Redis"
    return None


def install_error_handlers(app: FastAPI) -> None:
    async def _dependency_lost(request: Request, exc: Exception) -> JSONResponse:
        what = unavailable(exc)
        if what is None:
            return _internal(request, exc)
        log.warning("%s unavailable on %s %s (request %s): %s", what, request.method, request.url.path,
                    getattr(request.state, "request_id", "-"), type(exc).__name__)  # fmt: skip
        return meshy_error(
            503, f"Service temporarily unavailable: the connection to the {what} was lost. Retry in a moment.",
            {"Retry-After": str(RETRY_AFTER_S)}, request,
        )  # fmt: skip

    # Registered by class (not only through the catch-all below): Starlette re-raises what reaches the catch-all,
    # and these are expected events, not crashes.
    for cls in (sqlalchemy.exc.SQLAlchemyError, *_DB_LOST, asyncpg.InterfaceError, *_REDIS_LOST, OSError):
        app.add_exception_handler(cls, _dependency_lost)  # type: ignore[arg-type]

    @app.exception_handler(AppError)
    async def _app_error(request: Request, exc: AppError) -> JSONResponse:
        return meshy_error(exc.status_code, exc.detail, getattr(exc, "headers", None), request)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        return meshy_error(400, _describe(errors[0]) if errors else "Bad request", request=request)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "Error"
        return meshy_error(exc.status_code, message, getattr(exc, "headers", None), request)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        if unavailable(exc) is not None:  # e.g. wrapped in an ExceptionGroup
            return await _dependency_lost(request, exc)
        return _internal(request, exc)


def _internal(request: Request, exc: BaseException) -> JSONResponse:
    request_id = getattr(request.state, "request_id", "-")
    log.error("unhandled error on %s %s (request %s)", request.method, request.url.path, request_id, exc_info=exc)
    return meshy_error(500, "Internal server error")


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for a route's error statuses, all in Meshy's shape."""
    descriptions = {
        400: "Bad request: missing or invalid parameter",
        401: "Invalid or missing API key",
        402: "Insufficient credits",
        403: "Forbidden",
        404: "Task not found (or owned by another account)",
        409: "Conflict",
        413: "Request body too large",
        429: "RateLimitExceeded or NoMoreConcurrentTasks",
        500: "Internal server error",
    }
    schema = {"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]}
    return {
        code: {
            "description": descriptions.get(code, "Error"),
            "content": {"application/json": {"schema": schema, "example": {"message": descriptions.get(code)}}},
        }
        for code in (*codes, 500)  # any route can fail unexpectedly; the body is still Meshy's shape
    }


def install_openapi(app: FastAPI) -> None:
    """OpenAPI that tells the truth: validation errors are Meshy's 400 `{"message"}`, never FastAPI's 422."""

    def build() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(
            title=app.title, version=app.version, summary=app.summary, description=app.description, routes=app.routes
        )
        bad_request = error_responses(400)[400]
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                responses = operation.get("responses", {})
                if responses.pop("422", None) is not None:
                    responses.setdefault("400", bad_request)
        for name in ("HTTPValidationError", "ValidationError"):
            schema.get("components", {}).get("schemas", {}).pop(name, None)
        app.openapi_schema = schema
        return schema

    app.openapi = build  # type: ignore[method-assign]
