"""/metrics and structured logs: counters that move with real requests and a real task, Redis-read queue gauges,
the token and the off switch, several processes behind one scrape, and JSON lines with ids and no secrets."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from arq.constants import job_key_prefix
from arq.jobs import deserialize_job, serialize_job
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from starlette.routing import Mount, Route

from app.api.main import create_app
from app.api.observability import UNMATCHED, route_of
from app.core import logs, metrics
from app.core.config import Settings
from app.core.queue import queue_for_pool
from tests.conftest import ROOT, Api, Caller, _free_socket, serve

URL = "/openapi/v2/text-to-3d"
TYPE = "text-to-3d-preview"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample of an exposition, read by prometheus-client's own parser (not by our code)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def scrape(client: httpx.AsyncClient, **headers: str) -> Samples:
    response = await client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


async def create(api: Api, caller: Caller) -> str:
    body = {"mode": "preview", "prompt": "a wooden chair", "seed": 3, "target_formats": ["glb"]}
    response = await api.client.post(URL, json=body, headers=caller.headers)
    assert response.status_code == 202, response.text
    return str(response.json()["result"])


async def wait_succeeded(api: Api, caller: Caller, task_id: str) -> dict[str, Any]:
    task: dict[str, Any] = {}

    async def done() -> bool:
        nonlocal task
        task = (await api.client.get(f"{URL}/{task_id}", headers=caller.headers)).json()
        return task["status"] in ("SUCCEEDED", "FAILED")

    await until(done)
    assert task["status"] == "SUCCEEDED", task["task_error"]
    return task


@pytest.mark.asyncio
class TestMetrics:
    async def test_counters_move_with_requests_and_a_task_run(self, api: Api, caller: Caller, worker) -> None:
        before = await scrape(api.client)
        task_id = await create(api, caller)
        await wait_succeeded(api, caller, task_id)
        assert (await api.client.get(f"/no/such/{task_id}")).status_code == 404
        after: Samples = {}

        async def job_ended() -> bool:  # SUCCEEDED shows before the job ends (it indexes the model afterwards)
            nonlocal after
            after = await scrape(api.client)
            return value(after, "meshfoundry_jobs_running", pool="default") == 0 and (
                value(after, "meshfoundry_queue_jobs", pool="default") == 0
            )

        await until(job_ended)

        def delta(name: str, **labels: str) -> float:
            return value(after, name, **labels) - value(before, name, **labels)

        assert delta("meshfoundry_http_requests_total", method="POST", route=URL, status="202") == 1
        assert delta("meshfoundry_http_request_duration_seconds_count", method="POST", route=URL) == 1
        assert delta("meshfoundry_http_requests_total", method="GET", route=URL + "/{task_id}", status="200") >= 1
        assert delta("meshfoundry_http_requests_total", method="GET", route="unmatched", status="404") == 1
        routes = {dict(labels).get("route") for _, labels in after} - {None}
        assert "/metrics" in routes and not any(task_id in route for route in routes)  # templates, never raw paths
        assert delta("meshfoundry_tasks_created_total", type=TYPE) == 1
        assert delta("meshfoundry_tasks_finished_total", type=TYPE, status="SUCCEEDED") == 1
        for stage in ("queue", "step", "runner", "deliverables", "publish", "total"):
            assert delta("meshfoundry_job_stage_duration_seconds_count", type=TYPE, stage=stage) == 1, stage
        assert value(after, "meshfoundry_worker_up", pool="default") == 1
        assert 0 <= value(after, "meshfoundry_worker_heartbeat_age_seconds", pool="default") <= 6

    async def test_a_failed_task_is_counted_failed(self, api: Api, caller: Caller, worker) -> None:
        before = await scrape(api.client)
        url, kind = "/openapi/v1/image-to-3d", "image-to-3d"
        # The worker's guarded fetch never resolves this name: the task fails (and is refunded).
        response = await api.client.post(url, json={"image_url": "https://image.invalid/i.png"}, headers=caller.headers)
        assert response.status_code == 202, response.text
        task: dict[str, Any] = {}

        async def finished() -> bool:
            nonlocal task
            task = (await api.client.get(f"{url}/{response.json()['result']}", headers=caller.headers)).json()
            return task["status"] in ("SUCCEEDED", "FAILED")

        await until(finished)
        assert task["status"] == "FAILED"
        after = await scrape(api.client)
        name = "meshfoundry_tasks_finished_total"
        assert value(after, name, type=kind, status="FAILED") - value(before, name, type=kind, status="FAILED") == 1
        assert value(after, name, type=kind, status="SUCCEEDED") == value(before, name, type=kind, status="SUCCEEDED")
        # A failed step is not a duration.
        stage = "meshfoundry_job_stage_duration_seconds_count"
        assert value(after, stage, type=kind, stage="step") == value(before, stage, type=kind, stage="step")

    async def test_queue_depth_oldest_job_and_heartbeat_come_from_redis(
        self, api: Api, caller: Caller, settings: Settings
    ) -> None:
        first, _ = await create(api, caller), await create(api, caller)
        redis = api.app.state.mf.redis  # type: ignore[attr-defined]
        queue = queue_for_pool(settings.queue_name, "default")
        # The first job as arq would have written it two minutes ago.
        job = deserialize_job(await redis.get(job_key_prefix + first))
        old = int((job.enqueue_time - timedelta(minutes=2)).timestamp() * 1000)
        await redis.set(job_key_prefix + first, serialize_job(job.function, job.args, job.kwargs, job.job_try, old))
        samples = await scrape(api.client)
        assert value(samples, "meshfoundry_queue_jobs", pool="default") == 2
        assert 120 <= value(samples, "meshfoundry_queue_oldest_job_age_seconds", pool="default") < 3600
        assert value(samples, "meshfoundry_worker_up", pool="default") == 0
        assert ("meshfoundry_worker_heartbeat_age_seconds", (("pool", "default"),)) not in samples
        await redis.psetex(queue + ":health-check", 6000, b"Jan-01 00:00:00 j_complete=0")  # arq's key and TTL
        samples = await scrape(api.client)
        assert value(samples, "meshfoundry_worker_up", pool="default") == 1
        assert 0 <= value(samples, "meshfoundry_worker_heartbeat_age_seconds", pool="default") <= 6

    async def test_a_token_is_required_when_set(self, settings: Settings) -> None:
        token = "metrics-token-" + "x" * 16
        app = create_app(settings.model_copy(update={"metrics_token": SecretStr(token)}))
        async with serve(app) as base_url, httpx.AsyncClient(base_url=base_url) as client:
            for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": token}):
                refused = await client.get("/metrics", headers=headers)
                assert refused.status_code == 401, headers
                assert refused.json() == {"message": "Invalid metrics token"}
            samples = await scrape(client, Authorization=f"Bearer {token}")
            assert value(samples, "meshfoundry_http_requests_total", method="GET", route="/metrics", status="401") >= 3

    async def test_off_is_a_404_and_never_in_the_schema(self, settings: Settings, api: Api) -> None:
        assert "/metrics" not in (await api.client.get("/openapi.json")).json()["paths"]
        app = create_app(settings.model_copy(update={"metrics_enabled": False}))
        async with serve(app) as base_url, httpx.AsyncClient(base_url=base_url) as client:
            response = await client.get("/metrics")
            assert response.status_code == 404
            assert response.json() == {"message": "Not Found"}


class TestRouteLabel:
    def test_templates_mounts_and_the_rest(self) -> None:
        route = Route("/openapi/v1/image-to-3d/{task_id}", endpoint=lambda request: None)
        assert route_of({"route": route}) == "/openapi/v1/image-to-3d/{task_id}"
        # FastAPI sets no `route` for a mount: its matched prefix is the label.
        mount = Mount("/playground/static", app=lambda scope, receive, send: None)
        _, child = mount.matches({"type": "http", "path": "/playground/static/app.js", "root_path": ""})
        assert route_of(child) == "/playground/static/{path}"
        assert route_of({"path": "/nothing/here"}) == UNMATCHED


class TestMultiprocessDir:
    def test_a_supervisor_gets_a_clean_directory(self, settings: Settings) -> None:
        directory = settings.home / "metrics"
        directory.mkdir(parents=True)
        (directory / "counter_4242.db").write_bytes(b"from an earlier run")
        env = metrics.prepare_multiprocess_dir(settings)
        assert env == {"PROMETHEUS_MULTIPROC_DIR": str(directory.resolve())}
        assert list(directory.iterdir()) == []
        assert metrics.prepare_multiprocess_dir(settings.model_copy(update={"metrics_enabled": False})) == {}


WRITER = """
import os
from app.core import metrics
print(os.getpid())
metrics.task_created("remesh")
metrics.observe_stage("remesh", "runner", 1.5)
metrics.JOBS_RUNNING.labels("default").inc()  # a job still running when this process dies
"""


@pytest.mark.asyncio
@pytest.mark.slow
class TestMultiprocess:
    async def test_two_writers_one_scrape_and_json_logs(self, settings: Settings, tmp_path: Path) -> None:
        directory = tmp_path / "prometheus"
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
        writers = []
        for _ in range(2):
            done = await asyncio.to_thread(
                subprocess.run, [sys.executable, "-c", WRITER], env=env, cwd=ROOT, check=True, capture_output=True
            )
            writers.append(int(done.stdout))
        assert {p.name for p in directory.glob("gauge_livesum_*.db")} == {f"gauge_livesum_{w}.db" for w in writers}
        sock = _free_socket()
        port = sock.getsockname()[1]
        sock.close()
        assert settings.secret_key is not None and settings.database_url and settings.redis_url
        api_env = {
            **env, "APP_ENV": "testing", "DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
            "MESHFOUNDRY_HOME": str(settings.home), "MESHFOUNDRY_SECRET_KEY": settings.secret_key.get_secret_value(),
            "QUEUE_NAME": settings.queue_name, "LOG_FORMAT": "json",
        }  # fmt: skip
        args = [sys.executable, "-m", "uvicorn", "app.api.main:app", "--host", "127.0.0.1", "--port", str(port)]
        proc = await asyncio.create_subprocess_exec(
            *args, env=api_env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:

                async def ready() -> bool:
                    assert proc.returncode is None, "the API process exited"
                    try:
                        return (await client.get("/metrics")).status_code == 200
                    except httpx.TransportError:
                        return False

                await until(ready)
                samples = await scrape(client, **{"x-request-id": "scrape-1"})
                secret = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJzZWNyZXQifQ.c2lnbmF0dXJlLXNlY3JldA"
                await client.get(f"{URL}/{'0' * 32}/stream?token={secret}", headers={"x-request-id": "stream-1"})
        finally:
            proc.terminate()
            output, _ = await asyncio.wait_for(proc.communicate(), 30)
        assert value(samples, "meshfoundry_tasks_created_total", type="remesh") == 2  # both writers
        assert value(samples, "meshfoundry_job_stage_duration_seconds_count", type="remesh", stage="runner") == 2
        assert value(samples, "meshfoundry_job_stage_duration_seconds_sum", type="remesh", stage="runner") == 3.0
        # The writers died without a supervisor: the API's start dropped their live gauges, kept their counters.
        assert value(samples, "meshfoundry_jobs_running", pool="default") == 0
        for pid in writers:
            assert not (directory / f"gauge_livesum_{pid}.db").exists() and (directory / f"counter_{pid}.db").exists()
        text = output.decode()
        assert secret not in text
        records = _json_lines(text)
        access = {r["request_id"]: r for r in records if r["logger"] == "meshfoundry.access"}
        assert access["scrape-1"]["route"] == "/metrics" and access["scrape-1"]["status"] == 200
        stream = access["stream-1"]
        assert stream["route"] == URL + "/{task_id}/stream" and "token=[redacted]" in stream["path"]
        assert stream["task_id"] == "0" * 32


def _json_lines(text: str) -> list[dict[str, Any]]:
    """Our records; only uvicorn's first lines, before the app configured logging, may be plain text."""
    lines = [line for line in text.splitlines() if line.strip()]
    first = next(i for i, line in enumerate(lines) if line.startswith("{"))
    records = [json.loads(line) for line in lines[first:]]  # every later line is one JSON object
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    return records


class _Lines(logging.Handler):
    """Every record as the service writes it in JSON mode."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.setFormatter(logs.JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@contextmanager
def json_logs() -> Iterator[list[str]]:
    handler, root = _Lines(), logging.getLogger()
    level = root.level
    root.setLevel(logging.INFO)
    root.addHandler(handler)
    try:
        yield handler.lines
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@pytest.mark.asyncio
class TestLogs:
    async def test_lines_carry_the_ids_and_no_secret(
        self, api: Api, caller: Caller, worker, settings: Settings
    ) -> None:
        wrong_key = "msy_" + "W" * 40
        with json_logs() as lines:
            created = await api.client.post(
                URL, json={"mode": "preview", "prompt": "a chair", "seed": 1, "target_formats": ["glb"]},
                headers={**caller.headers, "x-request-id": "create-1"},
            )  # fmt: skip
            task_id = created.json()["result"]
            task = await wait_succeeded(api, caller, task_id)
            read = await api.client.get(f"{URL}/{task_id}", headers=caller.headers)
            issued = await api.client.post(
                "/openapi/v1/stream-tokens", json={"task_id": task_id}, headers=caller.headers
            )
            token = issued.json()["token"]
            stream = await api.client.get(f"{URL}/{task_id}/stream?token={token}", headers={"x-request-id": "stream-1"})
            assert stream.status_code == 200 and task_id in stream.text
            signed = task["model_urls"]["glb"]
            assert (await api.client.get(signed, headers={"x-request-id": "asset-1"})).status_code == 200
            refused = await api.client.get(
                URL, headers={"Authorization": f"Bearer {wrong_key}", "x-request-id": "bad-1"}
            )
            assert refused.status_code == 401
            leaked = await api.client.get(f"{URL}?api_key={caller.key}", headers={"x-request-id": "query-1"})
            assert leaked.status_code == 401
            logging.getLogger("app.example").warning(
                "connecting to %s as %s", "postgresql://mf:hunter2-pass@db/mf", f"Authorization: Bearer {caller.key}"
            )

            async def worker_done() -> bool:
                return any(json.loads(line).get("logger") == "inference.jobs.observe" for line in lines)

            await until(worker_done)
        text = "\n".join(lines)
        signature = signed.split("Signature=")[1]
        assert settings.secret_key is not None
        for secret in (caller.key, wrong_key, token, signature, "hunter2-pass", settings.secret_key.get_secret_value()):
            assert secret not in text
        records = [json.loads(line) for line in lines]
        access = {r["request_id"]: r for r in records if r["logger"] == "meshfoundry.access"}
        account = str(caller.account_id)
        create = access["create-1"]
        assert (create["method"], create["route"], create["status"]) == ("POST", URL, 202)
        assert create["account_id"] == account and create["task_id"] == task_id and create["duration_ms"] >= 0
        assert access[read.headers["x-request-id"]]["route"] == URL + "/{task_id}"  # a generated id, as sent back
        assert access["stream-1"]["account_id"] == account and "token=[redacted]" in access["stream-1"]["path"]
        assert "Signature=[redacted]" in access["asset-1"]["path"]
        assert access["bad-1"]["status"] == 401 and "account_id" not in access["bad-1"]
        assert access["query-1"]["path"].endswith("api_key=[redacted]")
        job = next(r for r in records if r["logger"] == "inference.jobs.observe")
        assert job["task_id"] == task_id and job["account_id"] == account and "request_id" not in job
        example = next(r for r in records if r["logger"] == "app.example")
        assert (
            example["message"] == "connecting to postgresql://mf:[redacted]@db/mf as Authorization: Bearer [redacted]"
        )

    async def test_an_unexpected_error_is_logged_with_the_request_id(self, settings: Settings, caller: Caller) -> None:
        app = create_app(settings)

        async def boom() -> None:
            raise RuntimeError(f"failed while holding {caller.key}")

        app.add_api_route("/boom", boom)
        with json_logs() as lines:
            async with serve(app) as base_url, httpx.AsyncClient(base_url=base_url) as client:
                response = await client.get("/boom", headers={**caller.headers, "x-request-id": "boom-1"})
        assert response.status_code == 500 and response.json() == {"message": "Internal server error"}
        assert caller.key not in "\n".join(lines)
        records = [json.loads(line) for line in lines]
        error = next(r for r in records if r["level"] == "ERROR")
        assert error["request_id"] == "boom-1" and error["logger"] == "app.api.errors"
        assert "RuntimeError: failed while holding msy_[redacted]" in error["exc_info"]
        access = next(r for r in records if r["logger"] == "meshfoundry.access")
        assert (access["route"], access["status"]) == ("/boom", 500)


class TestFormatting:
    def test_text_lines_carry_the_ids_and_are_redacted(self) -> None:
        record = logging.LogRecord(
            "app.example", logging.INFO, __file__, 1, "key %s, queue %s", ("msy_" + "a" * 40, "redis://:pw-1@h/0"), None
        )
        bound = logs.bind(logs.LogContext(request_id="r1", task_id="t1", account_id="a1"))
        try:
            line = logs.TextFormatter().format(record)
        finally:
            logs.unbind(bound)
        assert line.endswith("app.example key msy_[redacted], queue redis://:[redacted]@h/0 request_id=r1 task_id=t1 "
                             "account_id=a1")  # fmt: skip

    @pytest.mark.parametrize(
        ("text", "leak"),
        [
            ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "MfKQ9r8"),
            ("https://b.s3.example/k?X-Amz-Signature=abc123def&X-Amz-Credential=AKIAXYZ%2F1", "abc123def"),
            ("https://b.s3.example/k?X-Amz-Credential=AKIAXYZ%2F1&X-Amz-Date=1", "AKIAXYZ"),
            ('{"secret": "s3cr3t-value", "page": 1}', "s3cr3t-value"),
            ("Authorization: Basic dXNlcjpwYXNz", "dXNlcjpwYXNz"),
            ("MESHFOUNDRY_SECRET_KEY=k3y-value ADMIN_TOKEN=adm1n-value", "-value"),
            ("mysql://root:r00t-pw@localhost/x", "r00t-pw"),
        ],
    )
    def test_redaction(self, text: str, leak: str) -> None:
        assert leak not in logs.redact(text)
