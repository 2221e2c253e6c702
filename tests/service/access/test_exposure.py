"""Where the service may start: open reads on loopback only, and keys off loopback."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.access.keys import KeyRing, create_key
from service.access.security import exposure_problem, is_loopback
from service.settings import Settings

STRONG_KEY = "k" * 40


@pytest.mark.parametrize(
    "host, loopback",
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("192.168.1.20", False),
        ("search.example", False),
    ],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def settings(tmp_path: Path, **values) -> Settings:
    return Settings(bundle=tmp_path / "b", index_dir=tmp_path / "i", **values)


def test_the_rules(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.json"
    no_keys = KeyRing(keys_file)
    assert exposure_problem(settings(tmp_path, open_reads=True), no_keys) is None  # the demo
    problem = exposure_problem(settings(tmp_path, host="0.0.0.0"), no_keys)
    assert problem is not None and problem.startswith("no API keys on a non-loopback address")
    assert exposure_problem(settings(tmp_path, host="0.0.0.0", api_key="k" * 32), no_keys) is None
    create_key(keys_file, "alice", "reader")
    assert exposure_problem(settings(tmp_path, host="0.0.0.0"), KeyRing(keys_file)) is None
    opened = settings(tmp_path, host="10.0.0.5", open_reads=True)
    assert "only on a loopback address" in (exposure_problem(opened, KeyRing(keys_file)) or "")
    # The deprecated spelling means open reads, under the same rule.
    legacy = settings(tmp_path, host="0.0.0.0", read_requires_key=False)
    assert legacy.open_reads and exposure_problem(legacy, KeyRing(keys_file)) is not None


def test_open_reads_never_reach_a_request_that_came_in_on_a_public_address(
    make_settings,
) -> None:
    """Served some other way than `python -m service` (no start-up check), e.g. uvicorn --host
    0.0.0.0: a request to a public address still needs a key; one to loopback does not."""
    from fastapi.testclient import TestClient

    from service.app import create_app
    from tests.service.support import wait_ready

    app = create_app(make_settings(open_reads=True, api_key=STRONG_KEY))
    KEY = {"X-API-Key": STRONG_KEY}
    body = {"query": "a man in red", "top_k": 1}
    with TestClient(app, base_url="http://127.0.0.1") as client:  # one client: one event loop
        wait_ready(client)
        assert client.post("/v1/search", json=body).status_code == 200
        for public in ("http://10.0.0.5", "http://[2001:db8::1]"):
            url = f"{public}/v1/search"  # the request's host is the ASGI server address
            assert client.post(url, json=body).status_code == 401
            assert client.post(url, json=body, headers=KEY).status_code == 200
        mapped = "http://[::ffff:127.0.0.1]/v1/search"
        assert client.post(mapped, json=body).status_code == 200


@pytest.mark.parametrize(
    "key, problem",
    [("demo-key", "the published demo key"), ("x" * 31, "shorter than 32 characters")],
)
def test_a_weak_key_is_refused_off_loopback(tmp_path: Path, key: str, problem: str) -> None:
    no_keys = KeyRing(tmp_path / "keys.json")
    refused = exposure_problem(settings(tmp_path, host="0.0.0.0", api_key=key), no_keys)
    assert refused is not None and problem in refused and key not in refused
    assert exposure_problem(settings(tmp_path, api_key=key), no_keys) is None  # the demo
