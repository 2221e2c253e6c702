"""Who may call: open reads for this machine only, weak keys refused from elsewhere, and a
client that keeps sending wrong keys locked out for a while."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.access.keys import create_key
from service.app import create_app
from service.settings import Settings
from tests.service.support import wait_ready

SEARCH = {"query": "a man in red", "top_k": 1}
FORWARDING = [
    {"X-Forwarded-For": "203.0.113.5"},
    {"Forwarded": "for=203.0.113.5"},
    {"X-Real-IP": "203.0.113.5"},
]


def test_open_reads_are_refused_to_a_forwarded_request(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """A proxy relaying someone else to loopback says so in a header: that someone is not on
    this machine, so open reads do not apply; a key still works."""
    keys = tmp_path / "keys.json"
    reader = {"X-API-Key": create_key(keys, "rita", "reader")}
    app = create_app(make_settings(open_reads=True, keys_file=keys))
    with TestClient(app, base_url="http://127.0.0.1", client=("127.0.0.1", 40000)) as client:
        wait_ready(client)
        assert client.post("/v1/search", json=SEARCH).status_code == 200
        for header in FORWARDING:
            refused = client.post("/v1/search", json=SEARCH, headers=header)
            assert refused.status_code == 401, header
            assert client.get("/v1/info", headers=header).status_code == 401
            assert client.post("/v1/search", json=SEARCH, headers=header | reader).is_success


@pytest.mark.parametrize("key", ["demo-key", "short-key-0123456789"])
def test_a_weak_key_is_refused_from_elsewhere_however_the_app_is_served(
    make_settings: Callable[..., Settings], key: str
) -> None:
    """`uvicorn --factory ... --host 0.0.0.0` skips `python -m service`'s start-up check."""
    app = create_app(make_settings(open_reads=False, api_key=key))
    with TestClient(app, base_url="http://127.0.0.1", client=("127.0.0.1", 40000)) as client:
        wait_ready(client)
        assert client.get("/v1/info", headers={"X-API-Key": key}).status_code == 200
        public = client.get("http://10.0.0.5/v1/info", headers={"X-API-Key": key})
        assert public.status_code == 401 and "only from this machine" in public.text
        assert key not in public.text


def test_repeated_wrong_keys_lock_the_client_out(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    keys = tmp_path / "keys.json"
    admin = {"X-API-Key": create_key(keys, "ada", "admin")}
    settings = make_settings(
        open_reads=False, api_key=None, keys_file=keys, auth_lockout_failures=3
    )
    app = create_app(settings)
    guesser = ("203.0.113.7", 50000)
    with TestClient(app, base_url="http://10.0.0.5", client=guesser) as client:
        wait_ready(client)
        assert client.get("/metrics", headers=admin).status_code == 200
        for n in range(3):
            wrong = client.get("/metrics", headers={"X-API-Key": f"tps_guess-{n}"})
            assert wrong.status_code == 401
        locked = client.get("/metrics", headers=admin)  # even the right key, for a while
        assert locked.status_code == 429
        assert 0 < int(locked.headers["retry-after"]) <= settings.auth_lockout_s
        assert "too many wrong API keys" in locked.json()["detail"]
        # Requests without a key are not guesses; another client is not locked out.
        other = TestClient(app, base_url="http://10.0.0.5", client=("203.0.113.8", 50000))
        assert other.get("/metrics", headers=admin).status_code == 200
        for _ in range(5):
            assert other.get("/metrics").status_code == 401
        assert other.get("/metrics", headers=admin).status_code == 200
        [entry] = client.app.state.audit.read(action="locked_out")
        assert entry["client"] == "203.0.113.7" and entry["details"]["status"] == 429


def test_this_machine_is_never_locked_out(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """A same-host proxy would lock every client out at once (docs/security.md:
    TPS_TRUSTED_PROXIES)."""
    keys = tmp_path / "keys.json"
    admin = {"X-API-Key": create_key(keys, "ada", "admin")}
    app = create_app(
        make_settings(open_reads=False, api_key=None, keys_file=keys, auth_lockout_failures=2)
    )
    with TestClient(app, base_url="http://127.0.0.1", client=("127.0.0.1", 40000)) as client:
        wait_ready(client)
        for n in range(4):
            assert client.get("/metrics", headers={"X-API-Key": f"tps_{n}"}).status_code == 401
        assert client.get("/metrics", headers=admin).status_code == 200
