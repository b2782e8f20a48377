"""The studio in a real headless Chromium, at 1280x800: a photo becomes a rigged, animated character (photo -> 3D ->
remesh -> rig -> animate -> download), a prompt finds an existing model and reuses it (or, without pgvector, says
why it cannot), pictures and views become models that every operation and the parts tools work on, and a task no
worker can take says so. One screenshot per step goes to test-artifacts/studio-*.png for a person to look at."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import pytest
import pytest_asyncio
from PIL import Image

from tests.conftest import Api, Caller
from tests.test_playground_browser import CHROMIUM, FLAGS

pytestmark = [pytest.mark.asyncio, pytest.mark.slow, pytest.mark.timeout(600)]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
WAVE = 28  # Big_Wave_Hello in the animation library
PREVIEWS = (0, 1, 28, 30)  # Idle, Walking_Woman, Big_Wave_Hello, Casual_Walk
TASK_S = 120_000  # ms a task may take on two busy cores (rigging is the slowest, ~10-20 s)


def figure_png() -> bytes:
    """A front photo of a person in a T-pose on a transparent background: the reference character, rendered."""
    from inference.motion.pose import render_front
    from inference.motion.reference_character import build_character

    mesh, _ = build_character(pose="T", style="textured")
    view = render_front(mesh, size=512, background=(255, 255, 255))
    alpha = np.where(view.face >= 0, 255, 0).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(np.dstack([view.image, alpha])).save(out, format="PNG")
    return out.getvalue()


@pytest_asyncio.fixture(scope="module")
async def browser() -> AsyncIterator[Any]:
    """One Chromium for the module (each test gets its own context)."""
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing; .ci/run installs Debian's chromium package")
        pytest.skip("no chromium here (apt-get install chromium)")
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield launched
        await launched.close()


@pytest.fixture(scope="module")
def previews(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few catalogue previews, rendered once for the module (the worker's start-up render is off in tests)."""
    from inference.jobs.previews import render_missing_previews

    root = tmp_path_factory.mktemp("previews")
    assert render_missing_previews(root, only=list(PREVIEWS)) == len(PREVIEWS)
    return root


@pytest.fixture
def studio_settings(settings, previews: Path):  # type: ignore[no-untyped-def]
    """Short steps (progress still arrives as events), turntable videos on, the previews in this test's store."""
    from app.tasks.animations import preview_path

    settings.procedural_step_delay_s = 0.03
    settings.turntable_video = True
    for action_id in PREVIEWS:
        target = preview_path(settings.assets_path, action_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(preview_path(previews, action_id), target)
    return settings


@pytest_asyncio.fixture
async def page(browser, api: Api, caller: Caller) -> AsyncIterator[Any]:  # type: ignore[no-untyped-def]
    """A laptop-sized page at /studio with the caller's key entered; page errors fail the test."""
    from playwright.async_api import expect

    context = await browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # The browser logs every refused request ("Failed to load resource": a preview not rendered, a 400 on purpose).
    page.on("console", lambda msg: msg.type == "error" and "Failed to load resource" not in msg.text
            and errors.append(msg.text))  # fmt: skip
    await page.goto(f"{api.base_url}/studio")
    await page.get_by_test_id("api-key").fill(caller.key)
    await page.get_by_test_id("key-save").click()
    await expect(page.locator("body")).to_have_attribute("data-ready", "true", timeout=30_000)
    await history_loaded(page)
    yield page
    await context.close()
    assert errors == [], errors


async def history_loaded(page: Any) -> None:
    """Wait for the History's load at start: one finishing later would redraw the rows a test is working on."""
    from playwright.async_api import expect

    loaded = re.compile("newest of each type|No tasks yet")
    await expect(page.get_by_test_id("history-status")).to_have_text(loaded, timeout=30_000)


async def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    await page.wait_for_timeout(800)  # let the viewer draw a few frames
    await page.screenshot(path=str(ARTIFACTS / f"studio-{name}.png"))


async def data_transfer(page: Any, content: bytes, name: str, mime: str) -> Any:
    """A DataTransfer holding one file, as a drop or a paste carries it."""
    return await page.evaluate_handle(
        """([b64, name, type]) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], name, { type }));
            return dt;
        }""",
        [base64.b64encode(content).decode(), name, mime],
    )


async def finished(page: Any, task_type: str, after: str | None = None) -> str:
    """Wait until the model panel shows a SUCCEEDED task of `task_type` (other than `after`); its id. Fails at once
    with the alert line's words when the studio reports an error instead."""
    from playwright.async_api import expect

    await page.wait_for_function(
        """([type, after]) => {
            const shown = (id) => document.querySelector(`[data-testid="${id}"]`)?.textContent;
            const done = shown("shown-type") === type && shown("shown-status") === "SUCCEEDED";
            return !document.getElementById("alert").hidden || (done && shown("shown-id") !== after);
        }""",
        arg=[task_type, after],
        timeout=TASK_S,
    )
    await expect(page.get_by_test_id("alert")).to_be_hidden()
    return await page.get_by_test_id("shown-id").inner_text()


async def shown(page: Any, task_type: str, after: str | None = None) -> str:
    """As `finished`, and the task's model loaded in the viewer."""
    from playwright.async_api import expect

    task_id = await finished(page, task_type, after)
    await expect(page.get_by_test_id("viewer")).to_have_attribute("data-loaded", "true", timeout=30_000)
    return task_id


async def streamed(page: Any, task_id: str) -> list[dict[str, Any]]:
    return await page.evaluate("(id) => (window.studioEvents || []).filter((e) => e.id === id)", task_id)


async def test_photo_to_an_animated_character(
    studio_settings,
    api: Api,
    caller: Caller,
    worker_up,
    page: Any,  # type: ignore[no-untyped-def]
) -> None:
    from playwright.async_api import expect

    await expect(page.get_by_test_id("balance")).to_have_text("Balance: 1000 credits")
    await expect(page.get_by_test_id("pool-default")).to_have_text("default online")
    await page.locator("#capabilities summary").click()  # what runs here: every resource's models, pools, prices
    await expect(page.get_by_test_id("capabilities-rows").locator("tr", has_text="auto-rig").first).to_be_visible()
    await shot(page, "0-start")
    await page.locator("#capabilities summary").click()
    photo = figure_png()

    # A pasted photo, then a dropped one (it replaces the first).
    await page.get_by_test_id("tab-photo").click()
    pasted = await data_transfer(page, photo, "clipboard.png", "image/png")
    await page.evaluate("(dt) => document.dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt }))", pasted)
    await expect(page.get_by_test_id("photo-name")).to_have_text(f"clipboard.png ({round(len(photo) / 1024)} KB)")
    dropped = await data_transfer(page, photo, "person.png", "image/png")
    await page.get_by_test_id("photo-drop").dispatch_event("drop", {"dataTransfer": dropped})
    await expect(page.get_by_test_id("photo-name")).to_contain_text("person.png")
    await expect(page.get_by_test_id("photo-preview")).to_be_visible()
    await shot(page, "1-photo")

    await page.get_by_test_id("photo-create").click()
    model_id = await shown(page, "image-to-3d")
    events = await streamed(page, model_id)
    assert len(events) >= 2 and events[-1]["status"] == "SUCCEEDED", "progress came through EventSource"
    for view in ("front", "right", "back", "left"):
        await expect(page.get_by_test_id(f"view-{view}")).to_be_visible()
    await expect(page.get_by_test_id("turntable")).to_have_attribute("src", re.compile(re.escape(model_id)))
    await expect(page.get_by_test_id("photo-status")).to_contain_text("Image to 3D: done (30 credits)")
    await shot(page, "2-photo-to-3d")

    await page.get_by_test_id("remesh-faces").fill("6000")
    await page.get_by_test_id("remesh-submit").click()
    remesh_id = await shown(page, "remesh")
    await expect(page.get_by_test_id("download-glb")).to_be_visible()
    await shot(page, "3-remesh")

    await page.get_by_test_id("tab-character").click()
    await expect(page.get_by_test_id("rig-submit")).to_be_enabled()
    await page.get_by_test_id("rig-submit").click()
    rig_id = await shown(page, "rig")
    await expect(page.get_by_test_id("rig-current")).to_contain_text(rig_id[-8:])
    await shot(page, "4-rig")

    # The catalogue: a search narrows it, a rendered preview shows, the action plays on the character.
    await page.get_by_test_id("library-search").fill("wave")
    wave = page.get_by_test_id(f"action-{WAVE}")
    preview = wave.locator("img")
    await expect(preview).to_be_visible()
    await preview.scroll_into_view_if_needed()  # loading="lazy": it loads once in view
    await expect(preview).to_have_js_property("complete", True)
    assert await preview.evaluate("img => img.naturalWidth") > 0
    await wave.click()
    await expect(wave).to_have_attribute("aria-pressed", "true")
    await page.get_by_test_id("animate-submit").click()
    animation_id = await shown(page, "animate")
    viewer = page.get_by_test_id("viewer")
    await expect(viewer).to_have_attribute("data-animations", "1")
    await expect(page.get_by_test_id("clip-toggle")).to_have_text("Pause")  # playing
    assert await viewer.evaluate("v => !v.paused")
    await shot(page, "5-animate")

    async with page.expect_download() as download_info:
        await page.get_by_test_id("download-animation-glb").click()
    download = await download_info.value
    assert download.suggested_filename.endswith(".glb")
    assert (await asyncio.to_thread(Path(await download.path()).read_bytes))[:4] == b"glTF"

    # A motion from a sentence, applied to the same character.
    await page.get_by_test_id("motion-prompt").fill("a person walks forward and then waves")
    await page.get_by_test_id("motion-submit").click()
    motion_id = await shown(page, "animate", after=animation_id)
    await expect(page.get_by_test_id("motion-status")).to_contain_text("done")
    await expect(viewer).to_have_attribute("data-animations", "1")
    assert await viewer.evaluate("v => !v.paused")

    # The history lists every task with its cost; deleting one asks first, then it is gone from the API too.
    await page.locator("#history-panel").scroll_into_view_if_needed()
    for task_id, cost in ((model_id, "30 credits"), (remesh_id, "5 credits"), (rig_id, "5 credits"),
                          (animation_id, "3 credits"), (motion_id, "3 credits")):  # fmt: skip
        await expect(page.get_by_test_id(f"history-cost-{task_id}")).to_have_text(cost)
        await expect(page.get_by_test_id(f"history-status-{task_id}")).to_have_text("SUCCEEDED")
    delete = page.get_by_test_id(f"history-delete-{remesh_id}")
    await delete.click()
    await expect(delete).to_have_text("Press again to delete")
    await delete.click()
    await expect(page.get_by_test_id(f"history-row-{remesh_id}")).to_have_count(0)
    gone = await api.client.get(f"/openapi/v1/remesh/{remesh_id}", headers=caller.headers)
    assert gone.status_code == 404
    await shot(page, "6-history")


async def has_pgvector(database_url: str) -> bool:
    conn = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        return bool(await conn.fetchval("SELECT 1 FROM pg_extension WHERE extname = 'vector'"))
    finally:
        await conn.close()


async def test_prompt_finds_and_reuses_a_model(
    studio_settings,
    api: Api,
    caller: Caller,
    worker_up,
    page: Any,  # type: ignore[no-untyped-def]
) -> None:
    from playwright.async_api import expect

    # The key stays in the tab: a reload starts the studio with it.
    await expect(page.get_by_test_id("api-key")).to_have_value(caller.key)
    await page.reload()
    await expect(page.locator("body")).to_have_attribute("data-ready", "true", timeout=30_000)
    await history_loaded(page)
    await expect(page.get_by_test_id("api-key")).to_have_value(caller.key)
    await expect(page.get_by_test_id("key-status")).to_have_text(f"key …{caller.key[-4:]} (this tab only)")
    await page.keyboard.press("Tab")
    await expect(page.get_by_test_id("skip-to-model")).to_be_focused()

    # Keyboard: arrow keys move between the Create tabs, and only the chosen panel shows.
    await page.get_by_test_id("tab-prompt").focus()
    await page.keyboard.press("ArrowRight")
    await expect(page.get_by_test_id("tab-photo")).to_be_focused()
    await expect(page.get_by_test_id("tab-photo")).to_have_attribute("aria-selected", "true")
    await expect(page.locator("#create-photo")).to_be_visible()
    await expect(page.locator("#create-prompt")).to_be_hidden()
    await page.keyboard.press("ArrowLeft")
    await page.get_by_test_id("prompt").fill("a wooden chair")
    await page.get_by_test_id("prompt-create").click()
    chair_id = await shown(page, "text-to-3d-preview")
    await page.get_by_test_id("refine-prompt").fill("red lacquer")
    await page.get_by_test_id("refine-create").click()
    await shown(page, "text-to-3d-refine")
    await expect(page.get_by_test_id("download-texture-base-color")).to_be_visible()
    await expect(page.get_by_test_id("refine-create")).to_be_disabled()  # a refine is not a preview

    # The API's own words for a refused request: a search needs words or a picture.
    await page.get_by_test_id("search-query").fill("")
    await page.get_by_test_id("search-submit").click()
    await expect(page.get_by_test_id("alert")).to_have_text("Search: query or image_url is required")

    await page.get_by_test_id("prompt").fill("a chair made of wood")
    if not await has_pgvector(studio_settings.database_url):
        # CI's second pass (PostgreSQL without pgvector): the studio says so plainly, and generating still works.
        await page.get_by_test_id("prompt-search").click()
        await expect(page.get_by_test_id("search-status")).to_contain_text("needs the pgvector extension")
        await shot(page, "7-search-unavailable")
        return
    # The worker indexes a model right after it succeeds: ask again until the chair is found.
    # One search at a time: the next starts once the last one's results are in (a retry's words are no answer).
    hit = page.get_by_test_id("hit-0-caption")
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        await page.get_by_test_id("prompt-search").click()
        await expect(page.get_by_test_id("search-results")).not_to_have_attribute("aria-busy", "true")
        if await hit.count() or asyncio.get_running_loop().time() > deadline:
            break
        await page.wait_for_timeout(1000)
    await expect(hit).to_have_text("a wooden chair")
    await shot(page, "7-search")
    await page.get_by_test_id("hit-0-reuse").click()
    await expect(page.get_by_test_id("search-status")).to_contain_text("Reused your model")
    assert await shown(page, "text-to-3d-preview") == chair_id
    await expect(page.get_by_test_id("remesh-submit")).to_be_enabled()

    # Reuse at create: a match above the bar answers at once, at the `retrieved` price, and says where from.
    await page.get_by_test_id("prompt-retrieve").check()
    await page.get_by_test_id("prompt-retrieve-score").fill("0.5")
    await page.get_by_test_id("prompt-create").click()
    await expect(page.get_by_test_id("retrieved-from")).to_contain_text("reused: generated asset", timeout=TASK_S)
    reused_id = await shown(page, "text-to-3d-preview")
    assert reused_id != chair_id
    await expect(page.get_by_test_id("model-meta")).to_contain_text("2 credits")
    await shot(page, "8-reused")


async def test_pictures_views_parts_and_print(
    studio_settings,
    api: Api,
    caller: Caller,
    worker_up,
    page: Any,  # type: ignore[no-untyped-def]
) -> None:
    from playwright.async_api import expect

    # Views are read in order (front, right, back, left): a gap is explained and blocks the button.
    photo = figure_png()
    await page.get_by_test_id("tab-views").click()
    for slot in (0, 2):
        dropped = await data_transfer(page, photo, f"view{slot}.png", "image/png")
        await page.get_by_test_id(f"view-{slot}-drop").dispatch_event("drop", {"dataTransfer": dropped})
    await expect(page.get_by_test_id("views-hint")).to_contain_text("Fill the views in order")
    await expect(page.get_by_test_id("views-create")).to_be_disabled()
    await page.get_by_test_id("view-2-clear").click()
    await expect(page.get_by_test_id("views-create")).to_be_enabled()

    # A prompt through pictures: three views of one object, then a model from all of them.
    await page.get_by_test_id("tab-image").click()
    await page.get_by_test_id("image-prompt").fill("a red robot toy")
    await page.get_by_test_id("image-views").check()
    await page.get_by_test_id("image-create").click()
    for i in range(3):
        await expect(page.get_by_test_id(f"picture-{i}")).to_be_attached(timeout=TASK_S)
    await expect(page.locator("#pictures img").first).to_have_js_property("complete", True)
    await shot(page, "9-pictures")
    await page.get_by_test_id("pictures-to-3d").click()
    await shown(page, "multi-image-to-3d")

    # Every operation, each with its main option, in a row: each result is what the next one works on.
    await page.get_by_test_id("remesh-faces").fill("5000")
    await page.get_by_test_id("remesh-submit").click()
    await shown(page, "remesh")
    await page.get_by_test_id("convert-obj").check()
    await page.get_by_test_id("convert-submit").click()
    await shown(page, "convert")
    for fmt in ("glb", "fbx", "obj"):
        await expect(page.get_by_test_id(f"download-{fmt}")).to_be_visible()
    await page.get_by_test_id("resize-height").fill("0.5")
    await page.get_by_test_id("resize-submit").click()
    await shown(page, "resize")
    await page.get_by_test_id("uv-submit").click()
    await shown(page, "uv-unwrap")
    await page.get_by_test_id("retexture-submit").click()
    await shown(page, "retexture")
    await page.get_by_test_id("multicolor-colors").fill("3")  # from the texture: before repair drops it
    await page.get_by_test_id("multicolor-submit").click()
    await finished(page, "print-multi-color")
    await expect(page.get_by_test_id("download-3mf")).to_be_visible()
    await expect(page.get_by_test_id("viewer-label")).to_contain_text("no GLB")
    await shot(page, "10-multicolor")
    await page.get_by_test_id("repair-submit").click()
    await shown(page, "print-repair")

    # Parts in colours, one part alone, then completed; a printability report of the result.
    await page.get_by_test_id("tab-parts").click()
    await page.get_by_test_id("segment-count").fill("3")
    await page.get_by_test_id("segment-submit").click()
    await shown(page, "mesh-segmentation")
    legend = page.get_by_test_id("parts-legend")
    await expect(legend.locator("li")).to_have_count(3)
    await expect(page.get_by_test_id("part-0-faces")).to_contain_text("faces")
    await shot(page, "11-segmented")
    await page.get_by_test_id("part-1").click()
    await expect(page.get_by_test_id("viewer-label")).to_have_text("Part 1 alone")
    await expect(page.get_by_test_id("viewer")).to_have_attribute("data-loaded", "true", timeout=30_000)
    await page.get_by_test_id("complete-submit").click()
    await shown(page, "part-completion")
    await expect(legend).to_contain_text("watertight")
    await page.get_by_test_id("tab-ops").click()
    await page.get_by_test_id("analyze-submit").click()
    await expect(page.get_by_test_id("printability-status")).to_have_text(re.compile("healthy|warning|error"),
                                                                          timeout=TASK_S)  # fmt: skip
    await shot(page, "12-printability")

    # The history opens each kind of task where it is worked on: pictures go back to the picker.
    await page.get_by_test_id("tab-prompt").click()
    pictures_row = page.locator('[data-testid^="history-row-"]', has_text="text-to-image")
    await pictures_row.get_by_role("button", name="Open").click()
    await expect(page.get_by_test_id("tab-image")).to_have_attribute("aria-selected", "true")
    await expect(page.get_by_test_id("picture-2")).to_be_attached()


async def test_a_task_no_worker_can_take_says_so_and_can_be_deleted(api: Api, caller: Caller, page: Any) -> None:
    from playwright.async_api import expect

    await expect(page.get_by_test_id("pool-default")).to_have_text("default offline")
    await page.get_by_test_id("prompt-create").click()
    status = page.get_by_test_id("prompt-status")
    await expect(status).to_contain_text("waiting, no worker serves the default pool right now")
    # Screen readers hear the change of state once, without the running counter.
    announced = "Text to 3D preview: waiting, no worker serves the default pool right now"
    await expect(page.get_by_test_id("announce")).to_have_text(announced)
    await expect(page.get_by_test_id("balance")).to_have_text("Balance: 980 credits")
    await shot(page, "13-no-worker")
    # Deleting the unfinished task gives its credits back.
    row = page.locator('[data-testid^="history-row-"]', has_text="text-to-3d-preview")
    await expect(row).to_contain_text("PENDING")
    await row.get_by_role("button", name="Delete").click()
    # A redraw between the two presses (the task's stream, a reload) keeps the question: the second press deletes.
    await page.get_by_test_id("history-refresh").click()
    await expect(page.get_by_test_id("history-status")).to_contain_text("newest of each type")
    await row.get_by_role("button", name="Press again to delete").click()
    await expect(row).to_have_count(0)
    # Its stream answers 404 now: the task's card says it was deleted, and that is no error on the alert line.
    await expect(status).to_have_text("Text to 3D preview: deleted from the History")
    await expect(page.get_by_test_id("alert")).to_be_hidden()
    await expect(page.get_by_test_id("balance")).to_have_text("Balance: 1000 credits")
