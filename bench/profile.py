"""`python -m bench.profile get|list|create [--seconds N] [--workers N]`: py-spy on the API under the bench's load.

Starts the same stack as `make bench` (embedded Postgres and Valkey, the API under uvicorn, 50 SUCCEEDED tasks),
drives one route with the bench's load generator and records the API process with py-spy (250 Hz, Python frames).
Writes `bench/results/profile-<route>.raw` (py-spy's collapsed stacks) and `profile-<route>.txt`: own time by
package, then the top functions by own and total time. This is how the figures in docs/performance.md were
attributed; it needs py-spy (in the dev extras) and permission to ptrace the child.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from bench.__main__ import CREATE_BODY, RESULTS, Db, SseLoad, create_tasks, loadgen_http
from bench.services import Stack

ROUTES = {
    "get": lambda ids: {"paths": [f"/openapi/v2/text-to-3d/{i}" for i in ids]},
    "list": lambda ids: {"paths": ["/openapi/v2/text-to-3d?page_size=10"]},
    "create": lambda ids: {"paths": ["/openapi/v2/text-to-3d"], "method": "POST", "body": CREATE_BODY},
    "sse": lambda ids: {},  # 2,000 streams on one task, progress updates while py-spy records (see _sse)
}
SSE_STREAMS = 2000


def top_functions(raw: Path, limit: int = 40) -> str:
    """Own and total share of samples per function, from py-spy's `--format raw` (collapsed stacks)."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        samples += count
        frames = stack.split(";")
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    packages: collections.Counter[str] = collections.Counter()
    for frame, count in own.items():
        packages[_package(frame)] += count
    lines = [f"{samples} samples", "", "own %  package"]
    lines += [f"{100 * n / samples:5.1f}  {name}" for name, n in packages.most_common(20)]
    lines += ["", "own %  function"]
    lines += [f"{100 * n / samples:5.1f}  {name}" for name, n in own.most_common(limit)]
    lines += ["", "total %  function"]
    lines += [f"{100 * n / samples:5.1f}  {name}" for name, n in total.most_common(limit)]
    return "\n".join(lines) + "\n"


def _package(frame: str) -> str:
    """`fastapi`, `sqlalchemy`, ... or our module (`app/tasks/render.py`) for a py-spy frame `name (path:line)`."""
    path = frame.rpartition(" (")[2].partition(":")[0]
    parts = path.split("/")
    if parts[0] in ("app", "billing", "inference", "bench"):
        return "/".join(parts[:3])
    return parts[0].removesuffix(".py") or "?"


async def _drive(stack: Stack, route: str, seconds: float, workers: int) -> dict[str, Any]:
    env = stack.env(QUEUE_NAME=stack.queue("profile"))
    server = stack.start_uvicorn("api-profile", "app.api.main:app", env, workers=workers)
    db = Db(stack.database_url)
    try:
        ids = await create_tasks(server.port, stack.api_key, 50)
        await db.mark_succeeded(ids)
        if route == "sse":
            return await _sse(stack, server, db, seconds)
        spec = {
            "port": server.port, "concurrency": 32 if route != "create" else 16, "duration_s": seconds + 2,
            "warmup_s": 1.0, "headers": {"Authorization": f"Bearer {stack.api_key}"}, **ROUTES[route](ids),
        }  # fmt: skip
        RESULTS.mkdir(exist_ok=True)
        raw = RESULTS / f"profile-{route}.raw"
        load = asyncio.create_task(loadgen_http(spec))
        await asyncio.sleep(1.5)
        pids = [server.pid] if workers == 1 else _children(server.pid)
        spies = []
        for i, pid in enumerate(pids):
            out = raw if i == 0 else raw.with_name(f"profile-{route}-{i}.raw")
            spies.append(await asyncio.create_subprocess_exec(
                "py-spy", "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "250",
                "--format", "raw", "--output", str(out), "--nonblocking",
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            ))  # fmt: skip
        for spy in spies:
            await spy.wait()
        result = await load
        report = top_functions(raw)
        (RESULTS / f"profile-{route}.txt").write_text(
            f"{route}: {result['rps']:.0f} req/s, p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms\n"
            + report
        )
        return {"route": route, "rps": result["rps"], "report": str(RESULTS / f"profile-{route}.txt")}
    finally:
        await db.close()
        stack.stop(server)


async def _sse(stack: Stack, server: Any, db: Db, seconds: float) -> dict[str, Any]:
    """2,000 streams on one PENDING task (no worker serves the queue), then one progress update every 0.25 s while
    py-spy records the API: where a fan-out's time goes."""
    (task_id,) = await create_tasks(server.port, stack.api_key, 1)
    updates = list(range(1, int(seconds * 4) + 1))
    auth = {"Authorization": f"Bearer {stack.api_key}"}
    load = SseLoad(server.port, f"/openapi/v2/text-to-3d/{task_id}/stream", SSE_STREAMS, [0, *updates], auth)
    raw = RESULTS / "profile-sse.raw"
    try:
        ready = await load.start()
        attempt, _ = await db.claim(task_id)
        await load.wait_for("got", 60)
        spy = await asyncio.create_subprocess_exec(
            "py-spy", "record", "--pid", str(server.pid), "--duration", str(int(seconds)), "--rate", "250",
            "--format", "raw", "--output", str(raw), "--nonblocking",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        await asyncio.sleep(0.3)
        for value in updates:
            await db.progress(task_id, attempt, value)
            await load.wait_for("got", 30)
            await asyncio.sleep(0.25)
        await spy.wait()
        result = await load.finish()
    finally:
        await load.kill()
    delays = sorted(
        (t - 0) for value in updates for t in result.get("arrivals", {}).get(str(value), [])
    )  # arrival stamps only; the bench (`--only d`) reports commit-to-arrival delays
    (RESULTS / "profile-sse.txt").write_text(
        f"sse: {ready['connected']} streams, {len(updates)} updates, {len(delays)} events received\n"
        + top_functions(raw)
    )
    return {"route": "sse", "rps": 0.0, "report": str(RESULTS / "profile-sse.txt")}


def _children(pid: int) -> list[int]:
    import psutil

    return [child.pid for child in psutil.Process(pid).children()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.splitlines()[0])
    parser.add_argument("route", choices=sorted(ROUTES))
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn --workers (profiles each worker)")
    args = parser.parse_args(argv)
    if shutil.which("py-spy") is None:
        print("py-spy is not on PATH (pip install py-spy)", file=sys.stderr)
        return 2
    stack = Stack()
    try:
        stack.start()
        result = asyncio.run(_drive(stack, args.route, args.seconds, args.workers))
    finally:
        stack.close()
    print(json.dumps(result))
    print(Path(result["report"]).read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
