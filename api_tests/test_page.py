"""The search page in headless Chromium: type a query, see the thumbnails load, screenshot it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import httpx
import pytest

from support.server import ServiceProcess

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.is_file(),
    reason=f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)",
)


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with (
        tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile,
        sync_api.sync_playwright() as pw,
    ):
        context = pw.chromium.launch_persistent_context(
            profile,
            executable_path=str(CHROMIUM),
            headless=True,
            args=FLAGS,
            viewport={"width": 1280, "height": 900},
        )
        yield context
        context.close()


def shot_dir(tmp_path: Path) -> Path:
    """Screenshots go to $TPS_SCREENSHOT_DIR when set (CI artefacts), else the test's tmp dir."""
    out = Path(os.environ.get("TPS_SCREENSHOT_DIR", tmp_path))
    out.mkdir(parents=True, exist_ok=True)
    return out


def test_query_shows_loaded_thumbnails(browser, server: ServiceProcess, tmp_path: Path) -> None:
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.goto(server.url + "/")
    page.wait_for_selector("#status.ok", timeout=30_000)
    page.fill("#query", "a woman wearing a red coat and carrying a white bag")
    page.click("#search-button")
    page.wait_for_selector("#results .card img", timeout=30_000)
    page.wait_for_function(
        "() => [...document.querySelectorAll('#results img')]"
        ".every(img => img.complete && img.naturalWidth > 0)",
        timeout=30_000,
    )
    gallery = httpx.get(server.url + "/v1/info").json()["index"]["count"]
    assert page.locator("#results .card").count() == min(20, gallery)  # 20: the page's default
    widths = page.eval_on_selector_all("#results img", "imgs => imgs.map(i => i.naturalWidth)")
    assert all(w > 0 for w in widths)
    assert page.locator("#results .card .score").first.inner_text().startswith(("0.", "-0."))
    assert "person" in page.locator("#results .card .who").first.inner_text()
    assert "results in" in page.inner_text("#summary")
    assert not errors, errors
    page.screenshot(path=str(shot_dir(tmp_path) / "search_page.png"), full_page=True)
    page.close()


def test_empty_search_is_not_sent_and_errors_are_shown(browser, server: ServiceProcess) -> None:
    page = browser.new_page()
    page.goto(server.url + "/")
    page.wait_for_selector("#status.ok", timeout=30_000)
    page.fill("#query", "x" * 1200)
    page.click("#search-button")
    page.wait_for_selector("#search-error:not([hidden])", timeout=10_000)
    assert "limit is 1000" in page.inner_text("#search-error")
    page.close()


def test_narrow_screen_layout(browser, server: ServiceProcess, tmp_path: Path) -> None:
    page = browser.new_page()
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(server.url + "/")
    page.wait_for_selector("#status.ok", timeout=30_000)
    page.fill("#query", "a man in a blue shirt")
    page.click("#search-button")
    page.wait_for_selector("#results .card img", timeout=30_000)
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= 390, "the page must not scroll sideways on a phone"
    page.screenshot(path=str(shot_dir(tmp_path) / "search_page_narrow.png"), full_page=False)
    page.close()
