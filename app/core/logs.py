"""Structured logs: request, task and account ids on every record, secrets redacted, as text or JSON lines."""

from __future__ import annotations

import contextvars
import json
import logging
import logging.config
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

FORMATS = ("text", "json")
ID_FIELDS = ("request_id", "task_id", "account_id")


@dataclass
class LogContext:
    """The ids of what this coroutine works for. Mutable on purpose: a dependency that learns the account mid-request
    sets it on the object the middleware bound, and the middleware's access line sees it."""

    request_id: str | None = None
    task_id: str | None = None
    account_id: str | None = None


_context: contextvars.ContextVar[LogContext | None] = contextvars.ContextVar("meshfoundry_log_context", default=None)


def bind(context: LogContext) -> contextvars.Token[LogContext | None]:
    """Make `context` the current one (a request's or a job's); `unbind` with the token when it ends."""
    return _context.set(context)


def unbind(token: contextvars.Token[LogContext | None]) -> None:
    _context.reset(token)


def current() -> LogContext | None:
    return _context.get()


def set_account(account_id: object) -> None:
    """Record the caller's account on the current request's context (no-op outside one)."""
    context = _context.get()
    if context is not None:
        context.account_id = str(account_id)


def set_task(task_id: object) -> None:
    context = _context.get()
    if context is not None:
        context.task_id = str(task_id)


# --- redaction ------------------------------------------------------------------------------------------------

_SECRET_NAME = re.compile(r"token|signature|secret|password|passwd|credential|api_?key", re.IGNORECASE)
# (a substring every match contains, lower-cased; the pattern; its replacement): the cheap test skips the regex on
# the many strings that cannot hold that secret, so a clean access line costs a few substring checks.
_SECRETS: tuple[tuple[str, re.Pattern[str], Any], ...] = (
    ("msy", re.compile(r"\b(msy[_-])[A-Za-z0-9]{4,}"), r"\1[redacted]"),  # API keys
    ("whsec_", re.compile(r"\b(whsec_)[A-Za-z0-9+/=_-]+"), r"\1[redacted]"),  # webhook signing secrets
    ("bearer", re.compile(r"(?i)\b(bearer\s+)[^\s\"',;]+"), r"\1[redacted]"),  # Authorization values
    ("basic", re.compile(r"(?i)\b(authorization:\s*basic\s+)[^\s\"',;]+"), r"\1[redacted]"),
    ("eyj", re.compile(r"\beyJ[\w-]{4,}\.[\w-]{4,}\.[\w-]*"), "[redacted-jwt]"),  # stream tokens, other JWTs
    # ?token= &Signature= X-Amz-Signature= SECRET_KEY= ...: any name=value pair whose name says secret.
    (
        "=",
        re.compile(r"([\w.-]+=)([^&\s\"'<>]+)"),
        lambda m: m[1] + "[redacted]" if _SECRET_NAME.search(m[1]) else m[0],
    ),
    (
        ":",
        re.compile(r"(['\"][\w.-]+['\"]\s*:\s*['\"])([^'\"]*)"),  # {"secret": "..."}, {'token': '...'}
        lambda m: m[1] + "[redacted]" if _SECRET_NAME.search(m[1]) else m[0],
    ),
    ("://", re.compile(r"(\b[a-zA-Z][\w+.-]*://[^:/@\s]*:)[^@\s/]+@"), r"\1[redacted]@"),  # user:password@
)


def redact(text: str) -> str:
    """`text` without API keys, bearer tokens, stream tokens, URL signatures, webhook secrets or DSN passwords."""
    lowered = text.lower()
    for marker, pattern, replacement in _SECRETS:
        if marker in lowered:
            text = pattern.sub(replacement, text)
    return text


class RedactSecrets(logging.Filter):
    """For handlers that are not ours (e.g. uvicorn's own access log): redacts a record's message and arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        return True


# --- formatters -------------------------------------------------------------------------------------------------

# What every LogRecord has; anything else on a record came in through `extra=` and is logged as a field.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


def _ids(record: logging.LogRecord) -> dict[str, str]:
    """The request, task and account ids (an explicit `extra` wins over the context), redacted."""
    context = _context.get()
    out: dict[str, str] = {}
    for name in ID_FIELDS:
        value = getattr(record, name, None) or (getattr(context, name) if context is not None else None)
        if value:
            out[name] = redact(str(value))
    return out


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    """The ids and the record's other extra fields, redacted."""
    out: dict[str, Any] = _ids(record)
    for name, value in record.__dict__.items():
        if name not in _STANDARD and name not in out and name not in ID_FIELDS:
            out[name] = redact(value) if isinstance(value, str) else value
    return out


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the ids, extra fields, exception text."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
            **_fields(record),
        }
        if record.exc_info:
            entry["exc_info"] = redact(self.formatException(record.exc_info))
        if record.stack_info:
            entry["stack"] = redact(self.formatStack(record.stack_info))
        try:
            return orjson.dumps(entry, default=str).decode()
        except orjson.JSONEncodeError:  # e.g. an integer past 64 bits in an extra field
            return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`time level logger message request_id=... task_id=... account_id=...`, redacted like the JSON lines; a
    traceback follows on the next lines.

    The parts that can carry a secret (the message, the ids, the traceback) are redacted each on its own; the line
    around them (time, level, logger name, `name=`) cannot, and redacting it whole ran the `name=value` and `"k": v`
    patterns on every line (the ids' `=` and the time's `:`), most of an access line's cost.
    """

    def format(self, record: logging.LogRecord) -> str:
        ids = _ids(record)
        message = redact(record.getMessage())
        if "\n" in message or "\r" in message:  # a decoded path (`%0A`) must not forge a line of its own
            message = message.replace("\r", "\\r").replace("\n", "\\n")
        line = f"{self.formatTime(record)} {record.levelname} {record.name} {message}"
        if ids:
            line += " " + " ".join(f"{name}={ids[name]}" for name in ID_FIELDS if name in ids)
        if record.exc_info:  # the only newlines: a traceback's
            line += "\n" + redact(self.formatException(record.exc_info))
        elif record.exc_text:  # a record formatted elsewhere first (a queue or socket handler's)
            line += "\n" + redact(record.exc_text)
        if record.stack_info:
            line += "\n" + redact(self.formatStack(record.stack_info))
        return line


def log_config(log_format: str, level: str) -> dict[str, Any]:
    """A `logging.config.dictConfig` dict: every record (uvicorn's too) through one redacting formatter on stderr.

    uvicorn's own access log is switched off: the API's middleware writes a richer one (`meshfoundry.access`).
    """
    formatter = JsonFormatter if log_format == "json" else TextFormatter
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"meshfoundry": {"()": f"{__name__}.{formatter.__name__}"}},
        "handlers": {
            "meshfoundry": {"class": "logging.StreamHandler", "formatter": "meshfoundry", "stream": "ext://sys.stderr"}
        },
        "root": {"level": level, "handlers": ["meshfoundry"]},
        "loggers": {
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.error": {"handlers": [], "propagate": True},
            "uvicorn.access": {"handlers": [], "propagate": False, "level": "WARNING"},
            "alembic": {"level": "WARNING"},
        },
    }


def write_config(path: Path, log_format: str, level: str) -> Path:
    """`log_config` as a JSON file for `uvicorn --log-config <path>`: uvicorn's first lines are formatted too."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(log_config(log_format, level), indent=2) + "\n")
    return path


def lean_records() -> None:
    """Stop logging from collecting per record what our formatters never print: the caller (a walk up the stack on
    every line) and the thread and process names (logging's own switches, "Optimization" in its HOWTO). Only when
    every root handler is ours: another configuration may print them. Tracebacks are unaffected; `stack_info=True`
    is then ignored (nothing here uses it)."""
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def configure(log_format: str, level: str, *, force: bool = False) -> bool:
    """Install `log_config` for this process; without `force`, only where nobody configured logging yet (like
    `logging.basicConfig`: a root logger with handlers, e.g. from `--log-config` or a test runner, is left alone).
    True when it did."""
    if not force and logging.getLogger().handlers:
        if all(isinstance(h.formatter, TextFormatter | JsonFormatter) for h in logging.getLogger().handlers):
            lean_records()  # uvicorn's --log-config with our formatters (`meshfoundry up`)
        return False
    logging.config.dictConfig(log_config(log_format, level))
    lean_records()
    return True
