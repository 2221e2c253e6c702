"""Retention removes exactly the images past the cutoff (vectors, metadata and uploaded files),
in one commit, audited; the dry run and the CLI do what the endpoint does."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from service.access.retention_cli import main as retention_main
from service.app import create_app
from service.settings import Settings
from tests.service.support import KEY, count, jpeg, wait_ready

OLD = (datetime.now(UTC) - timedelta(days=40)).isoformat()
RECENT = (datetime.now(UTC) - timedelta(days=20)).isoformat()


def add(client: TestClient, colour: tuple[int, int, int], captured_at: str) -> str:
    files = {"files": ("x.jpg", jpeg(colour))}
    reply = client.post("/v1/gallery", files=files, data={"captured_at": captured_at}, headers=KEY)
    assert reply.status_code == 201, reply.text
    return reply.json()["added"][0]["image_id"]


def test_exactly_the_old_images_go(make_settings: Callable[..., Settings]) -> None:
    with TestClient(create_app(make_settings())) as client:
        wait_ready(client)
        before = count(client)
        old = sorted(add(client, (i, 0, 0), OLD) for i in (10, 20))
        recent = add(client, (30, 0, 0), RECENT)
        store = client.app.state.runtime.store
        root = client.app.state.settings.images_path
        old_files = [root / store.get(i).source_path for i in old]  # stored relative to it
        assert all(f.is_file() for f in old_files)

        dry = client.post("/v1/retention", params={"days": 30, "dry_run": True}, headers=KEY)
        assert dry.json()["removed"] == old and count(client) == before + 3
        [listed] = client.get(
            "/v1/audit", params={"action": "retention_dry_run"}, headers=KEY
        ).json()["entries"]  # who looked at what is about to go is recorded too
        assert listed["details"]["removed"] == old and listed["details"]["dry_run"] is True

        assert client.post("/v1/retention", params={"days": 30}).status_code == 401
        done = client.post("/v1/retention", params={"days": 30}, headers=KEY).json()
        assert done["removed"] == old and done["files_deleted"] == 2
        assert count(client) == before + 1
        assert all(store.get(i) is None for i in old) and store.get(recent) is not None
        assert not any(f.exists() for f in old_files)
        assert client.get(f"/v1/gallery/{old[0]}").status_code == 404
        hits = client.post("/v1/search", json={"query": "a person", "top_k": 100}).json()
        assert not set(old) & {h["image_id"] for h in hits["results"]}

        [entry] = client.get("/v1/audit", params={"action": "retention"}, headers=KEY).json()[
            "entries"
        ]
        assert entry["details"]["removed"] == old and entry["key_name"] == "env:TPS_API_KEY"


def test_the_cli_sweeps_with_the_settings(
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = make_settings()
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        old = add(client, (40, 0, 0), OLD)
        recent = add(client, (50, 0, 0), RECENT)
    for name, value in {
        "TPS_BUNDLE": str(settings.bundle),
        "TPS_INDEX_DIR": str(settings.index_dir),
        "TPS_RETENTION_DAYS": "30",
    }.items():
        monkeypatch.setenv(name, value)
    assert retention_main(["--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["removed"] == [old]
    assert retention_main([]) == 0
    assert json.loads(capsys.readouterr().out)["removed"] == [old]
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        assert client.get(f"/v1/gallery/{old}").status_code == 404
        assert client.get(f"/v1/gallery/{recent}").status_code == 200
        [entry] = client.get("/v1/audit", params={"action": "retention"}, headers=KEY).json()[
            "entries"
        ]
        assert entry["key_name"].startswith("cli:") and entry["details"]["removed"] == [old]
    monkeypatch.delenv("TPS_RETENTION_DAYS")
    assert retention_main([]) == 2
    assert capsys.readouterr().err.startswith("error: no retention period")


def test_the_scheduled_sweep_runs_on_its_own(make_settings: Callable[..., Settings]) -> None:
    unset = make_settings()  # an upload past the period is refused: add it before one is set
    with TestClient(create_app(unset)) as client:
        wait_ready(client)
        old = add(client, (60, 0, 0), OLD)
        recent = add(client, (70, 0, 0), RECENT)
    settings = unset.model_copy(update={"retention_days": 30, "retention_interval_s": 0.2})
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        store = client.app.state.runtime.store
        deadline = time.monotonic() + 20
        while store.get(old) is not None:  # reads refuse it at once; the sweep removes it
            assert time.monotonic() < deadline, "the scheduled sweep never removed the old image"
            time.sleep(0.1)
        assert client.get(f"/v1/gallery/{recent}").status_code == 200
        entries = client.get("/v1/audit", params={"action": "retention"}, headers=KEY).json()
        assert [e["details"]["removed"] for e in entries["entries"]] == [[old]]
        assert entries["entries"][0]["key_name"] == "retention"


def test_a_capture_time_in_the_future_does_not_keep_an_image_forever() -> None:
    from index.items import ItemMeta
    from service.access.retention import age_reference

    def item(captured: float | None) -> ItemMeta:
        return ItemMeta("a", None, "a.jpg", "0" * 64, 1_000.0, captured_at=captured)

    assert age_reference(item(None)) == 1_000.0
    assert age_reference(item(500.0)) == 500.0  # captured before it was added: the capture
    assert age_reference(item(9e9)) == 1_000.0  # "captured" after it was added: the upload


def test_expired_images_are_never_served_while_they_wait_for_the_sweep(
    make_settings: Callable[..., Settings],
) -> None:
    """Between two sweeps (hourly by default) footage passes the cutoff: every read path refuses
    it from then on, by the cutoff the sweep itself uses."""
    settings = make_settings()
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        old = add(client, (80, 0, 0), OLD)
        recent = add(client, (90, 0, 0), RECENT)
        # The period begins to apply with no sweep run since: what the hour between sweeps is.
        settings.retention_days = 30
        dry = client.post("/v1/retention", params={"dry_run": True}, headers=KEY).json()
        assert dry["removed"] == [old]
        found = client.post("/v1/search", json={"query": "a person", "top_k": 100}).json()
        ids = [h["image_id"] for h in found["results"]]
        assert old not in ids and recent in ids
        assert [h["rank"] for h in found["results"]] == list(range(1, len(ids) + 1))
        batch = client.post("/v1/search/batch", json={"queries": ["a person"], "top_k": 100})
        assert old not in {h["image_id"] for h in batch.json()["queries"][0]["results"]}
        suggested = client.post(
            "/v1/search", json={"query": "a person", "top_k": 100, "suggest": True}
        ).json()
        assert old not in {h["image_id"] for h in suggested["results"]}
        for path in (f"/v1/gallery/{old}", f"/v1/gallery/{old}/image"):
            assert client.get(path).status_code == 404
            assert client.get(path, params={"thumb": 1}).status_code == 404
        example = client.post("/v1/search", json={"positive_ids": [old]})
        assert example.status_code == 404 and old in example.text
        negative = client.post("/v1/search", json={"query": "a person", "negative_ids": [old]})
        assert negative.status_code == 404
        photo = {"image": ("p.jpg", jpeg((80, 0, 0)), "image/jpeg")}
        by_photo = client.post("/v1/search/image", files=photo, data={"top_k": "100"}).json()
        assert old not in {h["image_id"] for h in by_photo["results"]}
        assert client.get(f"/v1/gallery/{recent}/image").status_code == 200
        # Refused, not yet removed: the sweep does that, and audits it.
        assert client.app.state.runtime.store.get(old) is not None


def test_an_upload_already_past_the_period_is_refused(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(retention_days=30)
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        before = count(client)
        files = {"files": ("x.jpg", jpeg((100, 0, 0)))}
        data = {"captured_at": "2020-01-01T00:00:00Z"}
        reply = client.post("/v1/gallery", files=files, data=data, headers=KEY)
        assert reply.status_code == 422
        assert "retention period" in reply.json()["detail"]
        assert "TPS_RETENTION_DAYS" in reply.json()["detail"]
        assert count(client) == before
        images = settings.images_path
        assert not images.exists() or not [p for p in images.rglob("*") if p.is_file()]
        data = {"captured_at": RECENT}
        assert client.post("/v1/gallery", files=files, data=data, headers=KEY).status_code == 201


def test_removed_rows_leave_no_trace_in_the_manifest_files(
    make_settings: Callable[..., Settings],
) -> None:
    """secure_delete zeroes what a delete frees, and the WAL, which still holds the rows as they
    were written, is checkpointed and truncated."""
    settings = make_settings()
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        old = add(client, (110, 0, 0), OLD)
        sha = client.app.state.runtime.store.get(old).sha256
        done = client.post("/v1/retention", params={"days": 30}, headers=KEY).json()
        assert done["removed"] == [old]
        files = sorted(settings.index_dir.glob("manifest.sqlite*"))
        assert files
        for path in files:
            data = path.read_bytes()
            assert old.encode() not in data and sha.encode() not in data, path.name
