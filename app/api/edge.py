"""The one pure-ASGI layer in front of the routes: path aliases, Meshy's response headers, the request's log
context, HTTP metrics and access line, and the request body limit.

These were four middlewares; each layer is a coroutine call per request and a `send` wrapper per response message,
a measurable share of the hottest routes (py-spy, docs/performance.md), so they are one. In order, per request:

1. Aliases: ComfyUI's `/proxy/meshy/...` prefix and Meshy's old `/v1/...`, `/v2/...` become the routes' paths.
2. The request id: the client's `x-request-id` (at most 128 characters) or a new one; every response carries it and
   `x-api-version`.
3. Observation: the log context (request id now, account and task as they become known) is bound, the request is
   counted and timed by route template, and one access line is written when it ends (its 413s and 500s too).
4. The body limit: a declared or streamed body over `MAX_BODY_BYTES` is answered 413 `{"message"}` before anything
   parses it. A request without a body (a GET) passes untouched.

Streamed responses (SSE) pass through: only `http.response.start` is looked at.
"""

from __future__ import annotations

import json
import os
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import __version__
from app.api.comfy import alias
from app.api.observability import UNSAFE_ID, access, route_of
from app.core import logs, metrics
from app.core.config import Settings

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_OURS = (b"x-api-version", b"x-request-id")
_VERSION = (b"x-api-version", __version__.encode())


class Edge:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        path = scope["path"]
        target = alias(path)
        if target != path:
            scope = {**scope, "path": target, "raw_path": target.encode()}
        given = declared = None
        chunked = False
        for name, value in scope["headers"]:  # one pass; the first of a repeated header counts (as Headers.get)
            if name == b"x-request-id":
                given = value.decode("latin-1") if given is None else given
            elif name == b"content-length":
                declared = value.decode("latin-1") if declared is None else declared
            elif name == b"transfer-encoding":
                chunked = True
        request_id = (given or os.urandom(16).hex())[:128]
        scope.setdefault("state", {})["request_id"] = request_id  # for the error log
        ours = [_VERSION, (b"x-request-id", request_id.encode("latin-1"))]

        method = scope["method"] if scope["method"] in _METHODS else "OTHER"
        context = logs.LogContext(request_id=UNSAFE_ID.sub("", request_id)[:128] or None)
        # Not unbound at the end: uvicorn runs each request in its own asyncio task, and the error handler of an
        # unexpected exception (Starlette's outermost middleware, after this one returns) must still see the ids.
        logs.bind(context)
        status = 500  # what uvicorn answers when the app fails before its response starts
        responded = False

        async def observed_send(message: Message) -> None:
            nonlocal status, responded
            if message["type"] == "http.response.start" and not responded:
                responded = True
                status = message["status"]
                headers = message.get("headers") or []
                message["headers"] = [h for h in headers if h[0] not in _OURS] + ours
                metrics.http_duration(method, route_of(scope)).observe(time.perf_counter() - start)
            await send(message)

        metrics.HTTP_IN_PROGRESS.inc()
        try:
            if declared is None and not chunked:  # no body (a GET): nothing to count
                await self.app(scope, receive, observed_send)
            else:
                await self._limited(scope, receive, observed_send, declared)
        finally:
            metrics.HTTP_IN_PROGRESS.dec()
            route = route_of(scope)
            if not responded:
                metrics.http_duration(method, route).observe(time.perf_counter() - start)
            metrics.http_requests(method, route, status).inc()
            if context.task_id is None and isinstance(scope.get("path_params"), dict):  # the task a path names
                context.task_id = UNSAFE_ID.sub("", str(scope["path_params"].get("task_id") or ""))[:64] or None
            access(scope, method, route, status, (time.perf_counter() - start) * 1000)

    async def _limited(self, scope: Scope, receive: Receive, send: Send, declared: str | None) -> None:
        max_bytes = self.settings.max_body_bytes
        if declared is not None and (not declared.isdigit() or int(declared) > max_bytes):
            await _too_large(send, max_bytes)
            return
        seen = 0
        too_large = False

        async def limited() -> Message:
            # Past the limit, end the body here (the app then fails to parse it) and answer 413 instead.
            nonlocal seen, too_large
            if too_large:
                return {"type": "http.request", "body": b"", "more_body": False}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > max_bytes:
                    too_large = True
                    return {"type": "http.request", "body": b"", "more_body": False}
            return message

        async def guarded_send(message: Message) -> None:
            if not too_large:
                await send(message)
            elif message["type"] == "http.response.start":
                await _too_large(send, max_bytes)

        await self.app(scope, limited, guarded_send)


async def _too_large(send: Send, max_bytes: int) -> None:
    body = json.dumps({"message": f"Request body larger than {max_bytes} bytes"}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
