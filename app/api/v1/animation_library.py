"""The animation library: Meshy's public catalogue and the authenticated listing (meshy-api.md §10.1, §22.20).

- `GET /web/public/animations/resources` (no auth, like Meshy's: its CLI never sends a key there): `{"result":
  {"total", "list"}}` with camelCase items, filtered by `category`, `subCategory` and `q`; no pagination.
- `GET /openapi/v1/animations/library` (a key): the same actions in snake_case (`action_id`, `sub_category`,
  `preview_url`), filtered by `category` and `search`. Free.
- `GET /web/public/animations/previews/{id}.gif`: each action played on the reference character, rendered by this
  server's workers (`meshfoundry previews`, or a worker at start-up) into the asset folder; 404 until rendered.

This router is mounted before the `animations` task resource, so `/openapi/v1/animations/library` is not read as a
task id.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse

from app.api.deps import ApiKeyAuth, Links, State
from app.api.errors import error_responses
from app.core.errors import NotFound
from app.tasks import animations

router = APIRouter(tags=["Animation"])
PREVIEW_PATH = "/web/public/animations/previews"


def _preview_url(base_url: str, action: animations.Action) -> str:
    return f"{base_url.rstrip('/')}{PREVIEW_PATH}/{action.action_id}.gif"


@router.get("/web/public/animations/resources", responses=error_responses(400))
async def public_catalogue(
    links: Links,
    category: Annotated[str | None, Query(max_length=64)] = None,
    sub_category: Annotated[str | None, Query(alias="subCategory", max_length=64)] = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    """Meshy's public action catalogue (no key needed): `{"result": {"total", "list"}}`, camelCase."""
    found = animations.search(q, category=category, sub_category=sub_category)
    items = [
        {"id": a.action_id, "key": a.key, "name": a.name, "category": a.category, "subCategory": a.sub_category,
         "previewUrl": _preview_url(links.base_url, a), "rigType": "biped", "isDefault": a.is_default,
         "isFree": True}
        for a in found
    ]  # fmt: skip
    return {"result": {"total": len(items), "list": items}}


@router.get("/openapi/v1/animations/library", responses=error_responses(400, 401, 429))
async def library(
    principal: ApiKeyAuth,
    links: Links,
    category: Annotated[str | None, Query(max_length=64)] = None,
    search: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    """The action library for API keys (free): `{"result": {"total", "list"}}`, snake_case items."""
    del principal  # authenticated (and rate-limited) only
    found = animations.search(search, category=category)
    items = [
        {"action_id": a.action_id, "key": a.key, "name": a.name, "category": a.category,
         "sub_category": a.sub_category, "preview_url": _preview_url(links.base_url, a), "loop": a.loop,
         "duration_s": a.duration_s}
        for a in found
    ]  # fmt: skip
    return {"result": {"total": len(items), "list": items}}


@router.get(PREVIEW_PATH + "/{action_id}.gif", response_class=FileResponse, responses=error_responses(404))
async def preview(action_id: int, state: State) -> FileResponse:
    """An action's preview GIF on the reference character (public, like Meshy's CDN previews)."""
    if not animations.is_valid_action(action_id):
        raise NotFound("Animation not found")
    path = animations.preview_path(state.store.root, action_id)
    if not path.is_file():
        raise NotFound("Preview not rendered yet")
    return FileResponse(path, media_type="image/gif", headers={"Cache-Control": "public, max-age=86400"})
