"""The playground in a real headless Chromium: create, follow over EventSource, view, refine, download."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import Api, Caller

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# The flags this machine's probe used: no sandbox as root, no background traffic to hosts we cannot reach.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def chromium() -> str:
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing; .ci/run installs Debian's chromium package")
        pytest.skip("no chromium here (apt-get install chromium)")
    return CHROMIUM


@pytest.fixture
def slow_jobs(settings):  # type: ignore[no-untyped-def]
    """Jobs of about 2 s (10 steps), so the browser's EventSource sees progress, not just the end."""
    settings.procedural_step_delay_s = 0.2
    return settings


async def test_playground_flow(api: Api, caller: Caller, slow_jobs, worker, chromium: str) -> None:
    from playwright.async_api import async_playwright, expect

    ARTIFACTS.mkdir(exist_ok=True)
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium, args=FLAGS, headless=True)
        try:
            page = await browser.new_page(viewport={"width": 1100, "height": 1100})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(f"{api.base_url}/playground")
            await page.get_by_test_id("api-key").fill(caller.key)
            await page.get_by_test_id("prompt").fill("a red sports car")
            await page.get_by_test_id("target-polycount").fill("5000")
            await page.get_by_test_id("submit").click()

            await expect(page.get_by_test_id("status")).to_have_text("SUCCEEDED", timeout=60_000)
            assert await page.get_by_test_id("progress").evaluate("e => e.value") == 100
            events = await page.evaluate("window.meshfoundryEvents")
            assert events[-1] == {"status": "SUCCEEDED", "progress": 100}
            assert len(events) >= 2, "progress arrived through EventSource, not a single fetch"
            await expect(page.get_by_test_id("viewer")).to_have_attribute("data-loaded", "true", timeout=30_000)
            glb_url = await page.get_by_test_id("download-glb").get_attribute("href")
            glb = await page.request.get(glb_url)
            assert glb.ok and (await glb.body())[:4] == b"glTF"
            await page.screenshot(path=str(ARTIFACTS / "playground-preview.png"))

            # The preview set data-loaded; clear it, so the check below waits for the refined model's own load.
            await page.get_by_test_id("viewer").evaluate("e => e.removeAttribute('data-loaded')")
            await page.get_by_test_id("texture-prompt").fill("red lacquer")
            await page.get_by_test_id("refine").click()
            await expect(page.get_by_test_id("status")).to_have_text("SUCCEEDED", timeout=60_000)
            await expect(page.locator("#task-id")).to_contain_text("text-to-3d-refine")
            await expect(page.get_by_test_id("download-texture-base_color")).to_be_visible()
            await expect(page.get_by_test_id("viewer")).to_have_attribute("data-loaded", "true", timeout=30_000)
            await page.wait_for_timeout(1500)  # let the viewer draw a few frames for the screenshot
            await page.screenshot(path=str(ARTIFACTS / "playground-refine.png"))
            assert errors == []

            # Swagger UI draws operations as they come into view: a tall window shows enough of them at once.
            await page.set_viewport_size({"width": 1100, "height": 4000})
            await page.goto(f"{api.base_url}/docs")  # Swagger UI from vendored files renders every route
            await expect(page.locator(".opblock").first).to_be_visible(timeout=30_000)
            await page.wait_for_function("document.querySelectorAll('.opblock').length >= 19", timeout=30_000)
        finally:
            await browser.close()
