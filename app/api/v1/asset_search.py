"""Asset search, beyond Meshy: `POST /openapi/v1/assets/search` over the caller's generated models and the libraries
shared with it (AssetRetrieval3D's text, image and cross-modal search, on pgvector).

Only the caller's own assets and the collections shared with every account or with the caller are ever searched;
a shared library's files are served through signed, expiring URLs like any task's.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from app.api import testmode
from app.api.deps import ApiKeyAuth, DbSession, Links, State
from app.api.errors import error_responses
from app.api.render import AssetLinks
from app.api.retrieval import load_image
from app.core.errors import AppError, BadRequest
from app.search import service as search_service
from app.search.models import Asset
from app.search.store import SearchUnavailable
from app.tasks.models import Task
from billing.errors import InsufficientCredits
from billing.prices import price_of
from billing.repository import BillingRepository

router = APIRouter(prefix="/openapi/v1/assets", tags=["Asset search"])
LINK_TTL_S = 24 * 3600  # a library asset's signed links (a task's follow the task's own expiry)

CollectionName = Annotated[str, StringConstraints(min_length=1, max_length=100)]


class AssetSearchRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    query: str | None = Field(None, max_length=1000, description="What to find, in words (English with the default "
                              "model; other languages when the configured text model is multilingual).")  # fmt: skip
    image_url: str | None = Field(
        None, max_length=30_000_000, description="A picture to match: an http(s) URL or a data URI (PNG, JPEG, WebP)."
    )
    top_k: int = Field(10, ge=1, le=50, description="How many assets to return at most.")
    collections: list[CollectionName] | None = Field(
        None, max_length=20,
        description='Only these collections: library names, and `"generated"` for the caller\'s own models. '
        "Default: everything the caller may see.",
    )  # fmt: skip
    min_score: float | None = Field(None, ge=-1, le=1, description="Leave out assets scoring below this.")


class AssetHit(BaseModel):
    asset_id: str
    score: float = Field(description="Cosine similarity, averaged over the query's parts (text, image).")
    scores: dict[str, float] = Field(description="The score in each embedding space that found the asset.")
    caption: str
    collection: str = Field(description="The library's name, or \"generated\" for the caller's own models.")
    task_id: str | None = Field(description="The task that generated it, for the caller's own models.")
    model_urls: dict[str, str]
    thumbnail_url: str


class AssetSearchResponse(BaseModel):
    results: list[AssetHit]


def _links_for(asset: Asset, task: Task | None, links: AssetLinks) -> tuple[dict[str, str], str]:
    folder = asset.task_id if asset.task_id is not None else asset.id
    if task is not None and task.expires_at is not None:
        expires = int(task.expires_at.timestamp())
    else:
        expires = int(time.time()) + LINK_TTL_S

    def url(name: str) -> str:
        return links.signer.url(links.base_url, folder, name, expires)

    files = asset.files or {}
    models = {fmt: url(files[fmt]) for fmt in search_service.MODEL_FORMATS if files.get(fmt)}
    return models, url(files["thumbnail"]) if files.get("thumbnail") else ""


class SearchUnavailableError(AppError):
    status_code = 503
    message = "Asset search needs the pgvector extension, which this server's PostgreSQL does not have"


def _testmode_results(links: AssetLinks) -> AssetSearchResponse:
    """Test mode: the canned preview task, as a search would return it."""
    task = testmode.SAMPLES[testmode.PREVIEW_ID]
    outputs = task.outputs or {}
    hit = AssetHit(
        asset_id=str(uuid.UUID(int=task.id.int ^ 1)), score=1.0, scores={"text:sample": 1.0},
        caption=(task.params or {}).get("prompt", ""), collection=search_service.GENERATED, task_id=str(task.id),
        model_urls={fmt: links.url(task, name) for fmt, name in (outputs.get("model") or {}).items()},
        thumbnail_url=links.url(task, outputs["thumbnail"]) if outputs.get("thumbnail") else "",
    )  # fmt: skip
    return AssetSearchResponse(results=[hit])


@router.post("/search", responses=error_responses(400, 401, 402, 429, 503), operation_id="search_assets")
async def search_assets(
    body: AssetSearchRequest, principal: ApiKeyAuth, session: DbSession, state: State, links: Links
) -> AssetSearchResponse:
    """Find 3D assets by text, by image, or both: the caller's generated models and the libraries shared with it,
    best first. Text also finds images when a SigLIP model is configured (cross-modal)."""
    text = (body.query or "").strip()
    if not text and not body.image_url:
        raise BadRequest("query or image_url is required")
    if principal.test_mode:
        return _testmode_results(links)
    image = await load_image(state, None, body.image_url)
    models = search_service.Models.from_settings(state.settings)
    price = price_of("asset-search", "", state.settings.credit_prices)
    async with session.begin():
        if price > 0:
            balance = await BillingRepository(session).apply_delta(
                principal.account_id, -price, reason="search", task_id=None, note="asset search"
            )
            if balance is None:
                raise InsufficientCredits()
        try:
            hits = await search_service.search(
                session, models, search_service.Query(text or None, image), account_id=principal.account_id,
                top_k=body.top_k, collections=body.collections, min_score=body.min_score,
            )  # fmt: skip
        except SearchUnavailable as exc:
            raise SearchUnavailableError() from exc
        tasks = {t.id: t for t in [await session.get(Task, h.asset.task_id) for h in hits if h.asset.task_id] if t}
    results = []
    for hit in hits:
        model_urls, thumbnail = _links_for(hit.asset, tasks.get(hit.asset.task_id), links)  # type: ignore[arg-type]
        results.append(AssetHit(
            asset_id=str(hit.asset.id), score=hit.score, scores=hit.scores, caption=hit.asset.caption,
            collection=hit.collection, task_id=str(hit.asset.task_id) if hit.asset.task_id else None,
            model_urls=model_urls, thumbnail_url=thumbnail,
        ))  # fmt: skip
    return AssetSearchResponse(results=results)
