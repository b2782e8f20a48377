"""Load generator, run as its own process: `python -m bench.loadgen http|sse '<json spec>'`.

A raw asyncio HTTP/1.1 keep-alive client (hand-written request/response framing, Content-Length and chunked), so
that the client spends as little CPU as possible next to the server on a small machine.

* `http`: `concurrency` connections send requests back to back for `warmup_s + duration_s`; only responses that
  complete inside the measured window count; with `header_sets`, connection i adds set i (modulo their number) to
  its headers. Prints one JSON object.
* `sse`: opens `streams` SSE connections, prints `{"event": "ready", ...}` once every stream has its first event,
  then `{"event": "got", "progress": p}` each time every stream has seen an event with `"progress":p`; on `done` (a
  line on stdin) prints `{"event": "result", "arrivals": {p: [monotonic seconds, ...]}, ...}` and exits.

Times are `time.monotonic()` (CLOCK_MONOTONIC, shared by all processes on the machine), so the orchestrator can
subtract its own timestamps from the arrival times reported here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import resource
import sys
import time
from typing import Any

HOST = "127.0.0.1"
_PROGRESS = re.compile(rb'"progress":(\d+)')
_STATUS = re.compile(rb'"status":"([A-Z_]+)"')


def raise_nofile(want: int) -> int:
    """Raise the soft open-files limit towards `want` (never above the hard limit); returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


def build_request(method: str, path: str, headers: dict[str, str], body: bytes | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[bytes, bytes], bytes]:
    """One HTTP/1.1 response: status, lower-cased headers, body (Content-Length or chunked)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
    if b"content-length" in headers:
        body = await reader.readexactly(int(headers[b"content-length"]))
    elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        body = b"".join(parts)
    else:
        body = b""
    return status, headers, body


class Client:
    """One keep-alive connection for simple sequential use (seeding, polling) from the orchestrator."""

    def __init__(self, port: int, headers: dict[str, str] | None = None) -> None:
        self.port = port
        self.headers = headers or {}
        self._conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        raw = None if body is None else json.dumps(body).encode()
        headers = dict(self.headers)
        if raw is not None:
            headers["Content-Type"] = "application/json"
        for attempt in range(2):
            if self._conn is None:
                self._conn = await asyncio.open_connection(HOST, self.port)
            reader, writer = self._conn
            try:
                writer.write(build_request(method, path, headers, raw))
                status, resp_headers, data = await read_response(reader)
            except (ConnectionError, asyncio.IncompleteReadError):
                await self.close()
                if attempt:
                    raise
                continue
            if resp_headers.get(b"connection", b"").lower() == b"close":
                await self.close()
            return status, (json.loads(data) if data else None)
        raise AssertionError("unreachable")

    async def close(self) -> None:
        if self._conn is not None:
            writer = self._conn[1]
            self._conn = None
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


# --- http: fixed-duration closed-loop load ------------------------------------------------------------------


async def run_http(spec: dict[str, Any]) -> dict[str, Any]:
    port, concurrency = spec["port"], spec["concurrency"]
    headers = dict(spec.get("headers", {}))
    body = spec.get("body")
    raw_body = None if body is None else json.dumps(body).encode()
    if raw_body is not None:
        headers["Content-Type"] = "application/json"
    # `header_sets`: connection i sends with the headers of set i modulo their number (e.g. one account each).
    header_sets = [{**headers, **extra} for extra in spec.get("header_sets", [{}])]
    request_sets = [
        [build_request(spec.get("method", "GET"), p, h, raw_body) for p in spec["paths"]] for h in header_sets
    ]
    warmup, duration = spec.get("warmup_s", 1.0), spec["duration_s"]
    start = time.monotonic()
    window = (start + warmup, start + warmup + duration)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = [0]
    cpu0 = time.process_time()

    async def connection(index: int) -> None:
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        requests = request_sets[index % len(request_sets)]
        i = index
        while True:
            now = time.monotonic()
            if now >= window[1]:
                break
            if conn is None:
                try:
                    conn = await asyncio.open_connection(HOST, port)
                except OSError:
                    errors[0] += 1
                    await asyncio.sleep(0.05)
                    continue
            reader, writer = conn
            req = requests[i % len(requests)]
            i += 1
            t0 = time.monotonic()
            try:
                writer.write(req)
                status, resp_headers, _ = await read_response(reader)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
                errors[0] += 1
                writer.close()
                conn = None
                continue
            t1 = time.monotonic()
            if window[0] <= t0 and t1 <= window[1]:
                latencies.append(t1 - t0)
                statuses[status] = statuses.get(status, 0) + 1
            if resp_headers.get(b"connection", b"").lower() == b"close":
                writer.close()
                conn = None
        if conn is not None:
            conn[1].close()

    await asyncio.gather(*(connection(i) for i in range(concurrency)))
    latencies.sort()
    n = len(latencies)

    def pct(q: float) -> float:
        return latencies[min(n - 1, int(q * n))] * 1000 if n else float("nan")

    ok = sum(c for s, c in statuses.items() if 200 <= s < 300)
    return {
        "requests": n,
        "ok": ok,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "errors": errors[0],
        "rps": n / duration,
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "max_ms": latencies[-1] * 1000 if n else float("nan"),
        "concurrency": concurrency,
        "duration_s": duration,
        "client_cpu_s": time.process_time() - cpu0,
    }


# --- sse: many streams, arrival time of each progress value ---------------------------------------------------


class Stream:
    """One SSE connection: de-chunks the body, splits `data:` lines, records when each progress value arrives."""

    __slots__ = ("arrivals", "first", "body", "raw", "chunk_left", "headers_done", "closed")

    def __init__(self) -> None:
        self.arrivals: dict[int, float] = {}
        self.first: float | None = None
        self.body = b""  # de-chunked bytes not yet split into lines
        self.raw = b""  # bytes not yet de-chunked
        self.chunk_left = 0
        self.headers_done = False
        self.closed = False

    def feed(self, data: bytes, now: float, targets: set[int], on_progress: Any) -> None:
        self.raw += data
        if not self.headers_done:
            end = self.raw.find(b"\r\n\r\n")
            if end < 0:
                return
            status = int(self.raw.split(b" ", 2)[1])
            if status != 200:
                raise ConnectionError(f"HTTP {status}")
            self.raw = self.raw[end + 4 :]
            self.headers_done = True
        # Chunked transfer encoding (sse-starlette streams without Content-Length).
        while self.raw:
            if self.chunk_left == 0:
                eol = self.raw.find(b"\r\n")
                if eol < 0:
                    break
                size_text = self.raw[:eol].split(b";")[0].strip()
                if not size_text:  # the CRLF after a chunk's data
                    self.raw = self.raw[eol + 2 :]
                    continue
                size = int(size_text, 16)
                self.raw = self.raw[eol + 2 :]
                if size == 0:
                    self.closed = True
                    break
                self.chunk_left = size
            take = self.raw[: self.chunk_left]
            self.raw = self.raw[len(take) :]
            self.chunk_left -= len(take)
            self.body += take
        while True:
            eol = self.body.find(b"\n")
            if eol < 0:
                break
            line, self.body = self.body[:eol], self.body[eol + 1 :]
            if not line.startswith(b"data:"):
                continue
            if self.first is None:
                self.first = now
            match = _PROGRESS.search(line)
            if match is None:
                continue
            progress = int(match.group(1))
            if progress in targets and progress not in self.arrivals:
                status = _STATUS.search(line)
                if status is not None and status.group(1) == b"IN_PROGRESS":
                    self.arrivals[progress] = now
                    on_progress(progress)


def emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def run_sse(spec: dict[str, Any]) -> None:
    port, count = spec["port"], spec["streams"]
    targets = set(spec["progress"])
    request = build_request("GET", spec["path"], {**spec.get("headers", {}), "Accept": "text/event-stream"})
    streams = [Stream() for _ in range(count)]
    writers: list[asyncio.StreamWriter] = []
    seen: dict[int, int] = dict.fromkeys(targets, 0)
    failed = [0]
    first_events = asyncio.Event()
    first_count = [0]
    connecting = asyncio.Semaphore(spec.get("connect_concurrency", 100))

    def on_progress(progress: int) -> None:
        seen[progress] += 1
        if seen[progress] == count - failed[0]:
            emit({"event": "got", "progress": progress, "count": seen[progress]})

    def first_done() -> None:
        first_count[0] += 1
        if first_count[0] + failed[0] >= count:
            first_events.set()

    async def one(stream: Stream) -> None:
        await connecting.acquire()
        released = False
        try:
            reader, writer = await asyncio.open_connection(HOST, port)
            writers.append(writer)
            writer.write(request)
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                had_first = stream.first is not None
                stream.feed(data, time.monotonic(), targets, on_progress)
                if not had_first and stream.first is not None:
                    connecting.release()
                    released = True
                    first_done()
                if stream.closed:
                    break
        except (OSError, ValueError, ConnectionError) as exc:
            if stream.first is None:
                failed[0] += 1
                if failed[0] <= 3:
                    print(f"sse stream failed: {exc!r}", file=sys.stderr)
                if first_count[0] + failed[0] >= count:
                    first_events.set()
        finally:
            if not released:
                connecting.release()

    t0 = time.monotonic()
    tasks = [asyncio.create_task(one(s)) for s in streams]
    try:
        await asyncio.wait_for(first_events.wait(), spec.get("connect_timeout_s", 60))
    except TimeoutError:
        pass
    emit({"event": "ready", "connected": first_count[0], "failed": failed[0], "connect_s": time.monotonic() - t0})
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    while True:
        line = await stdin.readline()
        if not line or line.strip() == b"done":
            break
    arrivals = {str(p): [s.arrivals[p] for s in streams if p in s.arrivals] for p in sorted(targets)}
    emit(
        {
            "event": "result",
            "arrivals": arrivals,
            "connected": first_count[0],
            "failed": failed[0],
            "client_cpu_s": time.process_time(),
        }
    )
    for writer in writers:
        writer.close()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def main(argv: list[str]) -> int:
    mode, spec = argv[0], json.loads(argv[1])
    raise_nofile(spec.get("streams", 0) + spec.get("concurrency", 0) + 256)
    try:
        from uvloop import run
    except ImportError:
        run = asyncio.run
    if mode == "http":
        emit(run(run_http(spec)))
    elif mode == "sse":
        run(run_sse(spec))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
