"""An LRU cache of loaded models that keeps their combined VRAM within a budget.

A worker may serve several runners from one GPU. Loading a model costs seconds to minutes, so models stay
resident between jobs; when a new one does not fit, the least recently used ones are evicted (their `unload()`
is called, if they have one) until it does. A model larger than the whole budget is still loaded, alone, with a
warning: refusing would make that runner unusable on this machine, and the budget is an estimate anyway.

Sizes are what the caller declares (e.g. `ShapERunner.estimated_vram_gb`); the cache never measures memory, so
it is pure Python. It is thread-safe: runners are called from executor threads. Loading happens outside the
lock, so a slow load never blocks hits on other models, and concurrent requests for the same key wait for the
one load in flight instead of loading twice.

`get()` hands out a model without holding on to it, so a later `get()` for another model may evict it while a
caller is still using it. Callers that can overlap (several jobs on one GPU) should use `lease()`, which pins
the model until the `with` block ends; pinned models are never evicted, even if that means going over budget.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from inference.scheduling.budget import lru_victims

logger = logging.getLogger(__name__)

Model = TypeVar("Model")


@dataclass(eq=False)
class _Entry:
    model: Any
    vram_gb: float
    pins: int = 0


@dataclass(eq=False)
class _Pending:
    """A load in flight: its size is reserved in the budget, and other requesters wait on `done`."""

    vram_gb: float
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    waiters: int = 0


class ModelCache:
    """See the module docstring. `budget_gb` is the VRAM (GiB) that resident models may declare in total."""

    def __init__(self, budget_gb: float) -> None:
        if budget_gb < 0:
            raise ValueError("budget_gb must be >= 0")
        self.budget_gb = float(budget_gb)
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()  # least recently used first
        self._pending: dict[Hashable, _Pending] = {}
        self._counts = {"hits": 0, "misses": 0, "loads": 0, "load_failures": 0, "evictions": 0}

    def get(self, key: Hashable, loader: Callable[[], Model], vram_gb: float) -> Model:
        """The model for `key`, calling `loader()` (once, even under concurrency) if it is not resident."""
        return self._acquire(key, loader, vram_gb, pin=False).model

    @contextmanager
    def lease(self, key: Hashable, loader: Callable[[], Model], vram_gb: float) -> Iterator[Model]:
        """Like `get()`, but the model cannot be evicted until the `with` block exits."""
        entry = self._acquire(key, loader, vram_gb, pin=True)
        try:
            yield entry.model
        finally:
            with self._lock:
                entry.pins -= 1

    def evict(self, key: Hashable) -> bool:
        """Unload `key` now; False if it is not resident or is leased."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.pins:
                return False
            del self._entries[key]
            self._counts["evictions"] += 1
        _unload(key, entry.model)
        return True

    def clear(self) -> None:
        """Unload every resident model that is not leased."""
        with self._lock:
            victims = [(k, e) for k, e in self._entries.items() if not e.pins]
            for key, _ in victims:
                del self._entries[key]
            self._counts["evictions"] += len(victims)
        for key, entry in victims:
            _unload(key, entry.model)

    def stats(self) -> dict[str, Any]:
        """A snapshot: budget, declared use, resident models (least recently used first), loads in flight, counters."""
        with self._lock:
            return {
                "budget_gb": self.budget_gb,
                "used_gb": sum(e.vram_gb for e in self._entries.values()),
                "reserved_gb": sum(p.vram_gb for p in self._pending.values()),
                "models": [{"key": k, "vram_gb": e.vram_gb, "leases": e.pins} for k, e in self._entries.items()],
                "loading": list(self._pending),
                "waiting": sum(p.waiters for p in self._pending.values()),  # requests waiting on those loads
                **self._counts,
            }

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._entries

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def _acquire(self, key: Hashable, loader: Callable[[], Any], vram_gb: float, pin: bool) -> _Entry:
        if vram_gb < 0:
            raise ValueError("vram_gb must be >= 0")
        while True:
            with self._lock:
                entry = self._entries.get(key)
                if entry is not None:
                    self._entries.move_to_end(key)
                    self._counts["hits"] += 1
                    entry.pins += pin
                    return entry
                pending = self._pending.get(key)
                if pending is None:
                    self._counts["misses"] += 1
                    victims = self._make_room(key, float(vram_gb))
                    pending = self._pending[key] = _Pending(float(vram_gb))
                    break
                pending.waiters += 1
            # Another thread is loading this key: wait, then look again (normally a hit now).
            pending.done.wait()
            with self._lock:
                pending.waiters -= 1
            if pending.error is not None:
                raise pending.error

        # This thread owns the load. Evicted models are unloaded first so their memory is free for the new one.
        for victim_key, victim in victims:
            _unload(victim_key, victim.model)
        try:
            model = loader()
        except BaseException as exc:
            with self._lock:
                del self._pending[key]
                self._counts["load_failures"] += 1
            pending.error = exc
            pending.done.set()
            raise
        entry = _Entry(model, pending.vram_gb, pins=int(pin))
        with self._lock:
            del self._pending[key]
            self._entries[key] = entry
            self._counts["loads"] += 1
        pending.done.set()
        return entry

    def _make_room(self, key: Hashable, vram_gb: float) -> list[tuple[Hashable, _Entry]]:
        """Remove least recently used, unleased entries until `vram_gb` fits; caller holds the lock and unloads."""
        used = sum(e.vram_gb for e in self._entries.values()) + sum(p.vram_gb for p in self._pending.values())
        resident = [(k, e.vram_gb, e.pins > 0) for k, e in self._entries.items()]
        victims = []
        for victim_key in lru_victims(resident, self.budget_gb - used, vram_gb):  # the scheduler's own rule
            victim = self._entries.pop(victim_key)
            used -= victim.vram_gb
            victims.append((victim_key, victim))
        self._counts["evictions"] += len(victims)
        if vram_gb > self.budget_gb:
            logger.warning(
                "model %r declares %.2f GiB, more than the %.2f GiB budget; "
                "loading it after evicting every unleased model",
                key,
                vram_gb,
                self.budget_gb,
            )
        elif used + vram_gb > self.budget_gb:
            logger.warning(
                "model %r (%.2f GiB) goes over the %.2f GiB budget: leased or loading models hold %.2f GiB",
                key,
                vram_gb,
                self.budget_gb,
                used,
            )
        return victims


def _unload(key: Hashable, model: Any) -> None:
    """Call `model.unload()` if it has one; a failure is logged, not raised, so the new load still proceeds."""
    unload = getattr(model, "unload", None)
    if not callable(unload):
        return
    try:
        unload()
    except Exception:
        logger.exception("unloading model %r failed", key)
    else:
        logger.info("unloaded model %r", key)
