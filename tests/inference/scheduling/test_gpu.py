"""A worker per GPU: MESHFOUNDRY_GPU / `meshfoundry worker --gpu N`, and the VRAM budget (setting or measured)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import pytest
import torch
from arq.connections import create_pool

from app.cli import build_parser, cmd_worker
from app.core.queue import redis_settings
from app.core.workers import live_workers
from inference import gpu
from inference.scheduling.oom import is_cuda_oom


class TestGpuFromEnv:
    def test_unset_is_a_cpu_worker(self) -> None:
        assert gpu.gpu_from_env({}) is None

    def test_the_index_pins_the_visible_device(self) -> None:
        env = {"MESHFOUNDRY_GPU": "1"}
        assert gpu.gpu_from_env(env) == 1
        assert env["CUDA_VISIBLE_DEVICES"] == "1"

    def test_an_explicit_visible_device_list_is_kept(self) -> None:
        env = {"MESHFOUNDRY_GPU": "1", "CUDA_VISIBLE_DEVICES": "GPU-5e1c"}
        assert gpu.gpu_from_env(env) == 1 and env["CUDA_VISIBLE_DEVICES"] == "GPU-5e1c"

    def test_garbage_is_refused(self) -> None:
        with pytest.raises(ValueError, match="GPU index"):
            gpu.gpu_from_env({"MESHFOUNDRY_GPU": "first"})


class TestBudget:
    def test_the_setting_wins(self) -> None:
        assert gpu.resolve(14.0, 1.0, 0) == gpu.GpuInfo(0, 14.0)

    def test_a_cpu_worker_without_a_setting_assumes_the_old_default(self) -> None:
        assert gpu.resolve(None, 1.0, None) == gpu.GpuInfo(None, gpu.DEFAULT_BUDGET_GB)

    @pytest.mark.skipif(torch.cuda.is_available(), reason="checks the fallback where CUDA is absent")
    def test_a_gpu_worker_without_cuda_falls_back_with_a_warning(self, caplog: pytest.LogCaptureFixture) -> None:
        assert gpu.resolve(None, 1.0, 0) == gpu.GpuInfo(0, gpu.DEFAULT_BUDGET_GB)
        assert "no CUDA device is visible" in caplog.text


def test_worker_gpu_flag_binds_the_worker_to_that_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MESHFOUNDRY_GPU", "CUDA_VISIBLE_DEVICES", "MESHFOUNDRY_POOL"):
        monkeypatch.setenv(name, "")  # recorded, so what cmd_worker sets is undone after the test
        monkeypatch.delenv(name)
    started: list[list[str]] = []
    monkeypatch.setattr(os, "execv", lambda path, argv: started.append(argv))  # the exec, not our code, is faked
    cmd_worker(build_parser().parse_args(["worker", "--gpu", "3"]))
    assert started[0][1:] == ["-m", "inference.worker"]
    assert (os.environ["MESHFOUNDRY_GPU"], os.environ["CUDA_VISIBLE_DEVICES"], os.environ["MESHFOUNDRY_POOL"]) == (
        "3",
        "3",
        "gpu",
    )


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
class TestOnCuda:
    def test_the_budget_is_the_free_memory_minus_the_margin(self) -> None:
        free, total = (x / gpu.GIB for x in torch.cuda.mem_get_info(0))
        info = gpu.resolve(None, 1.0, 0)
        assert info.device and info.total_gb == pytest.approx(total, abs=0.01)
        assert 0 < info.budget_gb <= free - 1.0 + 0.01

    def test_a_real_cuda_out_of_memory_error_is_recognised(self) -> None:
        free, _ = torch.cuda.mem_get_info(0)
        with pytest.raises(RuntimeError) as caught:
            torch.empty(int(free * 4), dtype=torch.uint8, device="cuda")  # four times what is free
        assert is_cuda_oom(caught.value)
        torch.cuda.empty_cache()


def start_gpu_worker(settings) -> subprocess.Popen[bytes]:  # type: ignore[no-untyped-def]
    """`python -m inference.worker` with MESHFOUNDRY_GPU=0, as `meshfoundry up --gpus 0` starts it."""
    env = {**os.environ, "DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
           "MESHFOUNDRY_HOME": str(settings.home), "MESHFOUNDRY_SECRET_KEY": settings.secret().decode(),
           "QUEUE_NAME": settings.queue_name, "MESHFOUNDRY_GPU": "0", "VRAM_BUDGET_GB": "22.5",
           "SEARCH_INDEX_GENERATED": "false", "LOG_LEVEL": "WARNING"}  # fmt: skip
    env.pop("MESHFOUNDRY_POOL", None)
    return subprocess.Popen([sys.executable, "-m", "inference.worker"], env=env)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(timeout=60)


@pytest.mark.asyncio
@pytest.mark.slow
async def test_a_worker_started_for_a_gpu_serves_the_gpu_pool_and_says_so(settings) -> None:  # type: ignore[no-untyped-def]
    proc = start_gpu_worker(settings)
    redis = await create_pool(redis_settings(settings.redis_url))
    try:
        deadline, states = time.monotonic() + 90, []
        while not states and time.monotonic() < deadline:
            assert proc.poll() is None, "the worker exited"
            await asyncio.sleep(0.2)
            states = await live_workers(redis, settings.queue_name)
        [state] = states
        assert (state.pool, state.gpu, state.budget_gb, state.max_jobs) == ("gpu", 0, 22.5, 1)
        assert state.worker_id.startswith("gpu-") and state.worker_id.endswith("-gpu0")
    finally:
        await asyncio.to_thread(stop, proc)
        gone = await live_workers(redis, settings.queue_name)
        await redis.aclose()
    assert gone == []  # a clean stop withdraws the state at once
