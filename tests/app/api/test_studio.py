"""The studio's page and assets: served with the right types, nothing fetched from another origin, every control
labelled and carrying a stable data-testid (the browser journeys are in tests/test_studio_browser.py)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.conftest import Api

STUDIO = Path(__file__).resolve().parents[3] / "app" / "api" / "static" / "studio"
CONTROLS = ("input", "select", "textarea", "button", "a")
IMPORT = re.compile(r"""^import .* from "\./([\w-]+\.js)";$""", re.MULTILINE)


class Page(HTMLParser):
    """The page's asset references, its controls, and which controls a <label> names."""

    def __init__(self) -> None:
        super().__init__()
        self.assets: list[str] = []
        self.controls: list[dict[str, str | None]] = []
        self.label_for: set[str] = set()
        self.open_labels = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "script" and found.get("src"):
            self.assets.append(found["src"] or "")
        if tag == "link" and found.get("rel") == "stylesheet":
            self.assets.append(found.get("href") or "")
        if tag == "label":
            self.open_labels += 1
            if found.get("for"):
                self.label_for.add(found["for"] or "")
        if tag in CONTROLS:
            self.controls.append({"tag": tag, "in_label": str(self.open_labels > 0), **found})

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self.open_labels -= 1


def parse() -> Page:
    page = Page()
    page.feed((STUDIO / "index.html").read_text())
    return page


@pytest.mark.asyncio
async def test_the_page_and_every_module_are_served_with_their_types(api: Api) -> None:
    page = await api.client.get("/studio")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.text == (STUDIO / "index.html").read_text()
    modules = {m for f in STUDIO.glob("*.js") for m in IMPORT.findall(f.read_text())}
    assert modules <= {f.name for f in STUDIO.glob("*.js")}, "an import names a file that is not there"
    assets = parse().assets + [f"/studio/static/{m}" for m in sorted(modules)]
    assert "/studio/static/studio.js" in assets and "/studio/static/studio.css" in assets
    for url in assets:
        response = await api.client.get(url)
        assert response.status_code == 200, url
        expected = "text/css" if url.endswith(".css") else "text/javascript"
        assert response.headers["content-type"].split(";")[0] in (expected, "application/javascript"), url
    assert (await api.client.get("/studio/static/nothing.js")).status_code == 404
    assert (await api.client.get("/playground")).status_code == 200  # the playground stays


def test_nothing_comes_from_another_origin() -> None:
    for path in sorted(STUDIO.iterdir()):
        text = path.read_text()
        # absolute (http://, https://) and protocol-relative (//host/) URLs alike; CSS pulls nothing in either
        assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", text, re.IGNORECASE), path.name
        assert "@import" not in text and "url(" not in text, path.name


def test_every_control_has_a_testid_and_a_label() -> None:
    page = parse()
    testids = [c.get("data-testid") for c in page.controls]
    assert all(testids), [c for c in page.controls if not c.get("data-testid")]
    assert len(testids) == len(set(testids)), "data-testid values are unique"
    for control in page.controls:
        if control["tag"] in ("button", "a") or control.get("type") == "hidden":
            continue  # named by their text
        named = control["in_label"] == "True" or control.get("id") in page.label_for or control.get("aria-label")
        assert named, f"{control.get('data-testid')} has no label"
