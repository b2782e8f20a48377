"""URL inputs: SSRF guard, size caps, sniffing, redirects and data URIs."""

from __future__ import annotations

import base64
import io
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from app.core.fetch import FetchRefused, fetch

pytestmark = pytest.mark.asyncio
IMAGES = ("image/png", "image/jpeg")


def png(colour: tuple[int, int, int] = (200, 30, 30), size: int = 8) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, "PNG")
    return buffer.getvalue()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        routes = {
            "/img.png": (200, {"Content-Type": "image/png"}, png()),
            "/text": (200, {"Content-Type": "image/png"}, b"<html>not an image</html>"),
            "/redirect": (302, {"Location": "/img.png"}, b""),
            "/loop": (302, {"Location": "/loop"}, b""),
            "/missing": (404, {}, b"nope"),
        }
        if self.path == "/drip":  # a body that trickles in: the time limit must cover it, not just the headers
            self.send_response(200)
            self.end_headers()
            for byte in png():
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(0.2)  # ~15 s for the whole file: far beyond the limit, however slow the machine
            return
        if self.path == "/big":
            self.send_response(200)
            self.end_headers()  # no Content-Length: the cap must hold while streaming
            self.wfile.write(png() + b"\0" * 5000)
            return
        status, headers, body = routes.get(self.path, (404, {}, b""))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


async def get(url: str, *, allow_private: bool = False, max_bytes: int = 1_000_000) -> bytes:
    return (await fetch(url, allowed=IMAGES, max_bytes=max_bytes, timeout_s=5, allow_private=allow_private)).content


class TestSsrfGuard:
    @pytest.mark.parametrize(
        "url",
        [
            "http://127.0.0.1/x.png",
            "http://localhost/x.png",
            "http://[::1]/x.png",
            "http://169.254.169.254/latest/meta-data/",
            "http://10.0.0.1/x.png",
            "http://192.168.1.1/x.png",
            "http://0.0.0.0/x.png",
            "http://[::ffff:127.0.0.1]/x.png",
            "http://[64:ff9b::a00:1]/x.png",
            "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/",
            "http://[2002:7f00:1::1]/x.png",
            "http://[::127.0.0.1]/x.png",
            "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/x.png",
        ],
    )
    async def test_private_and_reserved_addresses_are_refused(self, url: str) -> None:
        with pytest.raises(FetchRefused, match="private or reserved|cannot resolve"):
            await get(url)

    @pytest.mark.parametrize("url", ["ftp://example.com/x.png", "file:///etc/passwd", "gopher://x/", "//x/y.png"])
    async def test_other_schemes_are_refused(self, url: str) -> None:
        with pytest.raises(FetchRefused, match="only http"):
            await get(url)

    async def test_a_loopback_server_is_refused_unless_allowed(self, server: str) -> None:
        with pytest.raises(FetchRefused):
            await get(f"{server}/img.png")
        assert await get(f"{server}/img.png", allow_private=True) == png()


class TestDownloads:
    async def test_redirects_are_followed_and_bounded(self, server: str) -> None:
        assert await get(f"{server}/redirect", allow_private=True) == png()
        with pytest.raises(FetchRefused, match="redirects"):
            await get(f"{server}/loop", allow_private=True)

    async def test_size_cap_holds_without_content_length(self, server: str) -> None:
        with pytest.raises(FetchRefused, match="larger"):
            await get(f"{server}/big", allow_private=True, max_bytes=1000)

    async def test_content_is_sniffed_not_trusted(self, server: str) -> None:
        with pytest.raises(FetchRefused, match="content is not"):
            await get(f"{server}/text", allow_private=True)

    async def test_time_limit_covers_the_whole_download(self, server: str) -> None:
        started = time.monotonic()
        with pytest.raises(FetchRefused, match="did not answer"):
            await fetch(f"{server}/drip", allowed=IMAGES, max_bytes=10_000, timeout_s=1, allow_private=True)
        assert time.monotonic() - started < 8

    async def test_http_errors_are_reported(self, server: str) -> None:
        with pytest.raises(FetchRefused, match="404"):
            await get(f"{server}/missing", allow_private=True)


class TestDataUris:
    async def test_png_data_uri(self) -> None:
        uri = "data:image/png;base64," + base64.b64encode(png()).decode()
        assert await get(uri) == png()

    async def test_oversized_and_malformed_data_uris(self) -> None:
        big = "data:image/png;base64," + base64.b64encode(png(size=400)).decode()
        with pytest.raises(FetchRefused, match="larger"):
            await get(big, max_bytes=500)
        with pytest.raises(FetchRefused, match="malformed"):
            await get("data:image/png;base64,@@@")
        with pytest.raises(FetchRefused, match="content is not"):
            await get("data:image/png;base64," + base64.b64encode(b"GIF89a....").decode())


@pytest.mark.parametrize(
    "url",
    ["http://[::1", "https://example.com:99999/a.png", "http://a..b/x.png", "https://" + "a" * 70 + ".com/x.png",
     "https://example.com/" + "a" * 5000, "ftp://example.com/a.png", "http://127.0.0.1/a.png", "http://localhost/x",
     "http://[::ffff:10.0.0.1]/x"],
)  # fmt: skip
async def test_check_url_refuses_what_can_be_known_without_the_network(url: str) -> None:
    from app.core.fetch import check_url

    with pytest.raises(FetchRefused):
        check_url(url)


async def test_a_malformed_url_is_refused_by_fetch_too() -> None:
    for url in ("https://example.com:99999/a.png", "http://a..b/x.png"):
        with pytest.raises(FetchRefused):
            await fetch(url, allowed=IMAGES, max_bytes=1000, timeout_s=5)
