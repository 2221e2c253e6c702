"""The audit trail: every audited action with its key name, paging and filters, the export CLI,
append-only storage, and group commit under concurrent writers."""

from __future__ import annotations

import json
import sqlite3
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.access.audit import AuditLog, Entry
from service.access.audit_cli import main as audit_main
from service.access.keys import create_key
from service.app import create_app
from service.settings import Settings
from tests.service.support import KEY, jpeg, wait_ready


@pytest.fixture(scope="module")
def keyed(make_settings: Callable[..., Settings], tmp_path_factory) -> Iterator[tuple]:
    """A closed app (no open reads) with a reader and an admin key from a keys file."""
    keys = tmp_path_factory.mktemp("keys") / "keys.json"
    reader = {"X-API-Key": create_key(keys, "rita", "reader")}
    admin = {"X-API-Key": create_key(keys, "ada", "admin")}
    settings = make_settings(open_reads=False, keys_file=keys)
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        yield client, reader, admin


def test_each_audited_action_is_recorded_with_its_key(keyed) -> None:
    client, reader, admin = keyed
    found = client.post("/v1/search", json={"query": "a man in red", "top_k": 3}, headers=reader)
    assert found.status_code == 200
    returned = [h["image_id"] for h in found.json()["results"]]
    image_id = returned[0]
    assert client.get(f"/v1/gallery/{image_id}/image?thumb=1", headers=reader).status_code == 200
    photo = {"image": ("me.jpg", jpeg(), "image/jpeg")}
    assert client.post("/v1/search/image", files=photo, headers=reader).status_code == 200
    added = client.post("/v1/gallery", files={"files": ("a.jpg", jpeg((1, 2, 3)))}, headers=KEY)
    new_id = added.json()["added"][0]["image_id"]
    assert client.delete(f"/v1/gallery/{new_id}", headers=admin).status_code == 204

    entries = client.get("/v1/audit", params={"limit": 1000}, headers=admin).json()["entries"]
    actions = [(e["action"], e["key_name"]) for e in entries]
    assert actions[-5:] == [
        ("search", "rita"),
        ("view", "rita"),
        ("image_search", "rita"),
        ("upload", "env:TPS_API_KEY"),
        ("delete", "ada"),
    ]
    search, view, image_search, upload, delete = entries[-5:]
    assert (
        search["details"]["query"] == "a man in red" and search["details"]["returned"] == returned
    )
    assert search["role"] == "reader" and search["client"] == "testclient"
    assert view["details"]["image_id"] == image_id
    assert image_search["details"]["photo"]["name"] == "me.jpg"
    assert upload["details"]["added"] == [new_id] and delete["details"]["image_id"] == new_id


def test_only_admins_read_the_trail(keyed) -> None:
    client, reader, _ = keyed
    assert client.get("/v1/audit").status_code == 401
    assert client.get("/v1/audit", headers=reader).status_code == 403


def test_paging_and_filters(keyed) -> None:
    client, reader, admin = keyed
    for i in range(5):
        client.post("/v1/search", json={"query": f"paging {i}"}, headers=reader)
    seen, cursor = [], 0
    while True:
        params = {"key": "rita", "action": "search", "limit": 2, "cursor": cursor}
        page = client.get("/v1/audit", params=params, headers=admin).json()
        seen += page["entries"]
        if page["next_cursor"] is None:
            break
        cursor = page["next_cursor"]
    ids = [e["id"] for e in seen]
    assert ids == sorted(set(ids)) and all(e["key_name"] == "rita" for e in seen)
    assert [e["details"]["query"] for e in seen][-5:] == [f"paging {i}" for i in range(5)]
    later = client.get("/v1/audit", params={"since": "2999-01-01T00:00:00"}, headers=admin)
    assert later.json() == {"entries": [], "next_cursor": None}
    bad = client.get("/v1/audit", params={"limit": 0}, headers=admin)
    assert bad.status_code == 422
    # Times read as everywhere else in the API: lower-case t and z too; nonsense is a 422.
    lower = client.get("/v1/audit", params={"since": "2999-01-01t00:00:00z"}, headers=admin)
    assert lower.json() == {"entries": [], "next_cursor": None}
    noon = client.get("/v1/audit", params={"since": "noon"}, headers=admin)
    assert noon.status_code == 422 and "since must be an ISO 8601 time" in noon.text


def test_export_cli_writes_jsonl(keyed, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    client, _, _ = keyed
    db = client.app.state.settings.audit_path
    out = tmp_path / "audit.jsonl"
    assert audit_main(["export", "--db", str(db), "--key", "rita", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows and all(r["key_name"] == "rita" for r in rows)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600  # who searched for whom: private
    assert capsys.readouterr().err == f"exported {len(rows)} audit entries\n"
    lower = ["--since", "2999-01-01t00:00z"]  # read as every other time: lower case too
    assert audit_main(["export", "--db", str(db), *lower, "--out", "-"]) == 0
    assert capsys.readouterr().err == "exported 0 audit entries\n"
    assert audit_main(["export", "--db", str(db), "--since", "yesterday", "--out", "-"]) == 2
    assert capsys.readouterr().err.startswith("error: not an ISO 8601 time")


def test_the_trail_is_append_only_and_groups_commits(tmp_path: Path) -> None:
    trail = AuditLog(tmp_path / "a.sqlite")
    try:
        ids: list[int] = []
        lock = threading.Lock()

        def write(n: int) -> None:
            for i in range(25):
                entry_id = trail.record_now(Entry(f"k{n}", "reader", None, "search", {"i": i}))
                with lock:
                    ids.append(entry_id)

        threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(ids) == list(range(1, 201))
        assert len(trail.read(key="k3")) == 25
        conn = sqlite3.connect(trail.path)
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("UPDATE audit SET key_name = 'someone else'")
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.close()
        assert trail.sweep(cutoff=0.0, key_name="retention") == 0  # nothing that old
        assert trail.sweep(cutoff=2e9, key_name="retention") == 200
        [left] = trail.read()
        assert left["action"] == "audit_retention" and left["details"]["removed_entries"] == 200
    finally:
        trail.close()


def test_reading_the_trail_is_itself_audited(keyed) -> None:
    client, _, admin = keyed
    params = {"key": "rita", "action": "search", "limit": 3}
    page = client.get("/v1/audit", params=params, headers=admin).json()
    reads = client.get("/v1/audit", params={"action": "audit_read"}, headers=admin).json()
    read = reads["entries"][-1]  # a read's own entry is written after it has read
    assert read["key_name"] == "ada" and read["role"] == "admin"
    assert read["details"]["filters"] == {"key": "rita", "action": "search", "limit": 3}
    assert read["details"]["returned"] == len(page["entries"])


def test_swept_entries_leave_no_trace_in_the_trail_files(tmp_path: Path) -> None:
    trail = AuditLog(tmp_path / "a.sqlite")
    try:
        for i in range(50):
            trail.record_now(Entry("k", "reader", None, "search", {"query": f"needle-{i:03d}"}))
        assert trail.sweep(cutoff=2e9, key_name="retention") == 50
        files = list(tmp_path.glob("a.sqlite*"))  # while the trail is open: its WAL too
        assert len(files) == 3
        for path in files:
            assert b"needle-" not in path.read_bytes(), path.name
    finally:
        trail.close()


def test_the_trail_forgets_after_a_year_by_default(make_settings: Callable[..., Settings]) -> None:
    """Without TPS_AUDIT_RETENTION_DAYS the server still sweeps the trail (365 days)."""
    import time

    settings = make_settings()
    assert settings.audit_retention_days == 365
    old = time.time() - 400 * 86_400.0
    trail = AuditLog(settings.audit_path)
    try:
        trail.record_now(Entry("rita", "reader", None, "search", {"query": "long ago"}, old))
        trail.record_now(Entry("rita", "reader", None, "search", {"query": "last month"}))
    finally:
        trail.close()
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        deadline = time.monotonic() + 20
        while not client.app.state.audit.read(action="audit_retention"):
            assert time.monotonic() < deadline, "the start-up sweep never swept the trail"
            time.sleep(0.05)
        queries = [e["details"]["query"] for e in client.app.state.audit.read(action="search")]
    assert queries == ["last month"]
