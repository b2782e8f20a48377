"""The only place that decides the wire shape of errors: Meshy's `{"message": "..."}`."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.core.errors import AppError

log = logging.getLogger(__name__)


def _describe(error: dict[str, Any]) -> str:
    if error.get("type") == "json_invalid":
        return "Invalid JSON body"
    loc = [str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path", "header")]
    # Discriminated unions put the tag in the location ("preview.prompt"): drop it for a plain field name.
    if loc and loc[0] in ("preview", "refine"):
        loc = loc[1:]
    field = ".".join(loc)
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
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


def install_error_handlers(app: FastAPI) -> None:
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
