"""Billing test fixtures: the rate limiter's clock, held still."""

from __future__ import annotations

import time

import pytest

import billing.quotas


class Clock:
    """The limiter's clock, held still: a burst falls in one one-second window however slow the machine is."""

    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def time(self) -> float:
        return self.now


@pytest.fixture
def window(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(billing.quotas, "time", clock)
    return clock
