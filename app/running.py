"""Where a running `meshfoundry up` is: `meshfoundry keys ...` run elsewhere finds its data, or says what to set.

`up` records itself in two places while it runs: `<home>/running.json` (its API URL, for scripts and examples) and a
per-user registry file (`$XDG_STATE_HOME/meshfoundry/running/<pid>.json`, default `~/.local/state/...`) naming its
home. Nothing secret is written: database and Redis URLs are not recorded.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from app.core import embedded
from app.core.config import write_private

_PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@\s]*@")


def redact_url(url: str) -> str:
    """A connection URL without its password (`postgresql://user:***@host/db`)."""
    return _PASSWORD.sub(r"\1***@", url)


def _registry() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "meshfoundry" / "running"


@dataclass(frozen=True)
class Running:
    pid: int
    home: Path
    api_url: str


def record(home: Path, *, api_url: str) -> None:
    entry = {"pid": os.getpid(), "home": str(home.resolve()), "api_url": api_url, "started_at": int(time.time())}
    write_private(home / "running.json", json.dumps(entry) + "\n")
    with contextlib.suppress(OSError):  # a read-only home directory must not stop the service
        folder = _registry()
        folder.mkdir(parents=True, exist_ok=True)
        write_private(folder / f"{os.getpid()}.json", json.dumps(entry) + "\n")


def forget(home: Path) -> None:
    with contextlib.suppress(OSError):
        (home / "running.json").unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        (_registry() / f"{os.getpid()}.json").unlink(missing_ok=True)


def servers() -> list[Running]:
    """Every `up` of this user that is still running (stale entries of dead ones are removed)."""
    found = []
    folder = _registry()
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        try:
            entry = json.loads(path.read_text())
            server = Running(int(entry["pid"]), Path(entry["home"]), str(entry["api_url"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if embedded.process_alive(server.pid):
            found.append(server)
        else:
            with contextlib.suppress(OSError):
                path.unlink()
    return found


def has_data(home: Path) -> bool:
    """True when `home` holds an embedded Postgres data directory."""
    return (home / "pg" / "PG_VERSION").is_file()
