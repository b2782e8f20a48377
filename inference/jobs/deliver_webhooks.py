"""The webhook delivery loop: every worker drains the Postgres outbox beside its job slots (never the request path).

Each pass leases the due deliveries (SKIP LOCKED, so workers share the work), renders and signs each payload,
POSTs them concurrently through the SSRF guard, and settles each attempt in its own transaction.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import httpx

from app import __version__
from app.core import metrics
from app.core.assets import UrlSigner
from app.core.clock import utcnow
from app.core.config import Settings
from app.webhooks import sender
from app.webhooks import service as webhook_service
from app.webhooks.service import Claimed, Policy
from inference.jobs.context import JobContext

log = logging.getLogger(__name__)


def policy_from(settings: Settings) -> Policy:
    return Policy(
        retry_schedule_s=tuple(settings.webhook_retry_schedule_s),
        disable_after_failures=settings.webhook_disable_after_failures,
        disable_after_s=settings.webhook_disable_after_s,
        timeout_s=settings.webhook_timeout_s,
        allow_local=settings.webhook_allow_local,
    )


@dataclass(frozen=True)
class Sending:
    """What every attempt of a worker shares."""

    client: httpx.AsyncClient
    policy: Policy
    signer: UrlSigner
    secret: bytes
    public_url: str | None


async def claim_more(job: JobContext, sending: Sending, limit: int) -> list[Claimed]:
    """Lease up to `limit` due deliveries."""
    async with job.sessionmaker() as session, session.begin():
        return await webhook_service.claim(session, policy=sending.policy, limit=limit)


async def deliver(job: JobContext, sending: Sending, claimed: Claimed) -> None:
    """One attempt, recorded; never raises (a database error leaves the lease to run out and the change resent)."""
    try:
        await _attempt(job, sending, claimed)
    except Exception:
        log.exception("webhook %s: delivery %s could not be recorded", claimed.webhook.id, claimed.delivery.id)


async def _attempt(job: JobContext, sending: Sending, claimed: Claimed) -> None:
    policy = sending.policy
    try:
        body = webhook_service.payload(claimed, signer=sending.signer, public_url=sending.public_url)
        headers = webhook_service.signed_headers(claimed, body, server_secret=sending.secret, now=utcnow())
    except Exception:  # a bug, not the receiver's fault: settled as a failed attempt so it cannot loop forever
        log.exception("webhook %s: could not prepare delivery %s", claimed.webhook.id, claimed.delivery.id)
        outcome = sender.Outcome(False, None, "internal error while preparing the payload")
    else:
        outcome = await sender.post(
            sending.client, claimed.webhook.url, body, headers, allow_local=policy.allow_local,
            timeout_s=policy.timeout_s,
        )  # fmt: skip
    if not outcome.delivered:
        log.info("webhook %s: change of task %s not delivered (attempt %s): %s", claimed.webhook.id,
                 claimed.delivery.task_id, claimed.delivery.attempts, outcome.message)  # fmt: skip
    async with job.sessionmaker() as session, session.begin():
        result = await webhook_service.settle(
            session, claimed=claimed, delivered=outcome.delivered, status_code=outcome.status_code,
            message=outcome.message, policy=policy,
        )  # fmt: skip
    metrics.webhook_delivery("refused" if outcome.refused and result == "failed" else result)


SWEEP_DISABLED_S = 60.0  # how often a worker removes leftovers of disabled webhooks from the outbox


async def run_deliveries(ctx: dict[str, Any], stop: asyncio.Event) -> None:
    """Deliver until `stop` is set, with up to `batch` attempts in flight: a slot that frees is filled at once,
    so one slow receiver never holds up the others; with nothing due, look again after the poll interval."""
    job: JobContext = ctx["job"]
    settings = job.settings
    policy = policy_from(settings)
    secret = settings.secret()
    interval = max(0.01, float(settings.webhook_poll_interval_s))
    in_flight: set[asyncio.Task[None]] = set()
    # trust_env=False: a proxy from the environment would connect on our behalf, past the address check.
    async with httpx.AsyncClient(
        follow_redirects=False, trust_env=False, timeout=policy.timeout_s,
        headers={"user-agent": f"MeshFoundry-Webhooks/{__version__}"},
        # No kept-alive connections: we connect to a checked IP address, and httpx pools by address, so a second
        # host name on the same address would reuse a TLS session verified for the first one.
        limits=httpx.Limits(max_keepalive_connections=0),
    ) as client:  # fmt: skip
        sending = Sending(client, policy, UrlSigner(secret), secret, settings.public_url)
        swept = time.monotonic()
        while not stop.is_set():
            if time.monotonic() - swept >= SWEEP_DISABLED_S:
                swept = time.monotonic()
                try:
                    async with job.sessionmaker() as session, session.begin():
                        await webhook_service.sweep_disabled(session)
                except Exception:  # only garbage is left behind: the next sweep takes it
                    log.exception("sweeping the deliveries of disabled webhooks failed")
            free, claimed = policy.batch - len(in_flight), []
            try:
                claimed = await claim_more(job, sending, free) if free > 0 else []
            except Exception:  # the next pass retries; a loop that dies would stop every webhook
                log.exception("claiming webhook deliveries failed")
            for item in claimed:
                attempt = asyncio.create_task(deliver(job, sending, item))
                in_flight.add(attempt)
                attempt.add_done_callback(in_flight.discard)
            if free > 0 and len(claimed) == free:
                continue  # more may be due right now
            stopping = asyncio.ensure_future(stop.wait())
            # Until the poll interval, a stop, or a freed slot (the task's next change may be due now).
            await asyncio.wait({stopping, *in_flight}, timeout=interval, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()  # the stop waiter only: an attempt in flight is never cancelled
        await asyncio.gather(*in_flight)
