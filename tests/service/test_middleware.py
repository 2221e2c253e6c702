"""The access log: one line per request that no request can split or forge."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from tests.service.support import wait_ready

FORGED = (
    '/v1/gallery/x%0A03:10:00 INFO service.access: 10.9.9.9 "GET /v1/audit HTTP/1.1" 200 key=boss'
)


def test_a_path_cannot_write_a_second_log_line(
    make_settings, caplog: pytest.LogCaptureFixture
) -> None:
    with TestClient(create_app(make_settings())) as client:
        wait_ready(client)
        caplog.set_level(logging.INFO, logger="service.access")
        caplog.clear()  # the readiness polls, where another test left the logger at INFO
        client.get(FORGED)
        client.get("/healthz/%0d%1b[31mred%e2%80%a8")
    lines = [r.getMessage() for r in caplog.records if r.name == "service.access"]
    assert len(lines) == 2
    forged, coloured = lines
    assert "\n" not in forged and "\r" not in forged
    assert '/v1/gallery/x\\n03:10:00 INFO service.access: 10.9.9.9 \\"GET' in forged
    assert forged.startswith('testclient "GET /v1/gallery/x\\n03:10:00')
    assert all(c.isprintable() for c in coloured) and "\\r\\x1b[31mred\\u2028" in coloured


def test_printable_leaves_ordinary_text_alone() -> None:
    from service.middleware import printable

    assert printable("/v1/gallery/p0001/01.jpg/image") == "/v1/gallery/p0001/01.jpg/image"
    assert printable("/v1/gallery/café") == "/v1/gallery/café"
    assert printable('a"b\\c\td') == 'a\\"b\\\\c\\td'
