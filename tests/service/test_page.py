"""The page, its icon and /docs: served from this package (no CDN), with a Content-Security-Policy
that allows only this server's files and frame options that forbid framing."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from tests.service.support import wait_ready


@pytest.fixture(scope="module")
def page_client(make_settings) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings())) as client:
        wait_ready(client)
        yield client


@pytest.mark.parametrize("path", ["/", "/docs"])
def test_html_pages_forbid_framing_and_foreign_sources(page_client: TestClient, path: str) -> None:
    reply = page_client.get(path)
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/html")
    assert reply.headers["x-frame-options"] == "DENY"
    policy = reply.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    # Every script, style and icon the page names is one of ours.
    for url in re.findall(r'(?:src|href)="([^"]+)"', reply.text):
        assert url.startswith("/"), url
        assert page_client.get(url).status_code == 200, url


def test_docs_load_nothing_from_a_cdn(page_client: TestClient) -> None:
    docs = page_client.get("/docs").text
    assert "cdn" not in docs.lower() and "/openapi.json" in docs
    assert page_client.get("/redoc").status_code == 404
    assert page_client.get("/openapi.json").status_code == 200


def test_the_favicon_is_served(page_client: TestClient) -> None:
    icon = page_client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/svg+xml"
    assert icon.content.startswith(b"<svg")


def test_the_prompt_is_hidden_by_its_attribute() -> None:
    """`.key-form { display: flex }` must not override `hidden`."""
    from service.routes.page import STATIC_DIR

    css = (STATIC_DIR / "style.css").read_text()
    assert "[hidden] { display: none !important; }" in css
