"""Who connected: the client address the audit trail, the access log and the lock-out use.

Forwarding headers (``Forwarded``, ``X-Forwarded-For``, ``X-Real-IP``) are anyone's to send, so
they are believed only from a peer listed in TPS_TRUSTED_PROXIES (empty by default). That has
to hold however the app is served: `python -m service` runs uvicorn with ``proxy_headers=False``,
but ``uvicorn --factory service.app:create_app`` keeps uvicorn's defaults, under which its
ProxyHeadersMiddleware wraps this app and replaces ``scope["client"]`` with the X-Forwarded-For
address whenever the peer is in ``--forwarded-allow-ips`` (127.0.0.1 and ::1 unless set). So
the peer is read from the connection itself (uvicorn's ``receive`` belongs to the request cycle,
which holds the transport) and ``scope["client"]`` is set again from it here, before anything
reads it. Under another server, ``scope["client"]`` is taken as the peer.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

FORWARDING_HEADERS = frozenset({b"forwarded", b"x-forwarded-for", b"x-real-ip"})
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(entries: Sequence[str]) -> list[Network]:
    """Addresses or networks (``10.0.0.7``, ``10.0.0.0/24``, ``::1``); ValueError names the
    bad one."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(f"not an IP address or network: {entry!r}") from None
    return networks


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    return getattr(address, "ipv4_mapped", None) or address


def in_networks(host: str, networks: Sequence[Network]) -> bool:
    address = _address(host)
    return address is not None and any(address in net for net in networks)


def carries_forwarding(scope: Scope) -> bool:
    """Whether the request names some other client than the one that connected."""
    return any(name in FORWARDING_HEADERS for name, _ in scope.get("headers", ()))


def _peer(scope: Scope, receive: Receive) -> tuple[str, int] | None:
    """The address that opened the connection: uvicorn's transport, else the scope's client."""
    transport: Any = getattr(getattr(receive, "__self__", None), "transport", None)
    if transport is not None:
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple | list) and len(peer) >= 2:
            return str(peer[0]), int(peer[1])
    client = scope.get("client")
    return (str(client[0]), int(client[1])) if client else None


def _forwarded_for(scope: Scope, proxies: Sequence[Network]) -> str | None:
    """X-Forwarded-For's last address that is not one of our proxies (each proxy appends the
    address it received from, so the ones before it are the client's to invent)."""
    values = [v.decode("latin-1") for n, v in scope.get("headers", ()) if n == b"x-forwarded-for"]
    hops = [h.strip() for h in ",".join(values).split(",") if h.strip()]
    for hop in reversed(hops):
        if _address(hop) is None:
            return None  # not an address: believe nothing further out
        if not in_networks(hop, proxies):
            return hop
    return None


class ClientAddressMiddleware:
    """Sets ``scope["client"]`` to the peer, or, when the peer is a configured proxy, to the
    client its X-Forwarded-For names."""

    def __init__(self, app: ASGIApp, trusted_proxies: Sequence[str]) -> None:
        self.app = app
        self.proxies = parse_networks(trusted_proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = peer = _peer(scope, receive)
        if peer is not None and in_networks(peer[0], self.proxies) and carries_forwarding(scope):
            named = _forwarded_for(scope, self.proxies)
            client = (named, 0) if named is not None else peer
        if client is not None:
            scope["client"] = client
        await self.app(scope, receive, send)
