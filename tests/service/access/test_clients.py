"""The client address: the peer that connected, unless it is a configured proxy."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from service.access.clients import parse_networks
from service.app import create_app
from service.settings import Settings
from tests.service.support import wait_ready

SEARCH = {"query": "a man in red", "top_k": 1}
STRONG = "k" * 40  # a forwarded request is not from this machine: no short key for it
KEY = {"X-API-Key": STRONG}


def audited_client(settings: Settings, peer: str, headers: dict[str, str]) -> str:
    with TestClient(create_app(settings), base_url="http://127.0.0.1", client=(peer, 4000)) as c:
        wait_ready(c)
        assert c.post("/v1/search", json=SEARCH, headers=KEY | headers).status_code == 200
        [entry] = c.app.state.audit.read(action="search")
    return entry["client"]


def test_forwarding_headers_are_not_believed_by_default(
    make_settings: Callable[..., Settings],
) -> None:
    forged = {"X-Forwarded-For": "10.66.66.66", "X-Real-IP": "10.66.66.67"}
    assert audited_client(make_settings(api_key=STRONG), "127.0.0.1", forged) == "127.0.0.1"


def test_a_configured_proxy_names_the_client(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(api_key=STRONG, trusted_proxies="127.0.0.1, 10.1.0.0/16")
    # The client may prepend anything; the last address our proxies did not add is the client.
    hops = {"X-Forwarded-For": "10.66.66.66, 198.51.100.4, 10.1.2.3"}
    assert audited_client(settings, "127.0.0.1", hops) == "198.51.100.4"
    untrusted = make_settings(api_key=STRONG, trusted_proxies="10.9.9.9")
    assert audited_client(untrusted, "127.0.0.1", hops) == "127.0.0.1"


def test_a_bad_proxy_address_is_a_settings_error() -> None:
    with pytest.raises(ValueError, match=r"not an IP address or network: 'proxy\.local'"):
        parse_networks(["10.0.0.1", "proxy.local"])
