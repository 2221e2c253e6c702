"""Security basics against a live server: the key never reaches the log, no route serves a file
the gallery does not list, body limits hold before the body is read, and CORS is off unless
configured. (The constant-time key comparison and CORS when configured: tests/reliability/.)"""

from __future__ import annotations

import time

import httpx
import pytest

from api_tests.reliability.conftest import JSON_LIMIT, UPLOAD_LIMIT
from api_tests.reliability.hostile import MULTIPART, multipart
from api_tests.reliability.rawhttp import (
    connect,
    head_bytes,
    read_reply,
    request,
    stream_until_answered,
)
from api_tests.reliability.support import index_dir_of, noise_image
from support.server import API_KEY, ServiceProcess

WRONG_KEY = "wrong-key-Zq81-would-be-a-real-secret-elsewhere"


def test_the_key_never_reaches_the_log(rel_server: ServiceProcess, rel_http: httpx.Client) -> None:
    """At log level debug, through a successful upload and delete, 401s and reads."""
    body = multipart([(b"k.jpg", noise_image(4242))])
    headers = {"X-API-Key": API_KEY, "content-type": MULTIPART}
    reply = rel_http.post("/v1/gallery", content=body, headers=headers)
    assert reply.status_code == 201
    image_id = reply.json()["added"][0]["image_id"]
    for key in (WRONG_KEY, "", API_KEY[:-1]):
        refused = rel_http.post("/v1/gallery", content=body, headers={**headers, "X-API-Key": key})
        assert refused.status_code == 401
        assert WRONG_KEY not in refused.text and API_KEY not in refused.text
    assert rel_http.get(f"/v1/gallery/{image_id}", headers={"X-API-Key": WRONG_KEY}).is_success
    assert rel_http.delete(f"/v1/gallery/{image_id}", headers={"X-API-Key": API_KEY}).is_success
    metrics = rel_http.get("/metrics").text
    time.sleep(0.5)  # the access log lines of the last requests
    log = rel_server.log_path.read_text()
    assert '"POST /v1/gallery HTTP/1.1" 401' in log, "the requests are not in this log"
    for secret in (API_KEY, WRONG_KEY, API_KEY[:-1]):
        assert secret not in log and secret not in metrics


TRAVERSALS = [
    "/v1/gallery/../../etc/passwd/image",
    "/v1/gallery/%2e%2e/%2e%2e/%2e%2e/etc/passwd/image",
    "/v1/gallery/..%2f..%2f..%2fetc%2fpasswd/image",
    "/v1/gallery//etc/passwd/image",
    "/v1/gallery/%2fetc%2fpasswd/image",
    "/v1/gallery/..%5c..%5cwindows%5cwin.ini/image",
    "/v1/gallery/%00/image",
    "/v1/gallery/a%00b/image",
    "/v1/gallery/../manifest.sqlite/image",
    "/v1/gallery/images/../../index/manifest.sqlite/image",
    "/v1/gallery/p0020/p0020_01.jpg/../../../../etc/passwd/image",
    "/v1/gallery/../../etc/passwd",
    "/static/../service/settings.py",
    "/static/%2e%2e/service/settings.py",
    "/static/..%2fservice%2fsettings.py",
    "/../../etc/passwd",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_no_route_serves_a_file_the_gallery_does_not_list(
    rel_server: ServiceProcess, path: str
) -> None:
    reply = request(rel_server.url, "GET", path)
    assert reply.status in (400, 404), (reply.status, reply.body[:200])
    for leak in (b"root:", b"SQLite format", b"class Settings", b"[fonts]"):
        assert leak not in reply.body


def test_a_listed_image_is_served(rel_server: ServiceProcess, rel_http: httpx.Client) -> None:
    """The control for the traversals above: the same route does serve what the index lists."""
    image_id = next(iter(rel_http.post("/v1/search", json={"query": "a person"}).json()["results"]))
    reply = request(rel_server.url, "GET", f"/v1/gallery/{image_id['image_id']}/image")
    assert reply.status == 200 and len(reply.body) > 100
    assert (index_dir_of(rel_server) / "manifest.sqlite").is_file()


@pytest.mark.parametrize(
    ("path", "limit"), [("/v1/gallery", UPLOAD_LIMIT), ("/v1/search", JSON_LIMIT)]
)
def test_an_announced_huge_body_is_refused_before_it_is_sent(
    rel_server: ServiceProcess, path: str, limit: int
) -> None:
    """Content-Length of 1 TB, 10 bytes sent, the connection left open: the 413 comes at once."""
    with connect(rel_server.url) as sock:
        headers = {"X-API-Key": API_KEY, "Content-Type": MULTIPART, "Content-Length": str(10**12)}
        sock.sendall(head_bytes("POST", path, headers) + b"0123456789")
        started = time.monotonic()
        reply = read_reply(sock)
        waited = time.monotonic() - started
    assert reply.status == 413 and b"over the limit" in reply.body
    assert reply.headers.get("connection") == "close"
    # The body never comes: any answer at all shows the server did not wait for it.
    assert waited < 5.0, f"the server waited {waited:.1f} s for a body it should refuse unread"


def test_a_chunked_body_is_cut_at_the_limit(rel_server: ServiceProcess) -> None:
    """No Content-Length, and a stream that never ends (no last chunk is ever sent): a server
    that read the body before checking its size would never answer."""
    stream_cap = 64 * JSON_LIMIT  # the client's own bound: 4 MB
    with connect(rel_server.url) as sock:
        headers = {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}
        sock.sendall(head_bytes("POST", "/v1/search", headers))
        sent = stream_until_answered(sock, b" " * 8192, max_bytes=stream_cap)
        reply = read_reply(sock)
    assert reply.status == 413 and b"over the limit" in reply.body, reply
    assert JSON_LIMIT < sent < stream_cap, f"answered after {sent:,} bytes"


def test_cors_is_off_by_default(rel_server: ServiceProcess) -> None:
    preflight = request(
        rel_server.url,
        "OPTIONS",
        "/v1/search",
        {
            "Origin": "https://elsewhere.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, x-api-key",
        },
    )
    assert "access-control-allow-origin" not in preflight.headers
    assert preflight.status == 405
    simple = request(rel_server.url, "GET", "/healthz", {"Origin": "https://elsewhere.example"})
    assert simple.status == 200 and "access-control-allow-origin" not in simple.headers


def test_a_request_cannot_forge_an_access_log_line(rel_server: ServiceProcess) -> None:
    """The path is logged decoded: a percent-encoded newline must not start a line of its own."""
    fake = '03:10:00 INFO service.access: 10.9.9.9 "GET /v1/audit HTTP/1.1" 200 key=boss'
    path = "/v1/gallery/x%0A" + fake.replace(" ", "%20").replace('"', "%22")
    assert request(rel_server.url, "GET", path).status == 404
    time.sleep(0.5)  # the access log line is written once the reply has gone out
    lines = rel_server.log_path.read_text().splitlines()
    assert not [line for line in lines if line.startswith(fake[:30])], "a forged line"
    assert any("/v1/gallery/x\\n03:10:00" in line for line in lines)
