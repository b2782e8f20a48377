"""`meshfoundry library import|list|delete`: an operator's folder of 3D files as a searchable, shared collection.

Each GLB/glTF/OBJ/FBX/STL file becomes an asset: converted to the formats a task offers (GLB always; FBX, OBJ, USDZ
by default) with a rendered thumbnail, in the asset store under the asset's id, then embedded (its caption in the
text space, its thumbnail in the image space). A captions file maps a file's id (its path inside the folder
without extension, or its bare name) to a caption, as Cap3D's do: JSON `{"id": "caption"}` or a CSV of `id,caption`
rows (a header row is optional). Re-running an import skips files already done, so a stopped import resumes.
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.assets import AssetStore
from app.search import service as search_service
from app.search.models import Asset, AssetCollection
from inference.jobs.steps.common import SOURCE_MESH
from inference.pipeline import model_ops
from inference.pipeline.model_input import load_model

log = logging.getLogger(__name__)

SUFFIXES = {".glb": "glb", ".gltf": "gltf", ".obj": "obj", ".fbx": "fbx", ".stl": "stl"}
DEFAULT_FORMATS = ("glb", "fbx", "obj", "usdz")


class ImportRefused(Exception):
    """The import cannot start (a bad folder or captions file, a collection owned by someone else)."""


@dataclass
class ImportReport:
    collection: str
    imported: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def per_second(self) -> float:
        return self.imported / self.seconds if self.seconds > 0 else 0.0


def read_captions(path: Path | None) -> dict[str, str]:
    """id -> caption from a JSON object or a two-column CSV (Cap3D's layout); UTF-8, any language."""
    if path is None:
        return {}
    try:
        raw = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ImportRefused(f"cannot read the captions file {path}: {exc}") from exc
    if path.suffix.lower() == ".json" or raw.lstrip().startswith("{"):
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ImportRefused(f"{path} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ImportRefused(f"{path} must hold a JSON object of id -> caption")
        return {str(k): str(v) for k, v in data.items() if isinstance(v, str | int | float)}
    rows = [row for row in csv.reader(raw.splitlines()) if len(row) >= 2]
    if rows and rows[0][0].strip().lower() in ("id", "uid", "object_id") and rows[0][1].strip().lower() == "caption":
        rows = rows[1:]
    return {row[0].strip(): row[1].strip() for row in rows}


def model_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)


def caption_for(captions: dict[str, str], folder: Path, path: Path) -> str:
    key = path.relative_to(folder).with_suffix("").as_posix()
    return captions.get(key) or captions.get(path.stem) or captions.get(path.name) or ""


async def collection_for(
    session: AsyncSession, name: str, account_id: uuid.UUID | None, description: str = ""
) -> AssetCollection:
    found = (await session.execute(select(AssetCollection).where(AssetCollection.name == name))).scalar_one_or_none()
    if found is not None:
        if found.account_id != account_id:
            raise ImportRefused(f"collection {name!r} exists with another audience; import into it with the same "
                                "--account (or none), or pick another name")  # fmt: skip
        return found
    if not 1 <= len(name) <= 100:
        raise ImportRefused("a collection's name has 1 to 100 characters")
    if name == search_service.GENERATED:
        raise ImportRefused(f"{name!r} names every account's own generated models; pick another collection name")
    collection = AssetCollection(id=uuid.uuid4(), name=name, account_id=account_id, description=description)
    session.add(collection)
    await session.flush()
    return collection


def convert_one(path: Path, out_dir: Path, formats: tuple[str, ...]) -> tuple[dict[str, str], int]:
    """Write the file's deliverables into `out_dir`; (files by kind, face count)."""
    loaded = load_model(path, SUFFIXES[path.suffix.lower()])
    result = model_ops.convert(loaded, {"target_formats": list(formats)}, out_dir, lambda _f: None)
    files = dict(result.model_files)
    if result.thumbnail:
        files["thumbnail"] = result.thumbnail
    for group in result.texture_files:  # kept beside the model (OBJ's MTL points at them)
        files.update({f"texture_{kind}": name for kind, name in group.items()})
    # The geometry a refine starts from, as a preview task keeps it (a retrieved preview can be refined).
    loaded.mesh.export(out_dir / SOURCE_MESH, file_type="ply")
    files["source"] = SOURCE_MESH
    return files, len(loaded.mesh.faces)


async def import_folder(
    maker: async_sessionmaker[AsyncSession],
    store: AssetStore,
    models: search_service.Models,
    folder: Path,
    *,
    collection: str,
    account_id: uuid.UUID | None = None,
    captions: Path | None = None,
    formats: tuple[str, ...] = DEFAULT_FORMATS,
    on_progress: Callable[[int, int, str], None] | None = None,
) -> ImportReport:
    """Import every model file under `folder` into `collection` (created if new); resumable, one commit per file."""
    import asyncio

    folder = await asyncio.to_thread(folder.resolve)
    if not await asyncio.to_thread(folder.is_dir):
        raise ImportRefused(f"{folder} is not a folder")
    if "glb" not in formats:
        formats = ("glb", *formats)
    texts = await asyncio.to_thread(read_captions, captions)
    files = await asyncio.to_thread(model_files, folder)
    report = ImportReport(collection=collection)
    started = time.perf_counter()
    async with maker() as session, session.begin():
        coll = await collection_for(session, collection, account_id)
        coll_id = coll.id
        done = set((await session.execute(select(Asset.source_key).where(Asset.collection_id == coll_id))).scalars())
    work_root = store.root / ".work"
    work_root.mkdir(parents=True, exist_ok=True)
    for index, path in enumerate(files, 1):
        key = path.relative_to(folder).as_posix()
        if on_progress is not None:
            on_progress(index, len(files), key)
        if key in done:
            report.skipped += 1
            continue
        asset_id = uuid.uuid4()
        work = Path(tempfile.mkdtemp(prefix=f"{asset_id}-", dir=work_root))
        try:
            written, faces = await asyncio.to_thread(convert_one, path, work, formats)
            caption = caption_for(texts, folder, path)
            names = sorted(set(written.values()))
            views = [await asyncio.to_thread(_open, work / written["thumbnail"])]  # before publishing moves it
            await asyncio.to_thread(store.publish, asset_id, work, names)
            try:
                async with maker() as session, session.begin():
                    session.add(Asset(id=asset_id, account_id=None, collection_id=coll_id, task_id=None,
                                      source_key=key, caption=caption, files=written, face_count=faces))  # fmt: skip
                    await session.flush()
                    await search_service.embed_asset(session, models, asset_id, caption, views)
            except BaseException:
                await asyncio.to_thread(store.delete, asset_id)
                raise
            report.imported += 1
        except search_service.SearchUnavailable:
            raise
        except Exception as exc:  # one bad file does not stop a library import
            log.warning("could not import %s: %s", key, exc)
            report.failed.append((key, str(exc) or type(exc).__name__))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    report.seconds = time.perf_counter() - started
    return report


def _open(path: Path) -> Image.Image:
    with Image.open(path) as img:
        return img.convert("RGBA")


async def list_collections(session: AsyncSession) -> list[tuple[AssetCollection, int]]:
    rows = await session.execute(
        select(AssetCollection, func.count(Asset.id))
        .outerjoin(Asset, Asset.collection_id == AssetCollection.id)
        .group_by(AssetCollection.id)
        .order_by(AssetCollection.name)
    )
    return [(c, int(n)) for c, n in rows.all()]


async def delete_collection(maker: async_sessionmaker[AsyncSession], store: AssetStore, name: str) -> int:
    """Remove the collection, its assets' rows and vectors (cascade) and their files; how many assets went."""
    import asyncio

    async with maker() as session, session.begin():
        coll = (await session.execute(select(AssetCollection).where(AssetCollection.name == name))).scalar_one_or_none()
        if coll is None:
            raise ImportRefused(f"no collection named {name!r}")
        ids = list((await session.execute(select(Asset.id).where(Asset.collection_id == coll.id))).scalars())
        await session.delete(coll)
    for asset_id in ids:
        await asyncio.to_thread(store.delete, asset_id)
    return len(ids)
