"""Webhook errors, each with the status the edge answers and a Meshy-style message."""

from __future__ import annotations

from app.core.errors import BadRequest, Conflict, NotFound


class WebhookNotFound(NotFound):
    message = "Webhook not found"


class InvalidWebhookUrl(BadRequest):
    message = "Invalid parameter url"


class TooManyWebhooks(Conflict):
    message = "Webhook limit reached"
