"""ModelCache: LRU order, budget eviction (with unload), oversize models, leases, and one load under concurrency."""

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from inference.model_cache import ModelCache


class FakeModel:
    def __init__(self, name: str, unloaded: list[str]) -> None:
        self.name = name
        self._unloaded = unloaded

    def unload(self) -> None:
        self._unloaded.append(self.name)


@pytest.fixture
def unloaded() -> list[str]:
    return []


def loader(name: str, unloaded: list[str]):
    return lambda: FakeModel(name, unloaded)


def resident(cache: ModelCache) -> list[str]:
    return [m["key"] for m in cache.stats()["models"]]


def test_hit_returns_the_resident_model_without_loading_again(unloaded):
    cache = ModelCache(budget_gb=10)
    first = cache.get("a", loader("a", unloaded), vram_gb=4)

    def fail():
        raise AssertionError("loaded twice")

    assert cache.get("a", fail, vram_gb=4) is first
    stats = cache.stats()
    assert (stats["hits"], stats["misses"], stats["loads"], stats["used_gb"]) == (1, 1, 1, 4)
    assert "a" in cache and len(cache) == 1


def test_evicts_least_recently_used_first_and_calls_unload(unloaded):
    cache = ModelCache(budget_gb=10)
    cache.get("a", loader("a", unloaded), 4)
    cache.get("b", loader("b", unloaded), 4)
    cache.get("a", loader("a", unloaded), 4)  # a is now the most recently used
    assert resident(cache) == ["b", "a"]

    cache.get("c", loader("c", unloaded), 4)

    assert unloaded == ["b"]
    assert resident(cache) == ["a", "c"]
    assert cache.stats()["used_gb"] == 8 and cache.stats()["evictions"] == 1


def test_a_big_model_evicts_as_many_as_needed_in_lru_order(unloaded):
    cache = ModelCache(budget_gb=10)
    for name in "abcde":
        cache.get(name, loader(name, unloaded), 2)

    cache.get("big", loader("big", unloaded), 7)

    assert unloaded == ["a", "b", "c", "d"]
    assert resident(cache) == ["e", "big"]


def test_model_larger_than_budget_is_loaded_alone_with_a_warning(unloaded, caplog):
    cache = ModelCache(budget_gb=4)
    cache.get("a", loader("a", unloaded), 2)

    with caplog.at_level(logging.WARNING, logger="inference.model_cache"):
        huge = cache.get("huge", loader("huge", unloaded), 12)

    assert huge.name == "huge"
    assert unloaded == ["a"] and resident(cache) == ["huge"]
    assert "more than the 4.00 GiB budget" in caplog.text
    cache.get("b", loader("b", unloaded), 1)  # the next model evicts it again
    assert unloaded == ["a", "huge"] and resident(cache) == ["b"]


def test_models_without_unload_and_failing_unload_are_still_evicted(caplog):
    class Broken:
        def unload(self) -> None:
            raise RuntimeError("boom")

    cache = ModelCache(budget_gb=1)
    cache.get("plain", object, 1)
    cache.get("broken", Broken, 1)
    with caplog.at_level(logging.ERROR, logger="inference.model_cache"):
        cache.get("next", object, 1)
    assert resident(cache) == ["next"]
    assert "unloading model 'broken' failed" in caplog.text


def test_concurrent_gets_of_one_key_load_it_once(unloaded):
    cache = ModelCache(budget_gb=10)
    calls = 0
    start = threading.Barrier(8)

    def slow_loader():
        nonlocal calls
        calls += 1
        time.sleep(0.2)  # long enough that every thread arrives while the load is in flight
        return FakeModel("a", unloaded)

    def worker(_):
        start.wait()
        return cache.get("a", slow_loader, 3)

    with ThreadPoolExecutor(max_workers=8) as pool:
        models = list(pool.map(worker, range(8)))

    assert calls == 1
    assert all(m is models[0] for m in models)
    assert cache.stats()["loads"] == 1 and cache.stats()["loading"] == []


def test_a_failed_load_reaches_every_waiter_and_is_retried_next_time(unloaded):
    cache = ModelCache(budget_gb=10)
    release = threading.Event()
    calls = 0

    def failing():
        nonlocal calls
        calls += 1
        release.wait(30)
        raise OSError("no weights")

    with ThreadPoolExecutor(max_workers=2) as pool:
        owner = pool.submit(cache.get, "a", failing, 2)
        while not cache.stats()["loading"]:
            time.sleep(0.01)
        waiter = pool.submit(cache.get, "a", failing, 2)
        while cache.stats()["waiting"] != 1:  # the second request is really waiting on the first load
            time.sleep(0.01)
        release.set()
        for future in (owner, waiter):
            with pytest.raises(OSError, match="no weights"):
                future.result(5)

    assert calls == 1, "the waiter got the owner's error; it did not load again"
    assert "a" not in cache and cache.stats()["reserved_gb"] == 0 and cache.stats()["waiting"] == 0
    assert cache.get("a", loader("a", unloaded), 2).name == "a"


def test_leased_models_are_not_evicted(unloaded):
    cache = ModelCache(budget_gb=4)
    with cache.lease("a", loader("a", unloaded), 3) as a:
        cache.get("b", loader("b", unloaded), 3)  # over budget, but a is in use
        assert unloaded == [] and resident(cache) == ["a", "b"]
        assert cache.evict("a") is False
        assert a.name == "a"
    cache.get("c", loader("c", unloaded), 3)
    assert unloaded == ["a", "b"] and resident(cache) == ["c"]


def test_evict_and_clear(unloaded):
    cache = ModelCache(budget_gb=10)
    cache.get("a", loader("a", unloaded), 1)
    cache.get("b", loader("b", unloaded), 1)
    assert cache.evict("a") is True and cache.evict("a") is False
    cache.clear()
    assert unloaded == ["a", "b"] and len(cache) == 0


def test_negative_sizes_are_rejected():
    with pytest.raises(ValueError, match="budget_gb"):
        ModelCache(budget_gb=-1)
    with pytest.raises(ValueError, match="vram_gb"):
        ModelCache(budget_gb=1).get("a", object, -1)
