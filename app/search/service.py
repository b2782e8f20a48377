"""Asset search: what gets indexed, how a query is answered, and how a matched asset becomes a task's files.

A query is embedded in every space that can take it (a text query: the caption space, and SigLIP's image space
when one is configured; an image query: the image space) and each space answers with its nearest visible assets.
An asset's score is its best cosine similarity over the spaces that took the text, and over those that took the
image; with both a text and an image, the two are averaged (an asset found by one only scores half).
"""

from __future__ import annotations

import asyncio
import io
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image
from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.assets import AssetStore, Staged, valid_filename
from app.core.config import Settings
from app.search import encoders
from app.search.models import Asset, AssetCollection
from app.search.store import SearchUnavailable, Space, ensure_space, nearest, pgvector_installed, put_vectors
from app.tasks.models import Task, TaskStatus, TaskType

log = logging.getLogger(__name__)

# Generation results are indexed; operations on a model (remesh, convert, ...) would only repeat their input.
INDEXED_TYPES = (TaskType.TEXT_TO_3D_PREVIEW.value, TaskType.TEXT_TO_3D_REFINE.value, TaskType.IMAGE_TO_3D.value,
                 TaskType.MULTI_IMAGE_TO_3D.value)  # fmt: skip
GENERATED = "generated"  # the name under which an account's own generated assets are searched
MODEL_FORMATS = ("glb", "fbx", "obj", "usdz", "mtl", "stl")
MAX_VIEWS = 6


@dataclass(frozen=True)
class Models:
    """The encoders a process uses, from settings (loaded once per process, on first use)."""

    text_model_dir: str | None
    image_model_dir: str | None

    @classmethod
    def from_settings(cls, settings: Settings) -> Models:
        return cls(
            str(settings.search_text_model_dir) if settings.search_text_model_dir else None,
            str(settings.search_image_model_dir) if settings.search_image_model_dir else None,
        )

    def text(self) -> encoders.SentenceEncoder:
        return encoders.text_encoder(self.text_model_dir)

    def image(self) -> encoders.SiglipImageEncoder | encoders.ReferenceImageEncoder:
        return encoders.image_encoder(self.image_model_dir)

    @property
    def cross_modal(self) -> bool:
        return self.image_model_dir is not None


@dataclass
class Hit:
    asset: Asset
    score: float
    collection: str
    scores: dict[str, float] = field(default_factory=dict)  # per space


def caption_of(task: Task, parent: Task | None = None) -> str:
    params = task.params or {}
    source = params if params.get("prompt") else ((parent.params or {}) if parent is not None else {})
    parts = [source.get("prompt") or "", params.get("texture_prompt") or ""]
    return ". ".join(p.strip() for p in parts if p and p.strip())


def _task_files(task: Task) -> dict[str, str]:
    outputs = task.outputs or {}
    files = {fmt: name for fmt, name in (outputs.get("model") or {}).items() if fmt in MODEL_FORMATS}
    if outputs.get("thumbnail"):
        files["thumbnail"] = outputs["thumbnail"]
    return files


def _views(store: AssetStore, task_id: uuid.UUID, outputs: dict[str, Any]) -> list[Image.Image]:
    names = list((outputs.get("thumbnails") or {}).values()) or ([outputs["thumbnail"]] if outputs.get("thumbnail")
                                                                 else [])  # fmt: skip
    images = []
    for name in names[:MAX_VIEWS]:
        path = store.path_of(task_id, name)  # S3: downloaded into the local cache
        if path is not None:
            with Image.open(path) as img:
                images.append(img.convert("RGBA"))
    return images


async def index_task(session: AsyncSession, store: AssetStore, models: Models, task: Task) -> Asset | None:
    """Make a SUCCEEDED model task searchable by its owner (idempotent); None when it has nothing to index or the
    database has no pgvector."""
    if task.type not in INDEXED_TYPES or task.status != TaskStatus.SUCCEEDED.value:
        return None
    if (task.params or {}).get("retrieved_from"):  # answered from an asset that is indexed already
        return None
    files = _task_files(task)
    if "glb" not in files or not await pgvector_installed(session):
        return None
    parent = await session.get(Task, task.parent_id) if task.parent_id else None
    caption = caption_of(task, parent)
    values = {"account_id": task.account_id, "collection_id": None, "task_id": task.id, "source_key": str(task.id),
              "caption": caption, "files": files}  # fmt: skip
    row = await session.execute(
        insert(Asset).values(id=uuid.uuid4(), **values)
        .on_conflict_do_update(index_elements=[Asset.task_id], set_={"caption": caption, "files": files})
        .returning(Asset.id)
    )  # fmt: skip
    asset_id = row.scalar_one()
    views = await asyncio.to_thread(_views, store, task.id, task.outputs or {})
    await embed_asset(session, models, asset_id, caption, views)
    return await session.get(Asset, asset_id)


async def embed_asset(
    session: AsyncSession, models: Models, asset_id: uuid.UUID, caption: str, views: list[Image.Image]
) -> None:
    if caption:
        text = await asyncio.to_thread(models.text)  # the first call loads the model: off the event loop
        vectors = await asyncio.to_thread(text.encode_texts, [caption])
        await ensure_space(session, text.space)
        await put_vectors(session, text.space, asset_id, vectors)
    if views:
        image = await asyncio.to_thread(models.image)
        vectors = await asyncio.to_thread(image.encode_images, views)
        await ensure_space(session, image.space)
        await put_vectors(session, image.space, asset_id, vectors)


async def unindexed_tasks(session: AsyncSession, limit: int = 50) -> list[Task]:
    """SUCCEEDED generation tasks with no asset row yet (a worker that stopped between finishing and indexing)."""
    rows = await session.execute(
        select(Task)
        .outerjoin(Asset, Asset.task_id == Task.id)
        .where(
            Task.type.in_(INDEXED_TYPES),
            Task.status == TaskStatus.SUCCEEDED.value,
            Asset.id.is_(None),
            ~Task.params.has_key("retrieved_from"),
        )  # fmt: skip
        .order_by(Task.finished_at.desc())
        .limit(limit)
    )
    return list(rows.scalars())


@dataclass(frozen=True)
class Query:
    text: str | None = None
    image: Image.Image | None = None


async def search(
    session: AsyncSession,
    models: Models,
    query: Query,
    *,
    account_id: uuid.UUID,
    top_k: int = 10,
    collections: list[str] | None = None,
    min_score: float | None = None,
) -> list[Hit]:
    """The best `top_k` assets the account may see, best first. Raises SearchUnavailable without pgvector."""
    if not await pgvector_installed(session):
        raise SearchUnavailable("this PostgreSQL server has no pgvector extension")
    text_scores: dict[uuid.UUID, dict[str, float]] = {}
    image_scores: dict[uuid.UUID, dict[str, float]] = {}
    pool = min(top_k * 4, 200)
    known = await _known_spaces(session)

    async def ask(space: Space, vector: np.ndarray, into: dict[uuid.UUID, dict[str, float]]) -> None:
        if space.name not in known:  # nothing was ever indexed in it
            return
        for asset_id, score in await nearest(session, space, vector, account_id=account_id,
                                             collections=collections, limit=pool):  # fmt: skip
            into.setdefault(asset_id, {})[space.name] = score

    if query.text:
        text = await asyncio.to_thread(models.text)
        await ask(text.space, (await asyncio.to_thread(text.encode_texts, [query.text]))[0], text_scores)
        if models.cross_modal:
            image = await asyncio.to_thread(models.image)
            vector = (await asyncio.to_thread(image.encode_texts, [query.text]))[0]  # type: ignore[union-attr]
            await ask(image.space, vector, text_scores)
    if query.image is not None:
        image = await asyncio.to_thread(models.image)
        await ask(image.space, (await asyncio.to_thread(image.encode_images, [query.image]))[0], image_scores)
    parts = [p for p, asked in ((text_scores, query.text), (image_scores, query.image is not None)) if asked]
    ranked: dict[uuid.UUID, tuple[float, dict[str, float]]] = {}
    for asset_id in set().union(*parts) if parts else set():
        per_space = {**text_scores.get(asset_id, {}), **image_scores.get(asset_id, {})}
        score = sum(max(p[asset_id].values()) if asset_id in p else 0.0 for p in parts) / len(parts)
        ranked[asset_id] = (score, per_space)
    best = sorted(ranked.items(), key=lambda kv: (-kv[1][0], str(kv[0])))
    if min_score is not None:
        best = [kv for kv in best if kv[1][0] >= min_score]
    best = best[:top_k]
    if not best:
        return []
    rows = await session.execute(
        select(Asset, AssetCollection.name)
        .outerjoin(AssetCollection, AssetCollection.id == Asset.collection_id)
        .where(Asset.id.in_([asset_id for asset_id, _ in best]))
    )
    found = {asset.id: (asset, name) for asset, name in rows.all()}
    return [
        Hit(found[a][0], round(s, 6), found[a][1] or GENERATED, {k: round(v, 6) for k, v in per.items()})
        for a, (s, per) in best
        if a in found
    ]


async def _known_spaces(session: AsyncSession) -> set[str]:
    from sqlalchemy import text

    return set((await session.execute(text("SELECT name FROM embedding_spaces"))).scalars())


QUERY_MAX_PIXELS = 25_000_000
QUERY_SIDE = 1024  # what the encoders need at most (SigLIP: 224-512; the reference: an 8x8 outline)


def decode_image(content: bytes) -> Image.Image:
    """A query picture, at most 1024 px a side; ValueError (a caller-facing reason) when it is unusable. The size is
    checked before decoding, so a small file of huge dimensions cannot take gigabytes."""
    try:
        with Image.open(io.BytesIO(content)) as img:
            width, height = img.size
            if width * height > QUERY_MAX_PIXELS or max(width, height) > 8192:
                raise ValueError(f"the image is {width}x{height} pixels; at most 25 MP and 8192 px a side")
            img.draft("RGB", (QUERY_SIDE, QUERY_SIDE))  # JPEG decodes at a reduced scale directly
            img.thumbnail((QUERY_SIDE, QUERY_SIDE))
            return img.convert("RGBA")
    except ValueError:
        raise
    except Exception as exc:  # noqa: BLE001 (whatever PIL trips on is a bad picture)
        raise ValueError("the file is not a readable image") from exc


def stage_files(store: AssetStore, asset: Asset, task_id: uuid.UUID) -> tuple[dict[str, str], Staged]:
    """Stage the asset's files for `task_id` (hard links on disk, server-side copies on S3): its file map and the
    stage to commit. OSError when they are gone (a source task deleted meanwhile), with nothing left behind."""
    files = dict(asset.files or {})
    source = asset.task_id if asset.task_id is not None else asset.id  # a library asset keeps files under its own id
    # A generated model: all its files (textures, views, video too); a library asset: those its row lists.
    names = None if asset.task_id is not None else sorted({n for n in files.values() if valid_filename(n)})
    return files, store.stage_copy(source, task_id, names)


def outputs_for(asset: Asset, source_task: Task | None) -> dict[str, Any]:
    if source_task is not None and source_task.outputs:
        keep = ("model", "textures", "thumbnail", "thumbnails", "alpha_thumbnail", "source", "faces", "video")
        return {k: v for k, v in source_task.outputs.items() if k in keep}
    files = asset.files or {}
    outputs: dict[str, Any] = {"model": {fmt: files[fmt] for fmt in MODEL_FORMATS if fmt in files}}
    if files.get("thumbnail"):
        outputs["thumbnail"] = files["thumbnail"]
    if files.get("source"):  # the raw geometry a refine starts from
        outputs["source"] = files["source"]
    return outputs


async def delete_collection(session: AsyncSession, name: str) -> int:
    result = await session.execute(delete(AssetCollection).where(AssetCollection.name == name))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


__all__ = ["GENERATED", "INDEXED_TYPES", "Hit", "Models", "Query", "SearchUnavailable", "index_task", "search"]
