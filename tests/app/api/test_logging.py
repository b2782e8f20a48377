"""Access logs never carry stream tokens or URL signatures."""

from __future__ import annotations

import logging

from app.api.main import RedactSecrets


def test_tokens_and_signatures_are_redacted() -> None:
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/openapi/v2/text-to-3d/x/stream?token=eyJabc.def&x=1", "1.1", 200), None,
    )  # fmt: skip
    RedactSecrets().filter(record)
    assert "eyJabc" not in record.getMessage() and "token=[redacted]&x=1" in record.getMessage()
    record.args = ("127.0.0.1:5000", "GET", "/assets/t/model.glb?Expires=1&Signature=abcdef", "1.1", 200)
    RedactSecrets().filter(record)
    assert "abcdef" not in record.getMessage()
