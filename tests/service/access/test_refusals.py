"""Refused requests reach the audit trail (client, route, key name when known, never the key),
throttled per client so a flood of them cannot fill the disk."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient

from service.access.keys import create_key
from service.access.refusals import RefusalThrottle
from service.app import create_app
from service.settings import Settings
from tests.service.support import jpeg, wait_ready

WRONG = "tps_wrong-key-that-must-never-be-stored"


def test_refusals_are_audited_once_per_client_route_and_kind(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    keys = tmp_path / "keys.json"
    reader = {"X-API-Key": create_key(keys, "rita", "reader")}
    admin = {"X-API-Key": create_key(keys, "ada", "admin")}
    settings = make_settings(open_reads=False, api_key=None, keys_file=keys)
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        assert client.post("/v1/search", json={"query": "a"}).status_code == 401
        for _ in range(20):  # a flood: one entry, the rest counted
            refused = client.post("/v1/search", json={"query": "a"}, headers={"X-API-Key": WRONG})
            assert refused.status_code == 401
        assert client.get("/v1/audit", headers=reader).status_code == 403
        assert client.post("/v1/retention", params={"days": 1}, headers=reader).status_code == 403
        upload = {"files": ("a.jpg", jpeg())}
        assert client.post("/v1/gallery", files=upload, headers=reader).status_code == 403
        entries = client.get("/v1/audit", params={"limit": 1000}, headers=admin).json()["entries"]
    refused = [e for e in entries if e["action"] in ("auth_failed", "forbidden")]
    summary = [(e["action"], e["key_name"], e["details"]["route"]) for e in refused]
    assert summary == [
        ("auth_failed", "anonymous", "POST /v1/search"),
        ("forbidden", "rita", "GET /v1/audit"),
        ("forbidden", "rita", "POST /v1/retention"),
        ("forbidden", "rita", "POST /v1/gallery"),
    ]
    assert all(e["client"] == "testclient" for e in refused)
    assert refused[0]["details"]["status"] == 401 and refused[1]["role"] == "reader"
    assert WRONG not in json.dumps(entries)
    assert not any(key in json.dumps(entries) for key in (reader["X-API-Key"], admin["X-API-Key"]))


def test_the_next_entry_counts_the_refusals_left_out() -> None:
    throttle = RefusalThrottle(interval_s=60)
    slot = ("203.0.113.7", "GET /v1/audit", "forbidden")
    assert throttle.admit(slot, now=0.0) == 0
    assert [throttle.admit(slot, now=t) for t in (1.0, 2.0, 59.0)] == [None, None, None]
    assert throttle.admit(("203.0.113.8", *slot[1:]), now=2.0) == 0  # another client
    assert throttle.admit(slot, now=61.0) == 3
    assert throttle.admit(slot, now=62.0) is None
    small = RefusalThrottle(interval_s=60, max_tracked=2)
    for n in range(5):  # a flood from many addresses keeps a bounded table
        small.admit((f"10.0.0.{n}", "GET /", "auth_failed"), now=0.0)
    assert len(small._slots) == 2
