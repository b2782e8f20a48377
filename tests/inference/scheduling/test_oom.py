"""A CUDA out-of-memory error inside a job: told apart, idle models unloaded, retried once, then FAILED and refunded."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import torch

from app.tasks.models import Task
from billing.models import Account
from inference.jobs.generate_model import generate_model
from inference.runners.procedural import ProceduralRunner
from inference.runtime import OutOfGpuMemory, RunnerSet, RunnerSpec
from inference.scheduling.oom import is_cuda_oom
from tests.conftest import Api, Caller
from tests.inference.jobs import job_context


def cuda_oom() -> torch.OutOfMemoryError:
    return torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 23.65 GiB total)")


class TestIsCudaOom:
    def test_torch_out_of_memory_error(self) -> None:
        assert is_cuda_oom(cuda_oom())

    def test_allocation_failures_of_cuda_libraries(self) -> None:
        assert is_cuda_oom(RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"))

    def test_an_oom_wrapped_by_a_library(self) -> None:
        def step() -> None:
            try:
                raise cuda_oom()
            except RuntimeError as inner:
                raise ValueError("pipeline step failed") from inner

        with pytest.raises(ValueError, match="pipeline step failed") as caught:
            step()
        assert is_cuda_oom(caught.value)

    @pytest.mark.parametrize(
        "exc", [MemoryError(), ValueError("CUDA out of memory"), RuntimeError("shape mismatch"), OSError("disk full")]
    )
    def test_other_failures_are_not(self, exc: BaseException) -> None:
        assert not is_cuda_oom(exc)


class Flaky:
    """A GPU-model stand-in: raises `errors` in turn, then runs the procedural runner; counts its unloads."""

    def __init__(self, errors: list[BaseException], unloaded: list[str], name: str = "model") -> None:
        self.errors, self.unloaded, self.name = list(errors), unloaded, name
        self.inner = ProceduralRunner()

    def run(self, inputs: Any, params: Any, out_dir: Path, progress: Any) -> Any:
        progress(0.5)
        if self.errors:
            raise self.errors.pop(0)
        return self.inner.run(inputs, params, out_dir, progress)

    def unload(self) -> None:
        self.unloaded.append(self.name)


PARAMS = {"mode": "preview", "prompt": "a cup", "seed": 1}


class TestRunnerSetRetry:
    def runners(self, errors: list[BaseException], unloaded: list[str]) -> RunnerSet:
        model = Flaky(errors, unloaded, "model")
        idle = Flaky([], unloaded, "idle")
        runners = RunnerSet([RunnerSpec("model", lambda: model, 6), RunnerSpec("idle", lambda: idle, 4)], 10)
        runners.cache.get("idle", lambda: idle, 4)  # resident, not in use
        return runners

    def test_one_oom_unloads_idle_models_and_retries(self, tmp_path: Path) -> None:
        unloaded: list[str] = []
        runners = self.runners([cuda_oom()], unloaded)
        seen: list[float] = []
        artifacts = runners.run("model", {}, PARAMS, tmp_path, seen.append)
        assert artifacts.mesh is not None and artifacts.mesh.exists()
        assert unloaded == ["idle"]  # the other idle model went; the failing one stayed resident for the retry
        assert "model" in runners.cache and "idle" not in runners.cache
        assert runners.counters == {"oom_retries": 1}
        assert seen == sorted(seen)  # the retry starts over, but the reported progress never goes back

    def test_a_second_oom_gives_up(self, tmp_path: Path) -> None:
        unloaded: list[str] = []
        runners = self.runners([cuda_oom(), cuda_oom()], unloaded)
        with pytest.raises(OutOfGpuMemory):
            runners.run("model", {}, PARAMS, tmp_path, lambda _: None)
        assert runners.counters == {"oom_retries": 1, "oom_failures": 1}
        assert sorted(unloaded) == ["idle", "model"]  # nothing stays behind holding memory

    def test_other_errors_are_not_retried(self, tmp_path: Path) -> None:
        unloaded: list[str] = []
        runners = self.runners([ValueError("bad input"), cuda_oom()], unloaded)
        with pytest.raises(ValueError, match="bad input"):
            runners.run("model", {}, PARAMS, tmp_path, lambda _: None)
        assert runners.counters == {} and unloaded == []


URL = "/openapi/v2/text-to-3d"


async def create(api: Api, caller: Caller) -> str:
    answer = await api.client.post(URL, json={"mode": "preview", "prompt": "a cup", "seed": 1}, headers=caller.headers)
    assert answer.status_code == 202, answer.text
    return answer.json()["result"]


@pytest.mark.asyncio
@pytest.mark.parametrize(("errors", "outcome"), [(1, "succeeded"), (2, "failed")])
async def test_an_injected_oom_in_a_job(api: Api, caller: Caller, settings, db, errors: int, outcome: str) -> None:  # type: ignore[no-untyped-def]
    """One OOM: the job retries and the task SUCCEEDS on its first attempt. Two: FAILED, said so, refunded."""
    task_id = await create(api, caller)
    unloaded: list[str] = []
    model = Flaky([cuda_oom() for _ in range(errors)], unloaded)
    job = job_context(settings, db)
    job.runners = RunnerSet([RunnerSpec("procedural", lambda: model, 8)], vram_budget_gb=20)

    assert await generate_model({"job": job}, task_id) == outcome

    task = (await api.client.get(f"{URL}/{task_id}", headers=caller.headers)).json()
    async with db() as session:
        row = await session.get(Task, uuid.UUID(task_id))
        balance = (await session.get(Account, caller.account_id)).balance
    assert row.attempts == 1
    if outcome == "succeeded":
        assert task["status"] == "SUCCEEDED" and balance == 980
    else:
        assert task["status"] == "FAILED"
        assert task["task_error"]["message"] == (
            "The GPU ran out of memory for this task, again after freeing memory and retrying once."
        )
        assert task["consumed_credits"] == 0 and balance == 1000
