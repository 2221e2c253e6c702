"""Access control, the audit trail and retention over HTTP, on real `python -m service`
processes started with a keys file and no open reads (docs/security.md)."""

from __future__ import annotations

import io
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from PIL import Image

from api_tests.reliability.support import build_small_index
from support.server import API_KEY, REPO, ServiceProcess, free_port, service_env

ROLES = ("reader", "writer", "admin")


def jpeg(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 128), colour).save(out, "JPEG")
    return out.getvalue()


def keys_cli(keys: Path, *argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TPS_KEYS_FILE": str(keys), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "service", "keys", *argv]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)


class Closed:
    """A server that needs keys: one per role, made with the CLI."""

    def __init__(self, server: ServiceProcess, keys: Path, tokens: dict[str, str]) -> None:
        self.server, self.keys, self.tokens = server, keys, tokens

    def http(self, role: str | None = None) -> httpx.Client:
        headers = {"X-API-Key": self.tokens[role]} if role else {}
        return httpx.Client(base_url=self.server.url, headers=headers, timeout=30)


def start_closed(home: Path, bundle: Path, index: Path, **env: str) -> Closed:
    index_dir = home / "index"
    shutil.copytree(index, index_dir)
    keys = home / "keys.json"
    tokens = {}
    for role in ROLES:
        done = keys_cli(keys, "create", "--name", f"{role}-1", "--role", role)
        assert done.returncode == 0, done.stderr
        tokens[role] = done.stdout.strip()
    settings = service_env(bundle, index_dir, TPS_KEYS_FILE=str(keys), **env)
    settings.pop("TPS_OPEN_READS")
    del settings["TPS_API_KEY"]
    server = ServiceProcess(settings, home / "service.log")
    server.start().wait_ready()
    return Closed(server, keys, tokens)


@pytest.fixture(scope="module")
def gallery(tmp_path_factory, random_bundle: Path, synthetic_root: Path) -> Path:
    """What these tests judge is who may do what, not ranking: an untrained bundle will do."""
    return build_small_index(random_bundle, synthetic_root, tmp_path_factory.mktemp("g") / "idx")


@pytest.fixture(scope="module")
def closed(tmp_path_factory, random_bundle: Path, gallery: Path) -> Iterator[Closed]:
    home = tmp_path_factory.mktemp("closed")
    service = start_closed(home, random_bundle, gallery, TPS_INDEX_REFRESH_S="0")
    yield service
    service.server.stop()


def some_image_id(service: Closed) -> str:
    with service.http("reader") as http:
        reply = http.post("/v1/search", json={"query": "a person", "top_k": 1})
        return reply.json()["results"][0]["image_id"]


# Each route class with the least role that may use it (None: no key needed). The docs'
# table says the same.
ROUTES = [
    ("GET", "/healthz", None, None),
    ("GET", "/readyz", None, None),
    ("GET", "/", None, None),
    ("GET", "/static/app.js", None, None),
    ("POST", "/v1/search", {"json": {"query": "a man"}}, "reader"),
    ("POST", "/v1/search/batch", {"json": {"queries": ["a man"]}}, "reader"),
    ("POST", "/v1/search/image", {"files": {"image": ("p.jpg", jpeg((9, 9, 9)))}}, "reader"),
    ("GET", "/v1/info", None, "reader"),
    ("GET", "/v1/gallery/{id}", None, "reader"),
    ("GET", "/v1/gallery/{id}/image?thumb=1", None, "reader"),
    ("POST", "/v1/gallery", {"files": {"person_id": (None, "x")}}, "writer"),  # 422: no files
    ("DELETE", "/v1/gallery/no-such-image", None, "writer"),  # 404 once allowed
    ("POST", "/v1/footage", {"files": {"camera_id": (None, "x")}}, "writer"),  # 422: no file
    ("GET", "/v1/footage/no-such-job", None, "reader"),  # 404 once allowed
    ("GET", "/v1/audit", None, "admin"),
    ("POST", "/v1/retention?dry_run=true&days=100000", None, "admin"),
    ("GET", "/metrics", None, "admin"),
]
RANK = {None: -1, "reader": 0, "writer": 1, "admin": 2}


@pytest.mark.parametrize("method, path, body, needs", ROUTES, ids=[r[1] for r in ROUTES])
def test_each_role_is_allowed_and_refused_where_it_should_be(
    closed: Closed, method: str, path: str, body: dict | None, needs: str | None
) -> None:
    path = path.replace("{id}", some_image_id(closed))
    for role in (None, *ROLES):
        with closed.http(role) as http:
            reply = http.request(method, path, **(body or {}))
        if RANK[role] >= RANK[needs]:
            assert reply.status_code not in (401, 403), (role, reply.text)
            assert reply.status_code < 500, (role, reply.text)
        elif role is None:
            assert reply.status_code == 401, reply.text
            assert reply.headers["www-authenticate"] == "X-API-Key"
        else:
            assert reply.status_code == 403, (role, reply.text)
            assert needs in reply.json()["detail"]
    with closed.http() as http:
        wrong = http.request(method, path, headers={"X-API-Key": "tps_not-a-key"}, **(body or {}))
    assert wrong.status_code == (401 if needs else wrong.status_code)


def test_a_revoked_key_is_refused_at_the_next_request(closed: Closed) -> None:
    done = keys_cli(closed.keys, "create", "--name", "temp", "--role", "reader")
    token = done.stdout.strip()
    with httpx.Client(base_url=closed.server.url, headers={"X-API-Key": token}) as http:
        assert http.get("/v1/info").status_code == 200
        assert keys_cli(closed.keys, "revoke", "temp").returncode == 0
        refused = http.get("/v1/info")
    assert refused.status_code == 401 and "revoked" in refused.json()["detail"]
    listed = keys_cli(closed.keys, "list").stdout
    assert "temp\treader" in listed and "revoked" in listed and token not in listed


def test_the_access_log_names_the_key(closed: Closed) -> None:
    with closed.http("writer") as http:
        http.get("/v1/info")
    line = '"GET /v1/info HTTP/1.1" 200 key=writer-1'
    deadline = time.monotonic() + 10  # the line is written once the reply has gone out
    while line not in (logs := closed.server.logs()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert line in logs
    assert all(token not in logs for token in closed.tokens.values())


def test_retention_removes_exactly_the_images_past_the_cutoff(closed: Closed) -> None:
    now = datetime.now(UTC)
    ages = {"old-1": 400, "old-2": 91, "new-1": 89, "new-2": 1}
    with closed.http("writer") as http:
        before = http.get("/v1/info").json()["index"]["count"]
        for n, (image_id, days) in enumerate(ages.items()):
            data = {"image_id": image_id, "captured_at": (now - timedelta(days=days)).isoformat()}
            files = {"files": ("x.jpg", jpeg((n * 40, 200, 7)))}
            assert http.post("/v1/gallery", files=files, data=data).status_code == 201
    with closed.http("admin") as http:
        done = http.post("/v1/retention", params={"days": 90})
        assert done.status_code == 200, done.text
        assert done.json()["removed"] == ["old-1", "old-2"]
        assert http.get("/v1/info").json()["index"]["count"] == before + 2
        for image_id in ages:
            expected = 404 if image_id.startswith("old") else 200
            assert http.get(f"/v1/gallery/{image_id}").status_code == expected
        trail = http.get("/v1/audit", params={"action": "retention"}).json()["entries"]
        assert trail[-1]["details"]["removed"] == ["old-1", "old-2"]
        assert trail[-1]["key_name"] == "admin-1"
        # The indexed data set (added today, no capture time) is untouched.
        assert http.post("/v1/retention", params={"days": 90}).json()["removed"] == []


def test_a_non_loopback_start_without_keys_is_refused(random_bundle: Path, gallery: Path) -> None:
    port = free_port()
    env = {**os.environ, **service_env(random_bundle, gallery)}
    del env["TPS_API_KEY"]
    env.pop("TPS_KEYS_FILE", None)
    env["TPS_OPEN_READS"] = "false"
    command = [sys.executable, "-m", "service", "--host", "0.0.0.0", "--port", str(port)]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("python -m service: error: no API keys on a non-loopback address")
    assert "Uvicorn running" not in done.stderr
    # Open reads are refused off loopback even with a key.
    env.update(TPS_OPEN_READS="true", TPS_API_KEY=API_KEY)
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "honoured only on a loopback address" in done.stderr
    # The published demo key is refused off loopback (and any key under 32 characters).
    env.update(TPS_OPEN_READS="false", TPS_API_KEY="demo-key")
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    [line] = done.stderr.strip().splitlines()
    assert done.returncode == 2 and "TPS_API_KEY is the published demo key" in line


def test_every_acknowledged_action_survives_a_sigkill(
    tmp_path: Path, random_bundle: Path, gallery: Path
) -> None:
    service = start_closed(tmp_path, random_bundle, gallery, TPS_INDEX_REFRESH_S="0")
    acknowledged: list[tuple[str, str]] = []
    try:
        image_id = some_image_id(service)
        acknowledged.append(("search", "reader-1"))
        with service.http("reader") as reader, service.http("writer") as writer:
            for i in range(5):
                assert reader.post("/v1/search", json={"query": f"crash {i}"}).is_success
                acknowledged.append(("search", "reader-1"))
                assert reader.get(f"/v1/gallery/{image_id}/image").is_success
                acknowledged.append(("view", "reader-1"))
            added = writer.post("/v1/gallery", files={"files": ("a.jpg", jpeg((1, 99, 3)))})
            assert added.status_code == 201
            acknowledged.append(("upload", "writer-1"))
            new_id = added.json()["added"][0]["image_id"]
            assert writer.delete(f"/v1/gallery/{new_id}").status_code == 204
            acknowledged.append(("delete", "writer-1"))
            assert writer.post("/v1/search", json={"query": "the last one"}).is_success
            acknowledged.append(("search", "writer-1"))
            service.server.kill()  # right after the last reply
    finally:
        service.server.kill()
    db = tmp_path / "index" / "images-audit.sqlite"
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT action, key_name, details FROM audit ORDER BY id").fetchall()
    conn.close()
    assert [(a, k) for a, k, _ in rows] == acknowledged
    assert '"the last one"' in rows[-1][2]


@pytest.mark.skipif(not Path("/usr/bin/chromium").is_file(), reason="needs Debian's chromium")
def test_the_page_asks_for_a_key_and_keeps_it_for_the_session(closed: Closed) -> None:
    from api_tests.test_page import CHROMIUM, FLAGS

    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda err: errors.append(str(err)))
        missing: list[str] = []
        page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
        page.goto(closed.server.url + "/")
        page.wait_for_selector("#key-form", state="visible", timeout=30_000)
        assert "needs an API key" in page.inner_text("#key-reason")
        page.fill("#key-input", "tps_wrong")
        page.click("#key-form button")
        page.wait_for_selector("#key-form:not([hidden])", timeout=10_000)
        page.wait_for_function(
            "() => /refused/.test(document.querySelector('#key-reason').textContent)"
        )
        page.fill("#key-input", closed.tokens["reader"])
        page.click("#key-form button")
        page.wait_for_selector("#status.ok", timeout=30_000)
        page.fill("#query", "a person in a coat")
        page.click("#search-button")
        page.wait_for_selector("#results .card img", timeout=30_000)
        # Thumbnails came through fetch with the header, shown as blobs.
        page.wait_for_function(
            "() => [...document.querySelectorAll('#results img')]"
            ".every(img => img.src.startsWith('blob:') && img.complete && img.naturalWidth > 0)",
            timeout=30_000,
        )
        stored = page.evaluate("() => [sessionStorage.getItem('tps-api-key'), localStorage.length]")
        assert stored == [closed.tokens["reader"], 0]
        assert "tps_" not in page.url and "tps_" not in page.evaluate("() => document.cookie")
        assert not page.is_visible("#key-form"), "the prompt stays up once a key is accepted"
        page.click("#forget-key")
        assert page.evaluate("() => sessionStorage.getItem('tps-api-key')") is None
        page.wait_for_selector("#key-form", state="visible", timeout=10_000)
        assert not errors, errors
        assert not missing, missing  # the favicon included
        browser.close()
    with closed.http("admin") as http:
        views = http.get("/v1/audit", params={"key": "reader-1", "action": "view"}).json()
    assert views["entries"], "the page's thumbnail loads are audited under the reader's key"


@pytest.mark.skipif(not Path("/usr/bin/chromium").is_file(), reason="needs Debian's chromium")
def test_the_page_asks_for_no_key_where_reads_are_open(
    tmp_path: Path, random_bundle: Path, gallery: Path
) -> None:
    """`make demo`: reads open on 127.0.0.1, so the first screen shows results and no prompt."""
    from api_tests.test_page import CHROMIUM, FLAGS

    sync_api = pytest.importorskip("playwright.sync_api")
    shutil.copytree(gallery, tmp_path / "index")
    server = ServiceProcess(service_env(random_bundle, tmp_path / "index"), tmp_path / "log.txt")
    server.start().wait_ready()
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
            page = browser.new_page()
            missing: list[str] = []
            page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
            page.goto(server.url + "/")
            page.wait_for_selector("#status.ok", timeout=30_000)
            page.fill("#query", "a person in a coat")
            page.click("#search-button")
            page.wait_for_selector("#results .card img", timeout=30_000)
            assert not page.is_visible("#key-form") and not page.is_visible("#forget-key")
            assert not missing, missing
            browser.close()
    finally:
        server.stop()


class UvicornFactory(ServiceProcess):
    """The docs' other way to serve: `uvicorn --factory service.app:create_app`, with
    uvicorn's own defaults (proxy headers believed from 127.0.0.1)."""

    def start(self) -> UvicornFactory:
        log = open(self.log_path, "a")  # noqa: SIM115 - the child writes to it until stopped
        command = [sys.executable, "-m", "uvicorn", "--factory", "service.app:create_app"]
        command += ["--host", "127.0.0.1", "--port", str(self.port)]
        self.proc = subprocess.Popen(
            command, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        return self


def test_a_forwarded_address_is_not_believed_under_uvicorn_factory(
    tmp_path: Path, random_bundle: Path, gallery: Path
) -> None:
    shutil.copytree(gallery, tmp_path / "index")
    keys = tmp_path / "keys.json"
    tokens = {}
    for role in ("reader", "admin"):
        done = keys_cli(keys, "create", "--name", f"{role}-1", "--role", role)
        tokens[role] = {"X-API-Key": done.stdout.strip()}
    env = service_env(random_bundle, tmp_path / "index", TPS_KEYS_FILE=str(keys))
    del env["TPS_API_KEY"], env["TPS_OPEN_READS"]
    server = UvicornFactory(env, tmp_path / "log.txt").start().wait_ready()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            forged = {"X-Forwarded-For": "10.66.66.66"}
            reply = http.post("/v1/search", json={"query": "q"}, headers=tokens["reader"] | forged)
            assert reply.status_code == 200, reply.text
            trail = http.get("/v1/audit", params={"action": "search"}, headers=tokens["admin"])
            [entry] = trail.json()["entries"]
    finally:
        server.stop()
    assert entry["key_name"] == "reader-1" and entry["client"] == "127.0.0.1"
