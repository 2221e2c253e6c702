"""Retention removes exactly the images past the cutoff (vectors, metadata and uploaded files),
in one commit, audited; the dry run and the CLI do what the endpoint does."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.retention_cli import main as retention_main
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
        old_files = [Path(store.get(i).source_path) for i in old]

        dry = client.post("/v1/retention", params={"days": 30, "dry_run": True}, headers=KEY)
        assert dry.json()["removed"] == old and count(client) == before + 3

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
    settings = make_settings(retention_days=30, retention_interval_s=0.2)
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        old = add(client, (60, 0, 0), OLD)
        recent = add(client, (70, 0, 0), RECENT)
        deadline = time.monotonic() + 20
        while client.get(f"/v1/gallery/{old}").status_code != 404:
            assert time.monotonic() < deadline, "the scheduled sweep never removed the old image"
            time.sleep(0.1)
        assert client.get(f"/v1/gallery/{recent}").status_code == 200
        entries = client.get("/v1/audit", params={"action": "retention"}, headers=KEY).json()
        assert [e["details"]["removed"] for e in entries["entries"]] == [[old]]
        assert entries["entries"][0]["key_name"] == "retention"


def test_a_capture_time_in_the_future_does_not_keep_an_image_forever() -> None:
    from index.items import ItemMeta
    from service.retention import age_reference

    def item(captured: float | None) -> ItemMeta:
        return ItemMeta("a", None, "a.jpg", "0" * 64, 1_000.0, captured_at=captured)

    assert age_reference(item(None)) == 1_000.0
    assert age_reference(item(500.0)) == 500.0  # captured before it was added: the capture
    assert age_reference(item(9e9)) == 1_000.0  # "captured" after it was added: the upload
