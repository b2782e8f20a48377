"""Routing that stays cheap as routes grow: a router whose prefix does not start the path is skipped at once.

FastAPI matches an included router by walking every route it holds, each a regular expression with its own
bookkeeping, and does it twice per request (to choose, then to handle). With ~20 task resources of five routes each
that walk was about a tenth of a GET's CPU (`python -m bench.profile get`). A resource router rejects other paths by
their prefix before any of that.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute
from starlette._utils import get_route_path
from starlette.routing import Match
from starlette.types import Scope


class PrefixedRouter(APIRouter):
    """An APIRouter with a prefix that matches nothing outside it (without looking at its routes)."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        path = get_route_path(scope)  # without the root_path a proxy mounted the API under
        prefix = self.prefix
        if prefix and not (path == prefix or path.startswith(prefix + "/")):
            return Match.NONE, {}
        return super().matches(scope)


class LeanRoute(APIRoute):
    """An APIRoute that serves its requests without FastAPI's per-request dependency solving, for a route whose
    every input is read by hand anyway: its endpoint carries `lean`, an `async (Request) -> Response` doing the same
    work. The endpoint's own signature still declares the OpenAPI operation (parameters, security, responses), and
    errors raised in `lean` go through the app's handlers like any route's. Use it only where the declared
    parameters need no validation (a path parameter that is a plain string, no query or body) and no router or app
    declares dependencies for it: `lean` bypasses both.

    FastAPI's documented hook for this is `get_route_handler` ("Custom Request and APIRoute class"). On the GET of a
    task it was about a fifth of the request's CPU (`python -m bench.profile get`, docs/performance.md).
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        lean = getattr(self.endpoint, "lean", None)
        return lean if lean is not None else super().get_route_handler()
