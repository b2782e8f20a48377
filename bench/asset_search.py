"""`python -m bench.asset_search`: asset search on pgvector at scale, and library import throughput.

Made by the run, in throwaway databases on the bench's Postgres (dropped at the end), with the app's migrations:
- N clustered unit vectors (default 100,000 x 384-d: 1000 centres of uneven size, each point its centre plus noise in
  a 16-d subspace of its own and a little isotropic noise, normalised), one per asset, in the real `assets` table
  and an embedding space made by `ensure_space`. Assets and vectors go in by binary COPY with the HNSW index
  dropped; the index is then rebuilt from its own definition (`pg_get_indexdef`) with maintenance_work_mem 1GB,
  timed on its own. 99% of the assets are in a shared collection, 1% are the querying account's own.
- Q held-out points from the same clusters (default 200) are the queries, asked in turn (each way on a connection of
  its own, so each settles on its own cached plan) as: `app`, the app's `nearest()` as the API calls it (tenant
  filter, ef_search 100, iterative scan; the planner picks the plan); `forced`, the same call with
  `enable_sort = off`, which leaves the planner only the HNSW-ordered plan; `bare`, the index alone (`ORDER BY
  embedding <=> q LIMIT 10`, no joins); `exact`, the same call with `enable_indexscan = off` (the baseline; timed on
  the first 50 queries, as it is slow). Recall@10 is against the true neighbours (numpy, over the same visible set);
  the exact way's own recall checks the database agrees. Twice: over all the account sees (everything), and over its
  own 1% (`collections=["generated"]`, what iterative scan is for). The plan of each way is the one that really ran
  (auto_explain, after the timed queries: a prepared statement may have gone to a generic plan by then).
- M small generated models (primitives of varied shape, size, colour and density, with a captions JSON) imported by
  `inference.library_import.import_folder`, each import in a fresh process, so the first file pays for loading
  the caption model (cold) and the others do not (warm): GLB only, then the default GLB+FBX+OBJ+USDZ.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import trimesh

from bench.pipeline import peak_rss_mb, run_child
from bench.services import asyncpg_dsn, with_database

DIM = 384
CENTRES = 1000
SUBSPACE = 16
K = 10
WARMUP = 6  # per way; a prepared statement settles on its plan (custom or generic) from the sixth run
OWN_EVERY = 100  # every 100th asset is the querying account's own (1%)
SPACE_NAME = "text:bench-synthetic"
IMPORT_TIMEOUT_S = 900


def say(message: str) -> None:
    print(f"[bench] (s) {message}", file=sys.stderr, flush=True)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def latency(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": pct(values, 0.5),
        "p90": pct(values, 0.9),
        "p99": pct(values, 0.99),
        "max": max(values),
        "mean": statistics.fmean(values),
    }


# --- data --------------------------------------------------------------------------------------------------------


def clustered(n: int, extra: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`n + extra` unit vectors in CENTRES clusters of uneven size; the last `extra` are held out as queries."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((CENTRES, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    weights = rng.lognormal(0.0, 0.75, CENTRES)
    labels = rng.choice(CENTRES, n + extra, p=weights / weights.sum())
    spread = rng.uniform(0.25, 0.6, CENTRES)  # norm of a point's offset from its centre, in the cluster's subspace
    points = np.empty((n + extra, DIM), dtype=np.float32)
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(CENTRES + 1))
    for c in range(CENTRES):
        idx = order[bounds[c] : bounds[c + 1]]
        if not len(idx):
            continue
        basis = rng.standard_normal((SUBSPACE, DIM)).astype(np.float32) / np.sqrt(DIM)
        z = rng.standard_normal((len(idx), SUBSPACE)).astype(np.float32) * (spread[c] / np.sqrt(SUBSPACE))
        iso = rng.standard_normal((len(idx), DIM)).astype(np.float32) * (0.1 / np.sqrt(DIM))
        points[idx] = centres[c] + z @ basis + iso
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    return points[:n], points[n:]


def exact_numpy(base: np.ndarray, queries: np.ndarray, rows: np.ndarray | None = None) -> list[list[int]]:
    """Row numbers of the K nearest (cosine) per query, among `rows` (all by default)."""
    pool = base if rows is None else base[rows]
    sims = queries @ pool.T
    top = np.argpartition(-sims, K, axis=1)[:, :K]
    ranked = np.take_along_axis(top, np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1), axis=1)
    return [[int(i) for i in (r if rows is None else rows[r])] for r in ranked]


def encode_vector(vector: np.ndarray) -> bytes:
    """pgvector's binary form: int16 dim, int16 unused, float4 big-endian."""
    return struct.pack(">HH", len(vector), 0) + np.asarray(vector, dtype=">f4").tobytes()


def decode_vector(data: bytes) -> np.ndarray:
    dim = struct.unpack(">H", data[:2])[0]
    return np.frombuffer(data[4 : 4 + 4 * dim], dtype=">f4").astype(np.float32)


# --- throwaway databases ---------------------------------------------------------------------------------------------


async def _admin(dsn: str, *statements: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@contextlib.contextmanager
def throwaway_database(database_url: str, name: str) -> Any:
    """A fresh database `name` on the server of `database_url`, migrated to head; dropped on exit."""
    from app.cli import migrate
    from app.core import embedded

    admin = asyncpg_dsn(embedded.postgres_admin_url(database_url))
    drop = f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
    asyncio.run(_admin(admin, drop, f'CREATE DATABASE "{name}"'))
    try:
        url = with_database(database_url, name)
        migrate(url)
        yield url
    finally:
        asyncio.run(_admin(admin, drop))


# --- (1) vector search at scale ----------------------------------------------------------------------------------


class PlanCatcher:
    """auto_explain's plan of the next search statement on this connection, sent to us as a NOTICE: the plan that
    really ran (after five runs of a prepared statement Postgres may switch to a generic plan, which EXPLAIN of a
    fresh statement would not show)."""

    def __init__(self) -> None:
        self.plan: list[str] = []

    def __call__(self, _conn: Any, message: Any) -> None:
        text = str(getattr(message, "message", message))
        if "<=>" in text and "Query Text" in text:
            lines = text.splitlines()
            start = next((i for i, line in enumerate(lines) if "Query Text" in line), 0)
            body = [line for line in lines[start + 1 :] if line.strip()]
            # The query text runs on to the plan's first node; the plan starts at the first line with a cost.
            first = next((i for i, line in enumerate(body) if "(cost=" in line or "(actual" in line), 0)
            self.plan = body[first:]

    async def arm(self, session: Any) -> Any:
        from sqlalchemy import text

        raw = await (await session.connection()).get_raw_connection()
        driver = raw.driver_connection
        driver.add_log_listener(self)
        for statement in (
            "LOAD 'auto_explain'",
            "SET LOCAL auto_explain.log_min_duration = 0",
            "SET LOCAL auto_explain.log_analyze = on",
            "SET LOCAL auto_explain.log_level = notice",
        ):
            await session.execute(text(statement))
        return driver


def scans(plan: list[str], table: str) -> list[str]:
    """The plan's scans, in order, e.g. 'Parallel Seq Scan on assets', 'Index Scan using hnsw on vectors'."""
    found = []
    for line in plan:
        m = re.search(
            r"((?:Parallel )?(?:Seq|Index Only|Index|Bitmap Heap|Bitmap Index) Scan)(?: using (\S+))?(?: on (\S+))?",
            line,
        )
        if m:
            name = (
                m.group(1)
                + (f" using {m.group(2)}" if m.group(2) else "")
                + (f" on {m.group(3)}" if m.group(3) else "")
            )
            found.append(name.replace(f"{table}_", "").replace(table, "vectors"))
    return found


def scan_rows(plan: list[str], index: str) -> float | None:
    """How many rows the HNSW index scan returned (more than ef_search: the iterative scan went on)."""
    for line in plan:
        if index in line:
            found = re.search(r"actual time=[^)]*rows=([\d.]+)", line)
            return float(found.group(1)) if found else None
    return None


async def load(url: str, n: int, base: np.ndarray, space: Any, account: uuid.UUID) -> tuple[list[uuid.UUID], dict]:
    """Assets and vectors by COPY with the HNSW index dropped, then the index rebuilt; timings and facts."""
    from app.core.db import create_engine, sessionmaker
    from app.search.store import ensure_space

    engine = create_engine(url, pool_size=1)
    try:
        async with sessionmaker(engine)() as session, session.begin():
            await ensure_space(session, space)
    finally:
        await engine.dispose()
    table, index = space.table, f"{space.table}_hnsw"
    conn = await asyncpg.connect(asyncpg_dsn(url))
    notices: list[str] = []
    conn.add_log_listener(lambda _c, message: notices.append(str(message.message)))
    try:
        await conn.set_type_codec(
            "vector", schema="public", encoder=encode_vector, decoder=decode_vector, format="binary"
        )
        facts: dict[str, Any] = {
            "pgvector": await conn.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'vector'"),
            "server_version": await conn.fetchval("SHOW server_version"),
        }
        for name in ("shared_buffers", "max_parallel_maintenance_workers", "max_parallel_workers_per_gather", "jit"):
            facts[name] = await conn.fetchval(f"SHOW {name}")
        definition = await conn.fetchval("SELECT pg_get_indexdef($1::regclass)", index)
        await conn.execute(f'DROP INDEX "{index}"')
        collection = uuid.uuid4()
        await conn.execute(
            "INSERT INTO asset_collections (id, name, account_id, description) VALUES ($1, 'bench-shared', NULL, '')",
            collection,
        )
        ids = [uuid.uuid4() for _ in range(n)]
        files = json.dumps({"glb": "model.glb", "thumbnail": "preview.png"})
        started = time.perf_counter()
        await conn.copy_records_to_table(
            "assets",
            columns=["id", "account_id", "collection_id", "source_key", "caption", "files", "face_count"],
            records=(
                (aid, account, None, f"own/{i}", f"synthetic asset {i}", files, 1000)
                if i % OWN_EVERY == 0
                else (aid, None, collection, f"shared/{i}", f"synthetic asset {i}", files, 1000)
                for i, aid in enumerate(ids)
            ),
        )
        facts["copy_assets_s"] = time.perf_counter() - started
        started = time.perf_counter()
        await conn.copy_records_to_table(
            table, columns=["asset_id", "view", "embedding"], records=((aid, 0, base[i]) for i, aid in enumerate(ids))
        )
        facts["copy_vectors_s"] = time.perf_counter() - started
        started = time.perf_counter()
        await conn.execute(f'ANALYZE assets; ANALYZE "{table}"')
        facts["analyze_s"] = time.perf_counter() - started
        await conn.execute("SET maintenance_work_mem = '1GB'")
        started = time.perf_counter()
        await conn.execute(definition)
        facts["build_s"] = time.perf_counter() - started
        facts["index_definition"] = definition
        facts["build_notices"] = notices[:]
        facts["table_mb"] = await conn.fetchval(f"SELECT pg_total_relation_size('\"{table}\"'::regclass)") / 2**20
        facts["index_mb"] = await conn.fetchval(f"SELECT pg_relation_size('\"{index}\"'::regclass)") / 2**20
    finally:
        await conn.close()
    return ids, facts


MODES = {
    "app": "nearest() as the API calls it (the planner's choice)",
    "forced": "nearest() with SET LOCAL enable_sort = off (the HNSW plan forced)",
    "bare": "the index alone: ORDER BY embedding <=> q LIMIT 10, no joins",
    "exact": "nearest() with SET LOCAL enable_indexscan = off (an exact scan)",
}


async def ask(
    maker: Any,
    space: Any,
    query: np.ndarray,
    account: uuid.UUID,
    collections: list[str] | None,
    mode: str,
    explain: bool = False,
) -> tuple[float, list[uuid.UUID], list[str]]:
    """One search in its own transaction, as the API makes it; (ms, asset ids, plan if asked)."""
    from sqlalchemy import text

    from app.search.store import nearest, vector_literal

    catcher, driver = PlanCatcher(), None
    started = time.perf_counter()
    async with maker() as session, session.begin():
        if explain:
            driver = await catcher.arm(session)
        if mode == "bare":
            await session.execute(text("SET LOCAL hnsw.iterative_scan = relaxed_order"))
            await session.execute(text("SET LOCAL hnsw.ef_search = 100"))
            rows = await session.execute(
                text(f'SELECT asset_id FROM "{space.table}" ORDER BY embedding <=> CAST(:q AS vector) LIMIT :k'),
                {"q": vector_literal(query), "k": K},
            )
            found = [row.asset_id for row in rows]
        else:
            if mode != "app":
                setting = "enable_sort" if mode == "forced" else "enable_indexscan"
                await session.execute(text(f"SET LOCAL {setting} = off"))
            hits = await nearest(session, space, query, account_id=account, collections=collections, limit=K)
            found = [asset for asset, _ in hits]
    elapsed = (time.perf_counter() - started) * 1000
    if driver is not None:
        driver.remove_log_listener(catcher)
    return elapsed, found, catcher.plan


async def compare(
    url: str,
    space: Any,
    queries: np.ndarray,
    warmup: np.ndarray,
    account: uuid.UUID,
    collections: list[str] | None,
    truth: list[list[uuid.UUID]],
    modes: tuple[str, ...],
    exact_q: int,
) -> dict[str, Any]:
    """The modes interleaved query by query (exact on the first `exact_q` only); latency, recall@10 against the
    true neighbours (numpy, over the same visible set; checked against the database's exact answers), plans.

    Each mode has a connection of its own: a cached (generic) plan made under one mode's settings would otherwise
    serve the others, since Postgres does not re-plan a prepared statement when a planner setting changes."""
    from app.core.db import create_engine, sessionmaker

    engines = {mode: create_engine(url, pool_size=1) for mode in modes}
    try:
        return await _compare({m: sessionmaker(e) for m, e in engines.items()}, space, queries, warmup, account,
                              collections, truth, modes, exact_q)  # fmt: skip
    finally:
        for engine in engines.values():
            await engine.dispose()


async def _compare(makers: dict[str, Any], space: Any, queries: np.ndarray, warmup: np.ndarray, account: uuid.UUID,
                   collections: list[str] | None, truth: list[list[uuid.UUID]], modes: tuple[str, ...],
                   exact_q: int) -> dict[str, Any]:  # fmt: skip
    for q in warmup:
        for mode in modes:
            await ask(makers[mode], space, q, account, collections, mode)
    ms: dict[str, list[float]] = {m: [] for m in modes}
    recall: dict[str, list[float]] = {m: [] for m in modes}
    short = dict.fromkeys(modes, 0)
    for i, (q, expected) in enumerate(zip(queries, truth, strict=True)):
        for mode in modes:
            if mode == "exact" and i >= exact_q:
                continue
            elapsed, found, _ = await ask(makers[mode], space, q, account, collections, mode)
            ms[mode].append(elapsed)
            recall[mode].append(len(set(found) & set(expected)) / K)
            short[mode] += len(found) < K
    index = f"{space.table}_hnsw"
    out: dict[str, Any] = {"index": index}
    for mode in modes:
        plan = (await ask(makers[mode], space, queries[-1], account, collections, mode, explain=True))[2]
        out[mode] = {
            "what": MODES[mode],
            "ms": latency(ms[mode]),
            "recall_at_10": statistics.fmean(recall[mode]),
            "recall_min": min(recall[mode]),
            "queries_recall_below_half": sum(r < 0.5 for r in recall[mode]),
            "short_answers": short[mode],
            "plan_uses_hnsw": any(index in line for line in plan),
            "index_scan_rows": scan_rows(plan, index),
            "parallel_workers": max(
                (int(m) for m in re.findall(r"Workers Launched: (\d+)", "\n".join(plan))), default=0
            ),
            "generic_plan": any(re.search(r"\$\d", line) for line in plan),
            "scans": scans(plan, space.table),
            "jit": any(line.strip().startswith("JIT:") for line in plan),
            "plan": [re.sub(r"'\[[^']*\]'", "'[q]'", line) for line in plan],
        }
    exact_p50 = out["exact"]["ms"]["p50"]
    for mode in modes:
        out[mode]["speedup_vs_exact_p50"] = exact_p50 / out[mode]["ms"]["p50"]
    return out


async def bench_search(url: str, n: int, count: int, exact_q: int) -> dict[str, Any]:
    from app.core.db import create_engine, sessionmaker
    from app.search.store import Space
    from billing import service as billing_service

    started = time.perf_counter()
    base, held = clustered(n, count + WARMUP)
    queries, warmup = held[:count], held[count:]
    own_rows = np.arange(0, n, OWN_EVERY)
    truth_all, truth_own = exact_numpy(base, queries), exact_numpy(base, queries, own_rows)
    generated_s = time.perf_counter() - started
    space = Space(name=SPACE_NAME, dim=DIM, modality="text", model="synthetic")
    engine = create_engine(url, pool_size=2)
    try:
        maker = sessionmaker(engine)
        async with maker() as session, session.begin():
            account = (await billing_service.create_account(session, name="bench-search")).id
        say(f"{n:,} vectors made ({generated_s:.1f} s); loading by COPY, then building the HNSW index")
        ids, facts = await load(url, n, base, space, account)
        say(
            f"loaded in {facts['copy_assets_s'] + facts['copy_vectors_s']:.1f} s, index built in "
            f"{facts['build_s']:.1f} s; {count} queries ({exact_q} exact), the ways interleaved"
        )
        runs = {}
        for key, collections, truth, modes in (
            ("all", None, truth_all, ("app", "forced", "bare", "exact")),
            ("own_only", ["generated"], truth_own, ("app", "forced", "exact")),
        ):
            r = runs[key] = await compare(
                url,
                space,
                queries,
                warmup,
                account,
                collections,
                [[ids[i] for i in row] for row in truth],
                modes,
                exact_q,
            )
            say(
                f"{key}: "
                + "; ".join(
                    f"{m} p50 {r[m]['ms']['p50']:.1f} ms, recall@10 {r[m]['recall_at_10']:.3f}"
                    + ("" if r[m]["plan_uses_hnsw"] else " (no HNSW)")
                    for m in modes
                )
            )
    finally:
        await engine.dispose()
    return {
        "n": n,
        "dim": DIM,
        "centres": CENTRES,
        "queries": count,
        "exact_queries": min(exact_q, count),
        "own": len(own_rows),
        "generate_s": generated_s,
        **facts,
        **runs,
    }


# --- (2) import throughput ---------------------------------------------------------------------------------------

COLOURS = {
    "red": (200, 30, 30),
    "blue": (30, 60, 220),
    "green": (40, 160, 60),
    "orange": (250, 120, 0),
    "white": (230, 230, 230),
    "black": (25, 25, 25),
    "yellow": (230, 200, 40),
    "brown": (150, 90, 40),
}


def _shape(kind: str, size: float, detail: int) -> tuple[trimesh.Trimesh, str]:
    if kind == "box":
        return trimesh.creation.box((size, size * 0.6, size * 0.8)), "a box, a crate"
    if kind == "ball":
        return trimesh.creation.icosphere(subdivisions=detail, radius=size / 2), "a ball, a sphere"
    if kind == "pillar":
        return trimesh.creation.cylinder(radius=size / 8, height=size, sections=8 * detail + 8), "a column, a pillar"
    if kind == "cone":
        return trimesh.creation.cone(radius=size / 2, height=size, sections=8 * detail + 8), "a cone"
    if kind == "ring":
        return trimesh.creation.torus(
            major_radius=size / 2, minor_radius=size / 8, major_sections=12 * detail + 12, minor_sections=6 * detail + 6
        ), "a ring, a torus"
    return trimesh.creation.capsule(height=size, radius=size / 4, count=[8 * detail + 8, 8 * detail + 8]), "a capsule"


def write_library(folder: Path, count: int, seed: int = 1) -> Path:
    """`count` GLBs of varied shape, size, colour and density (some in subfolders), and a captions JSON beside."""
    rng = np.random.default_rng(seed)
    captions: dict[str, str] = {}
    kinds = ("box", "ball", "pillar", "cone", "ring", "capsule")
    for i in range(count):
        kind, colour = kinds[i % len(kinds)], list(COLOURS)[int(rng.integers(len(COLOURS)))]
        size = float(rng.uniform(0.2, 3.0))
        mesh, words = _shape(kind, size, int(rng.integers(1, 5)))
        mesh.visual.vertex_colors = np.tile(np.array([*COLOURS[colour], 255], dtype=np.uint8), (len(mesh.vertices), 1))
        key = f"{'set-a/' if i % 4 == 0 else ''}{kind}-{i:03d}"
        target = folder / f"{key}.glb"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(mesh.export(file_type="glb"))
        scale = "small" if size < 0.8 else "large" if size > 2 else "medium-sized"
        captions[key] = f"a {scale} {colour} {kind}: {words}"
    out = folder.parent / "captions.json"
    out.write_text(json.dumps(captions))
    return out


def run_import(url: str, folder: Path, captions: Path, formats: tuple[str, ...], collection: str) -> dict[str, Any]:
    """In its own process: `import_folder` timed file by file (the first pays for loading the models)."""
    import billing.models  # noqa: F401  (the accounts table, for the ORM's foreign keys, as the CLI has it)
    from app.core.assets import AssetStore
    from app.core.db import create_engine, sessionmaker
    from app.search import service as search_service
    from inference.library_import import import_folder

    stamps: list[float] = []

    async def go(store_root: Path) -> Any:
        engine = create_engine(url, pool_size=1)
        try:
            return await import_folder(
                sessionmaker(engine),
                AssetStore(store_root),
                search_service.Models(None, None),
                folder,
                collection=collection,
                captions=captions,
                formats=formats,
                on_progress=lambda *_: stamps.append(time.perf_counter()),
            )
        finally:
            await engine.dispose()

    with tempfile.TemporaryDirectory(prefix="mfbench-store-") as store_root:
        started = time.perf_counter()
        report = asyncio.run(go(Path(store_root)))
        end = time.perf_counter()
    per_file = [b - a for a, b in zip(stamps, [*stamps[1:], end], strict=True)]
    warm = per_file[1:]
    return {
        "formats": list(formats),
        "files": len(per_file),
        "imported": report.imported,
        "failed": report.failed,
        "seconds": report.seconds,
        "total_s": end - started,
        "first_s": per_file[0] if per_file else None,
        "assets_per_s": report.imported / report.seconds if report.seconds else 0.0,
        "warm_s_per_asset": statistics.fmean(warm) if warm else None,
        "warm_assets_per_s": len(warm) / sum(warm) if warm else None,
        "warm_p50_s": statistics.median(warm) if warm else None,
        "peak_rss_mb": peak_rss_mb(),
        "per_file_s": per_file,
    }


def bench_import(url: str, count: int, all_formats: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"models": count}
    with tempfile.TemporaryDirectory(prefix="mfbench-library-") as tmp:
        captions = write_library(Path(tmp) / "library", count)
        runs = [("glb", ("glb",))] + ([("all", ("glb", "fbx", "obj", "usdz"))] if all_formats else [])
        for label, formats in runs:
            say(f"import of {count} models, {'+'.join(formats)}, in a fresh process")
            try:
                out[label] = run_child(
                    "bench.asset_search",
                    "import",
                    url,
                    str(Path(tmp) / "library"),
                    str(captions),
                    ",".join(formats),
                    f"bench-{label}",
                    timeout=IMPORT_TIMEOUT_S,
                )
            except subprocess.CalledProcessError as exc:
                raise RuntimeError(f"the import child failed ({exc.returncode}): {exc.stderr[-3000:]}") from exc
            r = out[label]
            if r["failed"]:
                say(f"import {label}: {len(r['failed'])} files failed, e.g. {r['failed'][0]}")
            say(
                f"import {label}: {r['assets_per_s']:.2f} assets/s cold (first file {r['first_s']:.1f} s), "
                f"{r['warm_assets_per_s'] or 0:.2f} warm"
            )
    return out


# --- the whole part ------------------------------------------------------------------------------------------------


def measure(
    database_url: str,
    n: int = 100_000,
    queries: int = 200,
    models: int = 20,
    all_formats: bool = True,
    exact_queries: int = 50,
) -> dict[str, Any]:
    """Both parts in throwaway databases on `database_url`'s server (dropped at the end)."""
    started = time.perf_counter()
    results: dict[str, Any] = {}
    with throwaway_database(database_url, f"mf_bench_search_{os.getpid()}") as url:
        results["search"] = asyncio.run(bench_search(url, n, queries, exact_queries))
    results["search"]["wall_s"] = time.perf_counter() - started
    mark = time.perf_counter()
    if models:
        with throwaway_database(database_url, f"mf_bench_import_{os.getpid()}") as url:
            results["import"] = bench_import(url, models, all_formats)
        results["import"]["wall_s"] = time.perf_counter() - mark
    results["wall_s"] = time.perf_counter() - started
    return results


def _ms(value: float) -> str:
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _versus(ours: float, base: float) -> str:
    ratio = ours / base
    return f"{ratio:.3f}x ({1 / ratio:.1f}x faster)" if ratio < 1 else f"{ratio:.2f}x ({ratio:.1f}x slower)"


def table(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    s = results["search"]
    load_s = s["copy_assets_s"] + s["copy_vectors_s"]
    rows = [
        (
            f"(s) HNSW build, {s['n']:,} x {s['dim']}-d, s",
            f"{s['build_s']:.1f} (index {s['index_mb']:.0f} MB)",
            f"{load_s:.1f} (COPY of assets + vectors)",
            f"{s['build_s'] / load_s:.1f}x",
        )
    ]
    labels = {"app": "nearest()", "forced": "same, HNSW forced (enable_sort off)", "bare": "the index alone, no joins"}
    for key, scope in (("all", f"all {s['n']:,} visible"), ("own_only", f"own {s['own']:,} of {s['n']:,}")):
        r = s[key]
        e = r["exact"]["ms"]
        for mode, label in labels.items():
            if mode not in r:
                continue
            m = r[mode]
            plan = "HNSW" if m["plan_uses_hnsw"] else "no HNSW"
            if m["index_scan_rows"] is not None:
                plan += f" {m['index_scan_rows']:,.0f} rows"
            rows.append(
                (
                    f"(s) top-10, {scope}, {label}, p50/p99 ms" if mode == "app" else f"    {label}, p50/p99 ms",
                    f"{_ms(m['ms']['p50'])} / {_ms(m['ms']['p99'])}, recall {m['recall_at_10']:.3f}, {plan}",
                    f"{_ms(e['p50'])} / {_ms(e['p99'])} (exact scan, {e['n']} q)",
                    _versus(m["ms"]["p50"], e["p50"]),
                )
            )
            if mode == "app":
                kind = "generic" if m["generic_plan"] else "custom"
                seen = [scan for scan in dict.fromkeys(m["scans"]) if scan.endswith((" assets", " vectors"))]
                rows.append((f"    its plan as run ({kind}, auto_explain)", "; ".join(seen), "", ""))
    imp = results.get("import")
    if imp:
        glb = imp["glb"]
        for key in ("glb", "all"):
            if key not in imp:
                continue
            r = imp[key]
            rows.append(
                (
                    f"(s) import {r['files']} models, {'+'.join(r['formats'])}, assets/s",
                    f"{r['assets_per_s']:.2f} cold, {r['warm_assets_per_s']:.2f} warm",
                    f"{r['warm_s_per_asset']:.2f} s/asset warm, first {r['first_s']:.1f} s",
                    "-" if key == "glb" else f"{r['warm_s_per_asset'] / glb['warm_s_per_asset']:.2f}x glb only",
                )
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.asset_search", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="vectors in the table (default 100,000)")
    parser.add_argument("--queries", type=int, default=200, help="queries (default 200)")
    parser.add_argument("--exact", type=int, default=50, help="of which also timed exactly (default 50)")
    parser.add_argument("--models", type=int, default=20, help="models to import (default 20; 0: skip the import)")
    parser.add_argument("--glb-only", action="store_true", help="skip the import with every default format")
    parser.add_argument("--one", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        _, url, folder, captions, formats, collection = args.one
        print(json.dumps(run_import(url, Path(folder), Path(captions), tuple(formats.split(",")), collection)))
        return 0
    url = os.environ.get("DATABASE_URL")
    with tempfile.TemporaryDirectory(prefix="mfbench-") as home:
        server = None
        if not url:  # an embedded Postgres of our own, stopped at the end
            from app.core import embedded

            server, url = embedded.start_postgres(Path(home) / "pg", database="postgres")
        try:
            results = measure(url, args.n, args.queries, args.models, not args.glb_only, args.exact)
        finally:
            if server is not None:
                server.cleanup()
    for row in table(results):
        print(f"{row[0]:<58} {row[1]:<42} {row[2]:<36} {row[3]}")
    print(f"{results['wall_s']:.0f} s in all")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
