"""The search page in headless Chromium: type a query, see the thumbnails load, follow a person
with "more like this", search by a photo, screenshot it."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from urllib.parse import quote

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


def card_ids(page) -> list[str]:
    return page.eval_on_selector_all("#results .card", "cards => cards.map(c => c.dataset.imageId)")


def feedback_case(http: httpx.Client, quality_root: Path) -> tuple[str, str, str]:
    """(caption, A, B): A and B show one person, A is in the page's top 20 for the caption
    above B, and searching with A as a positive example lifts B (found over the API, so the
    browser test checks the page, not the model)."""
    entries = json.loads((quality_root / "reid_raw.json").read_text())
    by_person: dict[str, list[str]] = {}
    for e in entries:
        if e["split"] == "test":
            by_person.setdefault(str(e["id"]), []).append(e["file_path"])
    captions = [c for e in entries if e["split"] == "test" for c in e["captions"]]
    for caption in captions:
        reply = http.post("/v1/search", json={"query": caption, "top_k": 100}).json()
        ranked = [r["image_id"] for r in reply["results"]]
        person_of = {r["image_id"]: r["person_id"] for r in reply["results"]}
        for a in ranked[:10]:
            others = [i for i in by_person.get(person_of[a], []) if i != a]
            if not others or others[0] not in ranked or ranked.index(others[0]) < ranked.index(a):
                continue
            b = others[0]
            body = {"query": caption, "top_k": 100, "positive_ids": [a]}
            after = [r["image_id"] for r in http.post("/v1/search", json=body).json()["results"]]
            if after.index(b) < ranked.index(b) - 1 and after.index(b) < 19:
                return caption, a, b
    raise AssertionError("no caption whose feedback lifts the person: is the bundle trained?")


def test_more_like_this_and_not_this_person(
    browser, server: ServiceProcess, quality_root: Path, tmp_path: Path
) -> None:
    """Click "more like this" on one image of a person: it leaves the results, becomes a chip,
    and the person's other image rises; the state survives a reload; the chip is removed with
    the keyboard; "not this person" and a suggestion work too."""
    with httpx.Client(base_url=server.url, timeout=30) as http:
        caption, a, b = feedback_case(http, quality_root)
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.goto(server.url + "/")
    page.wait_for_selector("#status.ok", timeout=30_000)
    page.fill("#query", caption)
    page.press("#query", "Enter")  # the keyboard submits
    page.wait_for_selector("#results .card", timeout=30_000)
    before = card_ids(page)
    assert a in before
    rank_b = before.index(b) if b in before else len(before)

    page.click(f'#results .card[data-image-id="{a}"] button.more')
    page.wait_for_selector("#positive-chips .chip", timeout=30_000)
    page.wait_for_function(
        "a => ![...document.querySelectorAll('#results .card')].some(c => c.dataset.imageId === a)",
        arg=a,
        timeout=30_000,
    )
    after = card_ids(page)
    assert a not in after and b in after and after.index(b) < rank_b, (before, after)
    assert a in page.inner_text("#positive-chips")
    assert f"pos={quote(a, safe='')}" in page.url
    page.screenshot(path=str(shot_dir(tmp_path) / "search_page_feedback.png"), full_page=False)

    page.reload()  # the URL holds the state: the same search comes back
    page.wait_for_selector("#positive-chips .chip", timeout=30_000)
    page.wait_for_function(
        "n => document.querySelectorAll('#results .card').length === n", arg=20, timeout=30_000
    )
    assert card_ids(page) == after and page.input_value("#query") == caption

    page.focus("#positive-chips .chip-remove")
    page.keyboard.press("Enter")
    page.wait_for_function(
        "a => [...document.querySelectorAll('#results .card')].some(c => c.dataset.imageId === a)",
        arg=a,
        timeout=30_000,
    )
    assert page.locator("#positive-chips .chip").count() == 0 and "pos=" not in page.url

    first = card_ids(page)[0]
    page.click(f'#results .card[data-image-id="{first}"] button.not')
    page.wait_for_selector("#negative-chips .chip", timeout=30_000)
    page.wait_for_function(
        "a => ![...document.querySelectorAll('#results .card')].some(c => c.dataset.imageId === a)",
        arg=first,
        timeout=30_000,
    )
    assert "neg=" in page.url

    page.wait_for_selector("#suggestions:not([hidden]) .suggestion", timeout=30_000)
    suggestion = page.locator("#suggestion-chips .suggestion").first
    phrase = suggestion.inner_text().removeprefix("+ ").strip()
    suggestion.click()
    page.wait_for_function(
        "p => document.querySelector('#query').value.endsWith(', ' + p)", arg=phrase
    )
    assert not errors, errors
    page.close()


def test_search_by_photo_from_the_file_picker(
    browser, server: ServiceProcess, quality_root: Path
) -> None:
    entries = json.loads((quality_root / "reid_raw.json").read_text())
    target = next(e["file_path"] for e in entries if e["split"] == "test")
    page = browser.new_page()
    page.goto(server.url + "/")
    page.wait_for_selector("#status.ok", timeout=30_000)
    page.set_input_files("#photo", str(quality_root / "imgs" / target))
    page.wait_for_selector("#photo-chips .chip", timeout=30_000)
    page.wait_for_selector("#results .card", timeout=30_000)
    assert card_ids(page)[0] == target  # the gallery's copy of the same picture
    assert "1 example" in page.inner_text("#summary")
    page.close()
