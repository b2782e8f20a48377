"""Routing that stays cheap as routes grow: a router whose prefix does not start the path is skipped at once.

FastAPI matches an included router by walking every route it holds, each a regular expression with its own
bookkeeping, and does it twice per request (to choose, then to handle). With ~20 task resources of five routes each
that walk was about a tenth of a GET's CPU (`python -m bench.profile get`). A resource router rejects other paths by
their prefix before any of that.
"""

from __future__ import annotations

from fastapi import APIRouter
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
