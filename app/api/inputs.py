"""Media inputs at create time: URLs are checked (and fetched later by the worker), data: URIs decoded now.

A data URI is decoded, sniffed and fully decoded as an image while the request is still open, so an empty,
truncated, tiny or non-image upload is a 400 before anything is charged. Its bytes are stored as a task input file
and the task object echoes a short stand-in instead of megabytes of base64 on every GET, list and SSE event.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from app.core.config import Settings
from app.core.errors import BadRequest
from app.core.fetch import FetchRefused, check_url, decode_data_uri
from app.core.images import ImageInfo, inspect_image
from app.core.model_files import check_model_extension, sniff_model

# Data URIs decoded at once in one API process; the rest wait their turn rather than pile up in memory.
_DECODING = asyncio.Semaphore(2)


def _decode(uri: str, max_bytes: int) -> tuple[bytes, ImageInfo]:
    content = decode_data_uri(uri, max_bytes=max_bytes)
    return content, inspect_image(content)


@dataclass
class MediaInputs:
    """`refs[field]`: one `{"file": name}` (stored now) or `{"url": url}` (fetched by the worker) per value."""

    refs: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    echo: dict[str, Any] = field(default_factory=dict)

    async def add(self, name: str, values: list[str], settings: Settings, *, many: bool) -> None:
        refs, echoed = [], []
        for index, value in enumerate(values):
            label = f"{name}[{index}]" if many else name
            try:
                if value.startswith("data:"):
                    async with _DECODING:  # each decode may take ~100 MB for a moment: a few at a time
                        content, info = await asyncio.to_thread(_decode, value, settings.fetch_max_bytes)
                    filename = f"{name}_{index}{info.extension}"
                    self.files[filename] = content
                    refs.append({"file": filename})
                    echoed.append(f"data:{info.media_type};base64,...({len(content)} bytes, stored)")
                else:
                    check_url(value, allow_private=settings.fetch_allow_private)
                    refs.append({"url": value})
                    echoed.append(value)
            except FetchRefused as exc:
                raise BadRequest(f"Invalid {label}: {exc}") from exc
        self.refs[name] = refs
        self.echo[name] = echoed if many else echoed[0]

    async def add_model(self, name: str, value: str, settings: Settings) -> str | None:
        """A model URL or data URI; the sniffed format of an inline one (None for a URL, read by the worker)."""
        try:
            if value.startswith("data:"):
                async with _DECODING:
                    content = await asyncio.to_thread(decode_data_uri, value, max_bytes=settings.fetch_max_bytes)
                fmt = sniff_model(content)
                filename = f"{name}_0.{fmt}"
                self.files[filename] = content
                self.refs[name] = [{"file": filename}]
                self.echo[name] = f"data:application/octet-stream;base64,...({len(content)} bytes, stored)"
                return fmt
            check_url(value, allow_private=settings.fetch_allow_private)
            check_model_extension(value)
        except FetchRefused as exc:
            message = str(exc)  # Meshy's own wording for an extension it does not read stands alone
            raise BadRequest(message if message.startswith("Invalid model") else f"Invalid {name}: {message}") from exc
        self.refs[name] = [{"url": value}]
        self.echo[name] = value
        return None

    def params(self) -> dict[str, Any]:
        return {**self.echo, "_inputs": self.refs} if self.refs else {}
