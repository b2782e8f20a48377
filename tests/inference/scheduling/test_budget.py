"""VRAM accounting of one simulated GPU: residency, LRU eviction, leases, peak VRAM, and what can never fit."""

from __future__ import annotations

import pytest

from inference.model_cache import ModelCache
from inference.scheduling.budget import Gpu, Model, Need, lru_victims

A, B, C = Need("a", 8), Need("b", 10), Need("c", 6)
BIG = Need("big", 26)
PEAKY = Need("peaky", 4, peak_gb=10)  # 4 GB resident, 10 GB while a job runs


class TestResidency:
    def test_a_started_model_stays_resident_after_its_job(self) -> None:
        gpu = Gpu(20).start(A)
        assert gpu.holds("a") and gpu.running == 1 and gpu.used_gb == 8
        gpu = gpu.finish(A)
        assert gpu.holds("a") and gpu.running == 0 and gpu.used_gb == 8

    def test_a_resident_model_needs_no_eviction(self) -> None:
        gpu = Gpu(20).start(A).finish(A).start(B).finish(B)  # 18 of 20 GB resident
        assert gpu.victims(A) == [] and gpu.victims(B) == []

    def test_the_started_model_becomes_the_most_recently_used(self) -> None:
        gpu = Gpu(30).start(A).finish(A).start(B).finish(B).start(A).finish(A)
        assert [m.runner for m in gpu.models] == ["b", "a"]


class TestEviction:
    def test_idle_models_are_unloaded_least_recently_used_first(self) -> None:
        gpu = Gpu(20).start(A).finish(A).start(C).finish(C)  # a (LRU) 8 + c 6 = 14
        assert gpu.victims(B) == ["a"]  # 6 free + 8 = 14 >= 10: c may stay
        after = gpu.start(B)
        assert [m.runner for m in after.models] == ["c", "b"] and after.used_gb == 16

    def test_a_model_in_use_is_never_unloaded(self) -> None:
        gpu = Gpu(20).start(A).start(C)  # both running: 14 GB pinned
        assert gpu.victims(B) is None and not gpu.fits(B)
        assert gpu.finish(A).victims(B) == ["a"]

    def test_start_refuses_what_does_not_fit(self) -> None:
        with pytest.raises(ValueError, match="does not fit"):
            Gpu(20).start(A).start(C).start(B)

    def test_the_model_cache_evicts_by_the_same_rule(self) -> None:
        """The worker's ModelCache and the policy's Gpu unload the same models for the same request."""
        cache = ModelCache(budget_gb=20)
        for need in (A, C):
            cache.get(need.runner, object, need.vram_gb)
        gpu = Gpu(20, (Model("a", 8), Model("c", 6)))
        expected = gpu.victims(B)
        cache.get("b", object, B.vram_gb)
        assert [m["key"] for m in cache.stats()["models"]] == [m.runner for m in gpu.start(B).models]
        assert expected == ["a"] and cache.stats()["evictions"] == 1

    def test_lru_victims_skips_pinned_and_stops_once_it_fits(self) -> None:
        models = [("x", 4.0, False), ("y", 5.0, True), ("z", 6.0, False), ("w", 3.0, False)]
        assert lru_victims(models, free_gb=1, need_gb=10) == ["x", "z"]
        assert lru_victims(models, free_gb=12, need_gb=10) == []
        assert lru_victims(models, free_gb=0, need_gb=100) == ["x", "z", "w"]  # all it can; the caller decides


class TestPeak:
    def test_a_running_job_holds_its_peak_and_releases_it_at_the_end(self) -> None:
        gpu = Gpu(12).start(PEAKY)
        assert gpu.used_gb == 10 and gpu.extra_gb == 6
        assert not gpu.fits(A)  # 2 GB free while it runs
        idle = gpu.finish(PEAKY)
        assert idle.used_gb == 4 and idle.fits(A)

    def test_a_second_job_on_a_resident_model_needs_only_its_extra(self) -> None:
        gpu = Gpu(16).start(PEAKY)
        assert gpu.victims(PEAKY) == []  # 6 free >= 6 extra
        assert not gpu.start(PEAKY).fits(PEAKY)


class TestNeverFits:
    def test_a_model_larger_than_the_budget_can_never_fit(self) -> None:
        gpu = Gpu(22.5)
        assert not gpu.can_ever_fit(BIG) and not gpu.fits(BIG)
        assert gpu.can_ever_fit(Need("exact", 22.5))
        assert not gpu.can_ever_fit(Need("peak", 4, peak_gb=23))
