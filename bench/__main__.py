"""`python -m bench [--quick]`: MeshFoundry's API, queue and SSE figures, each against a baseline from the same run.

(a) GET task / list throughput and latency vs a bare FastAPI route; (b) create-preview vs the bare route's POST;
(c) enqueue-to-start latency vs arq's own for a no-op job at the same poll delay; (d) SSE memory per stream (vs bare
sse-starlette) and progress fan-out delay to N streams (vs 1 stream); (p) the mesh pipeline, a ~300k-face raw mesh to
every deliverable at 30k faces, per stage, vs the same libraries called plainly (bench/pipeline.py); (i) image-to-3d,
a 1024x1024 photo-like picture to every deliverable, per stage, vs the u2netp call alone (bench/image_to_3d.py);
(m) model operations (convert, resize, remesh to quads, repair) on big inputs vs plain library calls
(bench/model_ops.py); (r) characters: rigging a 30k-face character per stage, one animation export and a 6 s
text-to-motion clip vs the irreducible library calls (bench/characters.py); (s) asset search on pgvector, 100k vectors:
HNSW build, top-10 latency and recall@10 through the app's nearest() vs an exact scan, and library import
throughput (bench/asset_search.py); (v) video: a 10 s talking-head clip at 512x512 vs encoding as many still frames,
and the turntable's cost per model task (bench/video.py); (g) GPU scheduling: a simulated trace of the seed's model mix
on three GPU sets, our workers vs 3DAIGC-API's FIFO (bench/gpu_trace.py).
Results: a table on stdout and `bench/results/latest.json`. Everything runs on 127.0.0.1 and every process started
here is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import resource
import shutil
import signal
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from bench import asset_search as bench_asset_search
from bench import characters as bench_characters
from bench import gpu_trace as bench_gpu_trace
from bench import image_to_3d as bench_image_to_3d
from bench import model_ops as bench_model_ops
from bench import pipeline as bench_pipeline
from bench import video as bench_video
from bench.loadgen import Client, build_request, raise_nofile
from bench.services import HOST, NOOP_JOB_IDS, ROOT, Server, Stack

RESULTS = Path(__file__).resolve().parent / "results"
CREATE_BODY = {"mode": "preview", "prompt": "bench", "target_formats": ["glb"]}
TERMINAL = (b'"status":"SUCCEEDED"', b'"status":"FAILED"', b'"status":"CANCELED"')


@dataclass(frozen=True)
class Config:
    quick: bool
    concurrency: int
    read_s: float
    warmup_s: float
    create_concurrency: int
    create_s: float
    seed_tasks: int
    sse_streams: int
    sse_updates: int
    latency_tasks: int
    noop_jobs: int
    poll_delay_s: float

    @classmethod
    def make(cls, quick: bool) -> Config:
        return cls(
            quick=quick,
            concurrency=32,
            read_s=2.0 if quick else 8.0,
            warmup_s=0.5 if quick else 1.0,
            create_concurrency=16,
            create_s=2.0 if quick else 6.0,
            seed_tasks=50,
            sse_streams=200 if quick else 2000,
            sse_updates=3 if quick else 5,
            latency_tasks=5 if quick else 30,
            noop_jobs=10 if quick else 30,
            poll_delay_s=0.1,  # Settings.worker_poll_delay_s default
        )


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": pct(values, 0.5),
        "p90": pct(values, 0.9),
        "p99": pct(values, 0.99),
        "max": max(values) if values else float("nan"),
        "mean": sum(values) / len(values) if values else 0.0,
    }


# --- CPU accounting (who used the two cores during a load run) ------------------------------------------------


class CpuMeter:
    """CPU used by process groups during a run, in cores; `other` is what the rest of the machine used meanwhile."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups
        self.start = self._sample()
        self.busy0 = self._busy()
        self.t0 = time.monotonic()

    @staticmethod
    def _busy() -> float:
        times = psutil.cpu_times()
        return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))

    @staticmethod
    def _procs(root: int) -> list[psutil.Process]:
        try:
            proc = psutil.Process(root)
            return [proc, *proc.children(recursive=True)]
        except psutil.Error:
            return []

    def _sample(self) -> dict[str, dict[int, float]]:
        out: dict[str, dict[int, float]] = {}
        for name, roots in self.groups.items():
            seen: dict[int, float] = {}
            for root in roots:
                for proc in self._procs(root):
                    try:
                        times = proc.cpu_times()
                        seen[proc.pid] = times.user + times.system
                    except psutil.Error:
                        pass
            out[name] = seen
        return out

    def stop(self, extra: dict[str, float] | None = None) -> dict[str, float]:
        """Cores per group; `extra` adds groups measured elsewhere (CPU seconds)."""
        end = self._sample()
        wall = time.monotonic() - self.t0
        cores = {
            name: sum(v - self.start[name].get(pid, 0.0) for pid, v in end[name].items()) / wall for name in self.groups
        }
        for name, seconds in (extra or {}).items():
            cores[name] = seconds / wall
        cores["other"] = max(0.0, (self._busy() - self.busy0) / wall - sum(cores.values()))
        return cores


def idle_check(seconds: float = 0.5) -> float:
    """How busy the machine is before we start anything, in cores."""
    before = CpuMeter._busy()
    time.sleep(seconds)
    return (CpuMeter._busy() - before) / seconds


# --- the load generator subprocess ----------------------------------------------------------------------------


async def loadgen_http(spec: dict[str, Any]) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.loadgen",
        "http",
        json.dumps(spec),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), spec["duration_s"] + spec.get("warmup_s", 1) + 60)
    if proc.returncode != 0:
        raise RuntimeError(f"loadgen failed ({proc.returncode}): {err.decode()[-2000:]}")
    return json.loads(out.decode().strip().splitlines()[-1])  # type: ignore[no-any-return]


async def measure_http(stack: Stack, cfg: Config, label: str, server: Server, spec: dict[str, Any]) -> dict[str, Any]:
    spec = {"port": server.port, "warmup_s": cfg.warmup_s, **spec}
    meter = CpuMeter(services_cpu_groups(stack, server))
    result = await loadgen_http(spec)
    result["cpu_cores"] = meter.stop({"loadgen": result["client_cpu_s"]})
    bad = result["requests"] - result["ok"]
    say(
        f"{label}: {result['rps']:.0f} req/s, p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms"
        + (f", {bad} non-2xx {result['statuses']}" if bad else "")
        + (f", {result['errors']} errors" if result["errors"] else "")
    )
    return result


def services_cpu_groups(stack: Stack, server: Server) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {"server": [server.pid]}
    if stack._pg is not None:
        pid = stack._pg.get_pid()
        if pid:
            groups["postgres"] = [pid]
    if stack._redis is not None:
        groups["redis"] = [stack._redis.process.pid]
    return groups


# --- database helpers: exactly what the worker does, without the work -----------------------------------------


class Db:
    def __init__(self, url: str) -> None:
        from app.core.db import create_engine, sessionmaker

        self.engine = create_engine(url, pool_size=2)
        self.maker = sessionmaker(self.engine)

    async def close(self) -> None:
        await self.engine.dispose()

    async def mark_succeeded(self, task_ids: list[str]) -> None:
        """Claim and succeed each task as the worker would (outputs named, files not produced)."""
        from app.tasks import service as task_service

        outputs = {
            "model": {"glb": "model.glb", "obj": "model.obj", "stl": "model.stl"},
            "textures": [],
            "thumbnail": "preview.png",
            "alpha_thumbnail": None,
            "source": "raw.ply",
            "faces": 30000,
        }
        for raw in task_ids:
            async with self.maker() as session, session.begin():
                task = await task_service.claim(
                    session, task_id=uuid.UUID(raw), job_timeout_s=3600, heartbeat_stale_s=3600
                )
                assert task is not None
                await task_service.succeed(
                    session, task_id=task.id, attempt=task.attempts, outputs=outputs, retention_s=259_200
                )

    async def claim(self, task_id: str) -> tuple[int, float]:
        """claim() as the worker does (IN_PROGRESS, progress 0, NOTIFY); the attempt and the time before COMMIT."""
        from app.tasks import service as task_service

        async with self.maker() as session:
            await session.begin()
            task = await task_service.claim(
                session, task_id=uuid.UUID(task_id), job_timeout_s=3600, heartbeat_stale_s=3600
            )
            assert task is not None
            stamp = time.monotonic()
            await session.commit()
            return task.attempts, stamp

    async def progress(self, task_id: str, attempt: int, value: int) -> float:
        """report_progress in one transaction (UPDATE + pg_notify); returns monotonic time just before COMMIT."""
        from app.tasks import service as task_service

        async with self.maker() as session:
            await session.begin()
            ok = await task_service.report_progress(
                session, task_id=uuid.UUID(task_id), attempt=attempt, progress=value
            )
            assert ok
            stamp = time.monotonic()
            await session.commit()
            return stamp

    async def retire_unfinished(self) -> int:
        """Cancel what earlier phases left PENDING / IN_PROGRESS, so the worker's reaper does not pick it up."""
        from sqlalchemy import text

        async with self.maker() as session, session.begin():
            result = await session.execute(
                text("UPDATE tasks SET status='CANCELED', finished_at=now() WHERE status IN ('PENDING','IN_PROGRESS')")
            )
            return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def vacuum(self) -> None:
        """VACUUM (ANALYZE) the tasks table now (outside a transaction), so that autovacuum's pass over the rows an
        earlier phase wrote does not take CPU from the next one."""
        async with self.engine.connect() as conn:
            await (await conn.execution_options(isolation_level="AUTOCOMMIT")).exec_driver_sql("VACUUM (ANALYZE) tasks")

    async def scalar(self, sql: str) -> Any:
        from sqlalchemy import text

        async with self.maker() as session:
            return (await session.execute(text(sql))).scalar()


async def create_tasks(port: int, key: str, count: int) -> list[str]:
    client = Client(port, {"Authorization": f"Bearer {key}"})
    ids = []
    try:
        for _ in range(count):
            status, body = await client.request("POST", "/openapi/v2/text-to-3d", CREATE_BODY)
            if status != 202:
                raise RuntimeError(f"create answered {status}: {body}")
            ids.append(body["result"])
    finally:
        await client.close()
    return ids


# --- (a) + (b): request throughput and latency ----------------------------------------------------------------


async def bench_requests(stack: Stack, cfg: Config, db: Db, out: dict[str, Any]) -> None:
    baseline = stack.start_baseline()
    api = stack.start_api("api-requests", "idle")
    auth = {"Authorization": f"Bearer {stack.api_key}"}
    ids = await create_tasks(api.port, stack.api_key, cfg.seed_tasks)
    await db.mark_succeeded(ids)
    say(f"seeded {len(ids)} SUCCEEDED tasks")
    common = {"concurrency": cfg.concurrency, "duration_s": cfg.read_s}
    out["a"] = {
        "baseline_get": await measure_http(stack, cfg, "bare GET /ping", baseline, {**common, "paths": ["/ping"]}),
        "get_task": await measure_http(
            stack,
            cfg,
            "GET task",
            api,
            {**common, "headers": auth, "paths": [f"/openapi/v2/text-to-3d/{i}" for i in ids]},
        ),
        "list": await measure_http(
            stack,
            cfg,
            "list page_size=10",
            api,
            {**common, "headers": auth, "paths": ["/openapi/v2/text-to-3d?page_size=10"]},
        ),
    }
    create = {"concurrency": cfg.create_concurrency, "duration_s": cfg.create_s, "method": "POST", "body": CREATE_BODY}
    before = await db.scalar("SELECT count(*) FROM tasks")
    out["b"] = {
        "baseline_post": await measure_http(stack, cfg, "bare POST /ping", baseline, {**create, "paths": ["/ping"]}),
        "create": await measure_http(
            stack, cfg, "POST create preview", api, {**create, "headers": auth, "paths": ["/openapi/v2/text-to-3d"]}
        ),
    }
    out["b"]["tasks_created"] = int(await db.scalar("SELECT count(*) FROM tasks")) - int(before)
    # The same load from as many accounts as connections: creates of different accounts do not wait for each
    # other's row lock, which one account's do (the worst case above). Each account starts with no queue.
    tenants = [{"Authorization": f"Bearer {key}"} for key in stack.tenant_keys]
    out["b"]["create_accounts"] = await measure_http(
        stack,
        cfg,
        f"POST create preview, {len(tenants)} accounts",
        api,
        {**create, "header_sets": tenants, "paths": ["/openapi/v2/text-to-3d"]},
    )
    out["b"]["create_accounts"]["accounts"] = len(tenants)
    # The list again, now with every created task PENDING in the same pool: each row counts the tasks ahead of it.
    pending = int(await db.scalar("SELECT count(*) FROM tasks WHERE status='PENDING'"))
    out["a"]["list_with_pending"] = await measure_http(
        stack,
        cfg,
        f"list with {pending} PENDING",
        api,
        {
            **common,
            "duration_s": max(1.0, cfg.read_s / 4),
            "headers": auth,
            "paths": ["/openapi/v2/text-to-3d?page_size=10"],
        },
    )
    out["a"]["list_with_pending"]["pending_tasks"] = pending
    stack.stop(api)
    await db.vacuum()
    # Scale-out: the same GET load against `meshfoundry api --workers 2` (two processes, a SO_REUSEPORT socket
    # each), then against one process again right after, so that both figures come from the same minute.
    api2 = stack.start_cli_api("api-workers-2", stack.env(QUEUE_NAME=stack.queue("idle")), workers=2)
    gets = {**common, "headers": auth, "paths": [f"/openapi/v2/text-to-3d/{i}" for i in ids]}
    try:
        out["a"]["get_task_workers_2"] = await measure_http(stack, cfg, "GET task, api --workers 2", api2, gets)
    finally:
        stack.stop(api2)
    api1 = stack.start_api("api-requests-1", "idle")
    try:
        out["a"]["get_task_workers_1"] = await measure_http(stack, cfg, "GET task, 1 process (again)", api1, gets)
    finally:
        stack.stop(api1)
    stack.stop(baseline)


# --- (c): enqueue-to-start latency ----------------------------------------------------------------------------


async def wait_health(redis: Any, queue: str, server: Server, stack: Stack, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not await redis.exists(f"{queue}:health-check"):
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited:\n{stack.log_tail(server)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{server.name} not ready:\n{stack.log_tail(server)}")
        await asyncio.sleep(0.05)


async def arq_noop_latency(stack: Stack, cfg: Config) -> dict[str, Any]:
    from arq.connections import RedisSettings, create_pool

    worker = stack.start_noop_worker("noop", cfg.poll_delay_s)
    queue = stack.queue("noop")
    redis = await create_pool(RedisSettings.from_dsn(stack.redis_url))
    try:
        await wait_health(redis, queue, worker, stack)
        start_ms: list[float] = []
        finish_ms: list[float] = []
        for i in range(cfg.noop_jobs + 1):
            await asyncio.sleep(random.uniform(0, cfg.poll_delay_s))
            job = await redis.enqueue_job("noop", _queue_name=queue)
            assert job is not None
            NOOP_JOB_IDS.append(job.job_id)
            await job.result(timeout=30, poll_delay=0.005)
            info = await job.result_info()
            assert info is not None
            if i:  # the first one warms up
                start_ms.append((info.start_time - info.enqueue_time).total_seconds() * 1000)
                finish_ms.append((info.finish_time - info.enqueue_time).total_seconds() * 1000)
    finally:
        await redis.aclose()
        stack.stop(worker)
    return {"enqueue_to_start_ms": summary(start_ms), "enqueue_to_finish_ms": summary(finish_ms)}


async def wait_terminal(port: int, path: str, headers: dict[str, str], timeout: float) -> bytes:
    """Follow the task's SSE stream until a terminal status arrives; returns that status."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(build_request("GET", path, {**headers, "Accept": "text/event-stream"}))
        buffer = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            data = await asyncio.wait_for(reader.read(65536), max(0.1, deadline - time.monotonic()))
            if not data:
                break
            buffer = buffer[-200:] + data
            for marker in TERMINAL:
                if marker in buffer:
                    return marker.split(b":")[1].strip(b'"')
        raise TimeoutError(f"no terminal event on {path}")
    finally:
        writer.close()


STUCK_AFTER_S = 10.0  # a preview takes well under a second here; a task this late is wedged, not slow


def preview_pool() -> str:
    """The worker pool a default preview runs on (`inference/registry.yaml`)."""
    from app.core.registry import load_registry

    entry = load_registry().resolve("text-to-3d-preview", "latest")
    return entry.pool if entry is not None else "default"


async def start_worker_ready(stack: Stack, cfg: Config) -> Server:
    from arq.connections import RedisSettings, create_pool

    pool = preview_pool()
    worker = stack.start_worker("work", cfg.poll_delay_s, pool)
    redis = await create_pool(RedisSettings.from_dsn(stack.redis_url))
    try:
        await wait_health(redis, f"{stack.queue('work')}:{pool}", worker, stack)
    finally:
        await redis.aclose()
    return worker


async def bench_queue_latency(stack: Stack, cfg: Config, db: Db, out: dict[str, Any]) -> None:
    retired = await db.retire_unfinished()
    say(f"(c) canceled {retired} leftover unfinished tasks; arq no-op baseline ({cfg.noop_jobs} jobs)")
    baseline = await arq_noop_latency(stack, cfg)
    worker = await start_worker_ready(stack, cfg)
    api = stack.start_api("api-queue", "work")
    auth = {"Authorization": f"Bearer {stack.api_key}"}
    client = Client(api.port, auth)
    started: list[float] = []
    finished: list[float] = []
    worker_ms: list[float] = []
    client_ms: list[float] = []
    statuses: dict[str, int] = {}
    stuck: list[dict[str, Any]] = []
    say(f"(c) {cfg.latency_tasks} preview tasks, one at a time, worker poll_delay {cfg.poll_delay_s}s")
    try:
        done = -1  # the first task warms the worker up
        while done < cfg.latency_tasks:
            await asyncio.sleep(random.uniform(0, cfg.poll_delay_s))
            t0 = time.monotonic()
            status, body = await client.request("POST", "/openapi/v2/text-to-3d", CREATE_BODY)
            if status != 202:
                raise RuntimeError(f"create answered {status}: {body}")
            task_id = body["result"]
            path = f"/openapi/v2/text-to-3d/{task_id}/stream"
            try:
                final = await wait_terminal(api.port, path, auth, timeout=STUCK_AFTER_S)
            except TimeoutError:
                final = b"STUCK"
            t1 = time.monotonic()
            _, task = await client.request("GET", f"/openapi/v2/text-to-3d/{task_id}")
            if final == b"STUCK":
                # Seen here: IN_PROGRESS at 99% with fresh heartbeats, the worker idle (see the report). Replace the
                # worker, so one wedged job does not stall the rest of the run, and count it.
                stuck.append({"id": task_id, "status": task["status"], "progress": task["progress"],
                              "heartbeat_fresh": task["status"] == "IN_PROGRESS"})  # fmt: skip
                say(f"(c) task {task_id} not finished after {STUCK_AFTER_S:.0f} s: {task['status']} "
                    f"{task['progress']}%; restarting the worker")  # fmt: skip
                if len(stuck) > 3:
                    say("(c) too many stuck tasks; stopping (c) early")
                    break
                stack.stop(worker, timeout=5.0)
                await db.retire_unfinished()
                worker = await start_worker_ready(stack, cfg)
                continue
            done += 1
            if done == 0:
                if final != b"SUCCEEDED":
                    raise RuntimeError(
                        f"warm-up task ended {final!r}: {task.get('task_error')}\n{stack.log_tail(worker)}"
                    )
                continue
            statuses[final.decode()] = statuses.get(final.decode(), 0) + 1
            started.append(task["started_at"] - task["created_at"])
            finished.append(task["finished_at"] - task["created_at"])
            worker_ms.append(task["finished_at"] - task["started_at"])
            client_ms.append((t1 - t0) * 1000)
    finally:
        await client.close()
        stack.stop(api)
        stack.stop(worker)
    out["c"] = {
        "created_to_started_ms": summary(started),
        "created_to_finished_ms": summary(finished),
        "started_to_finished_ms": summary(worker_ms),
        "client_post_to_succeeded_event_ms": summary(client_ms),
        "statuses": statuses,
        "stuck_tasks": stuck,
        "arq_noop": baseline,
        "poll_delay_s": cfg.poll_delay_s,
    }


# --- (d): SSE memory per stream and fan-out delay -------------------------------------------------------------


class SseLoad:
    """A `loadgen sse` subprocess holding `streams` connections, driven line by line."""

    def __init__(self, port: int, path: str, streams: int, progress: list[int], headers: dict[str, str]) -> None:
        self.spec = {
            "port": port,
            "path": path,
            "streams": streams,
            "progress": progress,
            "headers": headers,
            "connect_timeout_s": 90,
        }
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> dict[str, Any]:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.loadgen",
            "sse",
            json.dumps(self.spec),
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=64 * 1024 * 1024,
        )
        return await self.next_message(120)

    async def next_message(self, timeout: float) -> dict[str, Any]:
        assert self.proc is not None
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not line:
            raise RuntimeError("sse loadgen exited")
        return json.loads(line)  # type: ignore[no-any-return]

    async def wait_for(self, event: str, timeout: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                message = await self.next_message(max(0.01, deadline - time.monotonic()))
            except TimeoutError:
                return None
            if message.get("event") == event:
                return message

    async def finish(self) -> dict[str, Any]:
        assert self.proc is not None
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"done\n")
        await self.proc.stdin.drain()
        result = await self.wait_for("result", 60)
        await asyncio.wait_for(self.proc.wait(), 30)
        return result or {}

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


def rss(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


async def settle_rss(pid: int, seconds: float = 0.5) -> int:
    await asyncio.sleep(seconds)
    return rss(pid)


async def fanout(
    stack: Stack, cfg: Config, db: Db, api: Server, task_id: str, streams: int, updates: list[int]
) -> dict[str, Any]:
    """Open `streams` streams on one PENDING task, claim it, send `updates`; delays commit -> arrival."""
    auth = {"Authorization": f"Bearer {stack.api_key}"}
    load = SseLoad(api.port, f"/openapi/v2/text-to-3d/{task_id}/stream", streams, [0, *updates], auth)
    rss_before = await settle_rss(api.pid, 0.3)
    try:
        ready = await load.start()
        rss_after = await settle_rss(api.pid)
        say(
            f"(d) {ready['connected']}/{streams} streams connected in {ready['connect_s']:.2f}s"
            + (f", {ready['failed']} failed" if ready["failed"] else "")
        )
        stamps: dict[int, float] = {}
        # IN_PROGRESS at 0 %: the first change after the connect burst; reported apart, not in the headline.
        attempt, stamps[0] = await db.claim(task_id)
        await load.wait_for("got", 60)
        await asyncio.sleep(0.2)
        complete: dict[int, bool] = {}
        for value in updates:
            stamps[value] = await db.progress(task_id, attempt, value)
            complete[value] = await load.wait_for("got", 60) is not None
            await asyncio.sleep(0.2)
        result = await load.finish()
    finally:
        await load.kill()
    delays: list[float] = []
    per_update = {}
    for value in updates:
        arrived = [(t - stamps[value]) * 1000 for t in result.get("arrivals", {}).get(str(value), [])]
        delays += arrived
        per_update[str(value)] = {"received": len(arrived), **summary(arrived)}
    claim = [(t - stamps[0]) * 1000 for t in result.get("arrivals", {}).get("0", [])]
    return {
        "claim_delay_ms": summary(claim),
        "client_cpu_s": result.get("client_cpu_s"),
        "streams": streams,
        "connected": ready["connected"],
        "failed": ready["failed"],
        "connect_s": ready["connect_s"],
        "rss_before": rss_before,
        "rss_after": rss_after,
        "rss_per_stream_kib": (rss_after - rss_before) / 1024 / max(1, ready["connected"]),
        "delay_ms": summary(delays),
        "expected_events": streams * len(updates),
        "per_update": per_update,
        "all_received": all(complete.values()),
    }


async def bare_sse_memory(stack: Stack, streams: int) -> dict[str, Any]:
    server = stack.start_uvicorn("baseline-sse", "bench.baseline_app:app", stack.env())
    load = SseLoad(server.port, "/sse", streams, [], {})
    try:
        before = await settle_rss(server.pid, 0.3)
        ready = await load.start()
        after = await settle_rss(server.pid)
        await load.finish()
    finally:
        await load.kill()
        stack.stop(server)
    say(f"(d) bare sse-starlette: {ready['connected']} streams in {ready['connect_s']:.2f}s")
    return {
        "streams": streams,
        "connected": ready["connected"],
        "connect_s": ready["connect_s"],
        "rss_before": before,
        "rss_after": after,
        "rss_per_stream_kib": (after - before) / 1024 / max(1, ready["connected"]),
    }


async def bench_sse(stack: Stack, cfg: Config, db: Db, out: dict[str, Any]) -> None:
    retired = await db.retire_unfinished()
    say(f"(d) canceled {retired} leftover unfinished tasks")
    bare = await bare_sse_memory(stack, cfg.sse_streams)
    api = stack.start_api("api-sse", "sse")  # a queue no worker serves: the tasks stay PENDING
    updates = [10 * (i + 1) for i in range(cfg.sse_updates)]
    try:
        one_id, many_id, spread_id = await create_tasks(api.port, stack.api_key, 3)
        single = await fanout(stack, cfg, db, api, one_id, 1, updates)
        many = await fanout(stack, cfg, db, api, many_id, cfg.sse_streams, updates)
    finally:
        stack.stop(api)
    say(
        f"(d) fan-out to {many['connected']}: p50 {many['delay_ms']['p50']:.1f} ms, "
        f"p99 {many['delay_ms']['p99']:.1f} ms; 1 stream p50 {single['delay_ms']['p50']:.1f} ms"
    )
    out["d"] = {"single": single, "many": many, "bare_sse": bare, "updates": updates}
    # The same streams spread over `meshfoundry api --workers 2` (the kernel splits the connections between the two
    # processes; each process hears the change on its own LISTEN connection and writes to its own streams). Only the
    # delays count here: the memory figure above is per process.
    api2 = stack.start_cli_api("api-sse-2", stack.env(QUEUE_NAME=stack.queue("sse")), workers=2)
    try:
        out["d"]["many_workers_2"] = await fanout(stack, cfg, db, api2, spread_id, cfg.sse_streams, updates)
    finally:
        stack.stop(api2)


# --- report ---------------------------------------------------------------------------------------------------


def machine_facts() -> dict[str, Any]:
    import fastapi
    import sqlalchemy
    import uvicorn

    model = ""
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    try:
        import uvloop

        loop = f"uvloop {uvloop.__version__}"
    except ImportError:
        loop = "asyncio"
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "uvicorn": uvicorn.__version__,
        "fastapi": fastapi.__version__,
        "sqlalchemy": sqlalchemy.__version__,
        "event_loop": loop,
        "nofile_soft": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
    }


def ratio(ours: float, base: float) -> str:
    if not base or base != base or ours != ours:
        return "-"
    return f"{ours / base:.2f}x"


def fmt_ms(value: float) -> str:
    return "-" if value != value else (f"{value:.1f}" if value < 100 else f"{value:.0f}")


def table(results: dict[str, Any]) -> str:
    rows: list[tuple[str, str, str, str]] = []
    a, b, c, d = (results.get(k) for k in "abcd")

    def http_rows(label: str, ours: dict[str, Any], base: dict[str, Any], base_label: str) -> None:
        rows.append(
            (
                f"{label} req/s",
                f"{ours['rps']:.0f}",
                f"{base['rps']:.0f} ({base_label})",
                ratio(ours["rps"], base["rps"]),
            )
        )
        rows.append(
            (
                f"{label} p50 / p99 ms",
                f"{fmt_ms(ours['p50_ms'])} / {fmt_ms(ours['p99_ms'])}",
                f"{fmt_ms(base['p50_ms'])} / {fmt_ms(base['p99_ms'])}",
                f"{ratio(ours['p50_ms'], base['p50_ms'])} / {ratio(ours['p99_ms'], base['p99_ms'])}",
            )
        )

    if a:
        conc = a["get_task"]["concurrency"]
        http_rows(f"(a) GET task, {conc} conns", a["get_task"], a["baseline_get"], "bare GET")
        http_rows(f"(a) list 10, {conc} conns", a["list"], a["baseline_get"], "bare GET")
        if "get_task_workers_2" in a:
            two, one = a["get_task_workers_2"], a["get_task_workers_1"]
            rows.append(
                (
                    "(a) GET task, api --workers 2 req/s",
                    f"{two['rps']:.0f}",
                    f"{one['rps']:.0f} (1 process)",
                    ratio(two["rps"], one["rps"]),
                )
            )
            # Per core of API process used: ~1.0x says the processes share nothing that slows them, so throughput
            # grows with the cores they get (on 2 cores, the load generator and Postgres take what the second needs).
            per_core = [run["rps"] / run["cpu_cores"]["server"] if run["cpu_cores"].get("server") else float("nan")
                        for run in (two, one)]  # fmt: skip
            rows.append(
                (
                    "(a) GET task per API core, --workers 2 req/s",
                    f"{per_core[0]:.0f} ({two['cpu_cores']['server']:.2f} cores)",
                    f"{per_core[1]:.0f} ({one['cpu_cores']['server']:.2f} cores, 1 process)",
                    ratio(per_core[0], per_core[1]),
                )
            )
        lp = a["list_with_pending"]
        rows.append(
            (
                f"(a) list 10, {lp['pending_tasks']} PENDING queued req/s",
                f"{lp['rps']:.0f}",
                f"{a['list']['rps']:.0f} (list, none queued)",
                ratio(lp["rps"], a["list"]["rps"]),
            )
        )
    if b:
        http_rows(
            f"(b) create preview, {b['create']['concurrency']} conns, 1 account",
            b["create"],
            b["baseline_post"],
            "bare POST",
        )
        if "create_accounts" in b:
            many = b["create_accounts"]
            label = f"(b) create, {many['concurrency']} conns on {many['accounts']} accounts"
            http_rows(label, many, b["baseline_post"], "bare POST")
    if c:
        noop = c["arq_noop"]
        s, base = c["created_to_started_ms"], noop["enqueue_to_start_ms"]
        rows.append(
            (
                f"(c) created->started p50 / p99 ms (n={s['n']})",
                f"{fmt_ms(s['p50'])} / {fmt_ms(s['p99'])}",
                f"{fmt_ms(base['p50'])} / {fmt_ms(base['p99'])} (arq no-op)",
                f"{ratio(s['p50'], base['p50'])} / {ratio(s['p99'], base['p99'])}",
            )
        )
        f, bf = c["created_to_finished_ms"], noop["enqueue_to_finish_ms"]
        rows.append(
            (
                "(c) created->SUCCEEDED p50 / p99 ms",
                f"{fmt_ms(f['p50'])} / {fmt_ms(f['p99'])}",
                f"{fmt_ms(bf['p50'])} / {fmt_ms(bf['p99'])} (arq no-op)",
                f"{ratio(f['p50'], bf['p50'])} / {ratio(f['p99'], bf['p99'])}",
            )
        )
        if c["stuck_tasks"]:
            rows.append(
                (f"(c) tasks wedged > {STUCK_AFTER_S:.0f} s (worker restarted)", str(len(c["stuck_tasks"])), "0", "-")
            )
        w, cl = c["started_to_finished_ms"], c["client_post_to_succeeded_event_ms"]
        rows.append(
            ("(c) worker run / client POST->SSE done p50 ms", f"{fmt_ms(w['p50'])} / {fmt_ms(cl['p50'])}", "-", "-")
        )
    if d:
        many, one, bare = d["many"], d["single"], d["bare_sse"]
        rows.append(
            (
                f"(d) SSE memory per stream KiB ({many['connected']} streams)",
                f"{many['rss_per_stream_kib']:.1f}",
                f"{bare['rss_per_stream_kib']:.1f} (bare sse-starlette)",
                ratio(many["rss_per_stream_kib"], bare["rss_per_stream_kib"]),
            )
        )
        rows.append(
            (
                f"(d) SSE connect all {many['streams']} s",
                f"{many['connect_s']:.2f}",
                f"{bare['connect_s']:.2f} (bare sse-starlette)",
                ratio(many["connect_s"], bare["connect_s"]),
            )
        )
        dm, d1 = many["delay_ms"], one["delay_ms"]
        rows.append(
            (
                f"(d) fan-out commit->event p50 / p99 ms ({len(d['updates'])} updates)",
                f"{fmt_ms(dm['p50'])} / {fmt_ms(dm['p99'])}",
                f"{fmt_ms(d1['p50'])} / {fmt_ms(d1['p99'])} (1 stream)",
                f"{ratio(dm['p50'], d1['p50'])} / {ratio(dm['p99'], d1['p99'])}",
            )
        )
        rows.append(
            (
                "(d) fan-out max ms / events received",
                f"{fmt_ms(dm['max'])} / {dm['n']}/{many['expected_events']}",
                f"{fmt_ms(d1['max'])} / {d1['n']}/{one['expected_events']}",
                ratio(dm["max"], d1["max"]),
            )
        )
        if "many_workers_2" in d:
            spread = d["many_workers_2"]
            d2 = spread["delay_ms"]
            rows.append(
                (
                    "(d) same, api --workers 2, p50 / p99 ms / events",
                    f"{fmt_ms(d2['p50'])} / {fmt_ms(d2['p99'])} / {d2['n']}/{spread['expected_events']}",
                    f"{fmt_ms(dm['p50'])} / {fmt_ms(dm['p99'])} (1 process)",
                    f"{ratio(d2['p50'], dm['p50'])} / {ratio(d2['p99'], dm['p99'])}",
                )
            )
    widths = [max(len(r[i]) for r in [("figure", "ours", "baseline", "ratio"), *rows]) for i in range(4)]
    line = "  ".join("-" * w for w in widths)
    out = ["  ".join(h.ljust(w) for h, w in zip(("figure", "ours", "baseline", "ratio"), widths, strict=True)), line]
    out += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


def cpu_note(results: dict[str, Any]) -> str:
    a = results.get("a")
    if not a:
        return ""
    parts = []
    for key, label in (("baseline_get", "bare GET"), ("get_task", "GET task"), ("list", "list")):
        cpu = a[key]["cpu_cores"]
        parts.append(f"{label}: " + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items() if v >= 0.005))
    return "CPU in cores during the runs (" + "; ".join(parts) + ")"


async def run(cfg: Config, stack: Stack, only: set[str], results: dict[str, Any]) -> None:
    """Fills `results` part by part, so a failure still reports what finished."""
    db = Db(stack.database_url)
    try:
        results["postgres"] = {
            name: await db.scalar(f"SHOW {name}") for name in ("server_version", "fsync", "synchronous_commit")
        }
        if only & {"a", "b"}:
            await bench_requests(stack, cfg, db, results)
        if "d" in only:
            await bench_sse(stack, cfg, db, results)
        if "c" in only:
            await bench_queue_latency(stack, cfg, db, results)
    finally:
        await db.close()


def _terminate(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts, for a smoke run (< 60 s)")
    parser.add_argument(
        "--only",
        default="abcdpimrsvg",
        help="which parts to run, e.g. 'ad' (default: abcdpimrsvg; p: pipeline; i: image-to-3d; m: model operations; "
        "r: characters; s: asset search; v: video; g: GPU scheduling trace)",
    )
    parser.add_argument(
        "--asset-search-n", type=int, help="(s) vectors in the search table (default 100,000; 20,000 with --quick)"
    )
    parser.add_argument(
        "--asset-search-models", type=int, help="(s) models to import (default 20; 5 with --quick; 0: no import)"
    )
    args = parser.parse_args(argv)
    cfg = Config.make(args.quick)
    raise_nofile(cfg.sse_streams + 1024)
    facts = machine_facts()
    facts["busy_cores_before_start"] = round(idle_check(), 2)
    if facts["busy_cores_before_start"] > 0.2:
        say(f"warning: other processes keep {facts['busy_cores_before_start']:.2f} cores busy; figures will be noisy")
    signal.signal(signal.SIGTERM, _terminate)  # so that `finally` stops every process we started
    t0 = time.monotonic()
    stack = Stack(quick=args.quick)
    results: dict[str, Any] = {}
    error: BaseException | None = None
    try:
        say(f"starting services in {stack.home}")
        stack.start()
        facts["postgres"] = "external" if stack.external_db else "embedded"
        facts["redis"] = "external" if stack.external_redis else "embedded valkey"
        try:
            from uvloop import run as loop_run
        except ImportError:
            loop_run = asyncio.run
        loop_run(run(cfg, stack, set(args.only), results))
        if "p" in args.only:  # the mesh pipeline needs no services; it runs in child processes of its own
            results["pipeline"] = bench_pipeline.measure()
        if "i" in args.only:  # image-to-3d's CPU path, also in child processes
            results["image_to_3d"] = bench_image_to_3d.measure()
        if "m" in args.only:  # model operations on big inputs, also in child processes
            results["model_ops"] = bench_model_ops.measure()
        if "r" in args.only:  # rigging, animation and text-to-motion, also in child processes
            results["characters"] = bench_characters.measure()
        if "s" in args.only:  # asset search, in throwaway databases on the same Postgres
            results["asset_search"] = bench_asset_search.measure(
                stack.database_url,
                n=args.asset_search_n or (20_000 if args.quick else 100_000),
                queries=50 if args.quick else 200,
                models=args.asset_search_models if args.asset_search_models is not None else (5 if args.quick else 20),
                all_formats=not args.quick,
            )
        if "v" in args.only:  # talking head and turntable, in this process
            results["video"] = bench_video.measure(repeat=1 if args.quick else 3)
        if "g" in args.only:  # GPU scheduling: a simulated trace, ours vs 3DAIGC-API's FIFO (no GPU needed)
            results["gpu_trace"] = bench_gpu_trace.measure()
    except BaseException as exc:  # report what finished, then re-raise
        error = exc
        if (stack.home / "logs").exists():  # keep the servers' logs for a post-mortem
            shutil.rmtree(RESULTS / "logs", ignore_errors=True)
            shutil.copytree(stack.home / "logs", RESULTS / "logs")
            say(f"servers' logs kept in {RESULTS / 'logs'}")
    else:
        shutil.rmtree(RESULTS / "logs", ignore_errors=True)  # a post-mortem from an earlier failed run
    finally:
        stack.close()
    elapsed = time.monotonic() - t0
    document = {
        "config": asdict(cfg),
        "machine": facts,
        "elapsed_s": elapsed,
        "results": results,
        "error": repr(error) if error else None,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(document, indent=2, default=str) + "\n")
    pg = results.get("postgres", {})
    print()
    print(
        f"MeshFoundry bench{' --quick' if cfg.quick else ''}: {facts['cpu_count']} cores ({facts['cpu_model']}), "
        f"{facts['memory_gib']} GiB, Python {facts['python']}, {facts['event_loop']}, uvicorn {facts['uvicorn']}, "
        f"Postgres {facts.get('postgres')} {pg.get('server_version', '')} (fsync {pg.get('fsync', '?')}), "
        f"Redis {facts.get('redis')}; other load before start {facts['busy_cores_before_start']} cores; {elapsed:.0f} s"
    )
    print(table(results))
    # Each part's rows, with the column widths its figures need.
    parts = (("pipeline", bench_pipeline, 26, 44), ("image_to_3d", bench_image_to_3d, 26, 44),
             ("model_ops", bench_model_ops, 26, 44), ("characters", bench_characters, 34, 44),
             ("asset_search", bench_asset_search, 42, 36), ("video", bench_video, 34, 44),
             ("gpu_trace", bench_gpu_trace, 26, 44))  # fmt: skip
    for key, module, ours_w, base_w in parts:
        for row in module.table(results[key]) if key in results else ():
            print(f"{row[0]:<58} {row[1]:<{ours_w}} {row[2]:<{base_w}} {row[3]}")
    note = cpu_note(results)
    print(
        f"Load generator, API, Postgres and Redis share the same {facts['cpu_count']} cores: the client's CPU is "
        f"taken from the server, so absolute req/s are lower bounds; compare the ratios. {note}"
    )
    print(f"Results: {RESULTS / 'latest.json'}")
    if error is not None:
        raise error
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
