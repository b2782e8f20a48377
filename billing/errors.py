"""Billing errors, with Meshy's status codes and messages."""

from __future__ import annotations

from app.core.errors import AppError, Conflict


class InsufficientCredits(AppError):
    status_code = 402
    message = "Insufficient credits"


class RateLimitExceeded(AppError):
    """Too many requests per second: back off and retry (Meshy's message, with Retry-After)."""

    status_code = 429
    message = "RateLimitExceeded"

    def __init__(self, retry_after_s: int = 1) -> None:
        super().__init__()
        self.headers = {"Retry-After": str(retry_after_s)}


class NoMoreConcurrentTasks(AppError):
    """The plan's unfinished-task limit is reached: retrying soon will not help, a task must finish first."""

    status_code = 429
    message = "NoMoreConcurrentTasks"


class NoMorePendingTasks(AppError):
    """Too many unfinished tasks outside the queue limit (2D images): wait for some to finish."""

    status_code = 429
    message = "NoMorePendingTasks"


class IdempotencyKeyReused(Conflict):
    message = "Idempotency-Key was already used with a different request body"


class UnknownPlan(AppError):
    status_code = 400
    message = "Unknown plan"


class BalanceWouldGoNegative(AppError):
    status_code = 400
    message = "The balance cannot go below zero"
