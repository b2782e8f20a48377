"""Retrieve-before-generate: a text-to-3d preview or image-to-3d whose `retrieve_min_score` an existing asset meets
is answered from that asset, SUCCEEDED on creation, instead of spending a GPU minute (docs/asset-search.md)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from PIL import Image
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.state import AppState
from app.core.assets import Staged
from app.core.errors import BadRequest
from app.core.fetch import FetchRefused, fetch
from app.search import service as search_service
from app.search.store import SearchUnavailable
from app.tasks.models import Task

log = logging.getLogger(__name__)
IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp")


@dataclass(frozen=True)
class Retrieve:
    """What to search for before generating: the prompt, or the input image (bytes, or a URL to fetch)."""

    min_score: float
    text: str | None = None
    image: bytes | None = None
    image_url: str | None = None


@dataclass(frozen=True)
class Match:
    hit: search_service.Hit
    source_task: Task | None

    def described(self) -> dict[str, Any]:
        asset = self.hit.asset
        return {
            "asset_id": str(asset.id),
            "score": self.hit.score,
            "collection": self.hit.collection,
            "source_task_id": str(asset.task_id) if asset.task_id else None,
        }


async def load_image(state: AppState, content: bytes | None, url: str | None) -> Image.Image | None:
    """A query picture from bytes, or from a URL or data URI fetched SSRF-safely; a 400 when it is unusable."""
    if content is None and url:
        settings = state.settings
        try:
            fetched = await fetch(
                url, allowed=IMAGE_TYPES, max_bytes=settings.fetch_max_bytes, timeout_s=settings.fetch_timeout_s,
                allow_private=settings.fetch_allow_private,
            )  # fmt: skip
        except FetchRefused as exc:
            raise BadRequest(f"Invalid image_url: {exc}") from exc
        content = fetched.content
    if content is None:
        return None
    try:
        return await asyncio.to_thread(search_service.decode_image, content)
    except ValueError as exc:
        raise BadRequest(f"Invalid image_url: {exc}") from exc


async def find_match(session: AsyncSession, state: AppState, account_id: uuid.UUID, retrieve: Retrieve) -> Match | None:
    """The best visible asset scoring at least `min_score`, or None (also when the server cannot search: a
    retrieval is an optimisation, and generation then runs as usual)."""
    image = await load_image(state, retrieve.image, retrieve.image_url)
    models = search_service.Models.from_settings(state.settings)
    try:
        async with session.begin_nested():  # a failed search must not abort the create's transaction
            hits = await search_service.search(
                session, models, search_service.Query(retrieve.text, image), account_id=account_id, top_k=1,
                min_score=retrieve.min_score,
            )  # fmt: skip
    except SearchUnavailable:
        log.info("retrieve-before-generate skipped: no pgvector on this database")
        return None
    except DBAPIError:
        log.exception("retrieve-before-generate: the search failed; generating instead")
        return None
    if not hits:
        return None
    hit = hits[0]
    source = await session.get(Task, hit.asset.task_id) if hit.asset.task_id else None
    return Match(hit, source)


def stage(state: AppState, match: Match, task_id: uuid.UUID) -> tuple[dict[str, Any], Staged] | None:
    """Stage the asset's files for the new task; its outputs and the stage to commit, or None when the files are
    gone (a source task deleted since the search): the request then generates as usual."""
    try:
        _, staged = search_service.stage_files(state.store, match.hit.asset, task_id)
    except OSError:
        log.warning("retrieve-before-generate: the files of asset %s are gone; generating instead", match.hit.asset.id)
        return None
    return search_service.outputs_for(match.hit.asset, match.source_task), staged
