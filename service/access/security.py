"""Who may do what: every route but the probes and the page needs a key of a role.

Roles (keys.py): ``reader`` searches and views images, ``writer`` also uploads and
deletes, ``admin`` also reads the audit trail, runs retention and scrapes /metrics. A missing,
unknown or revoked key is 401; a known key whose role is too low is 403. With ``TPS_OPEN_READS``
(honoured on a loopback address only, see :func:`exposure_problem`) reader routes accept a
request without a valid key as ``anonymous``; a valid one still names the caller.

Open reads are for this machine only: never for a request that reached a public address, nor
for one that carries forwarding headers (a proxy relaying someone else). Off this machine the
published demo key and any TPS_API_KEY shorter than 32 characters are refused, a client that
sends too many wrong keys is locked out for a while (lockout.py), and every refusal is
audited, throttled per client (refusals.py).

The caller (key name and role) is left on ``request.state.principal`` for the audit trail and
the access log.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import math
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader
from pydantic import SecretStr

from service.access import refusals
from service.access.clients import carries_forwarding
from service.access.keys import ANONYMOUS, ENV_KEY_NAME, KeyRing, KeysFileError, Principal
from service.access.lockout import Lockout
from service.settings import Settings

log = logging.getLogger(__name__)

API_KEY_HEADER = "X-API-Key"
# The key `make demo` prints and the docs show: public, so never a key off this machine.
DEMO_KEY = SecretStr("demo-key")
MIN_KEY_CHARS = 32

api_key_header = APIKeyHeader(
    name=API_KEY_HEADER,
    auto_error=False,
    description="A key from TPS_KEYS_FILE (`python -m service keys create`) or TPS_API_KEY.",
)
# The same header under its own scheme name, so the OpenAPI document can mark it optional on
# reads when they are open (service/openapi.py) while writes keep requiring it.
READ_KEY_SCHEME = "APIKeyHeaderForReads"
read_key_header = APIKeyHeader(
    name=API_KEY_HEADER,
    scheme_name=READ_KEY_SCHEME,
    auto_error=False,
    description="A key (any role for reads, admin for /metrics); not needed when the server runs "
    "with TPS_OPEN_READS.",
)


def is_loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything


def reached_on_loopback(request: Request) -> bool:
    """Whether the connection came in on a loopback address (the ASGI ``server``: the local
    end of the socket). `python -m service` refuses open reads off loopback at start-up; this
    also holds when the app is served some other way (``uvicorn --factory ... --host 0.0.0.0``):
    a request that reached a public address is never let in on open reads. A local end that is
    not an IP address (a Unix socket, an in-process test client) has no network exposure."""
    server = request.scope.get("server")
    host = str(server[0]) if server else ""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return True
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def _is_loopback_host(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return True  # not an IP address: a Unix socket, an in-process test client
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def is_local(request: Request) -> bool:
    """Whether the request comes from this machine itself: it reached a loopback address, from a
    loopback address, and names no other client in forwarding headers. A relay that forwards
    without saying so (a TCP forwarder on a public port) cannot be told apart: docs/security.md."""
    client = request.client.host if request.client else ""
    return (
        reached_on_loopback(request)
        and _is_loopback_host(client)
        and not carries_forwarding(request.scope)
    )


def weak_key_problem(settings: Settings) -> str | None:
    """Why TPS_API_KEY must not be used off this machine, or None."""
    if settings.api_key is None:
        return None
    if settings.api_key == DEMO_KEY:
        return "TPS_API_KEY is the published demo key"
    if len(settings.api_key) < MIN_KEY_CHARS:
        return f"TPS_API_KEY is shorter than {MIN_KEY_CHARS} characters"
    return None


def exposure_problem(settings: Settings, keys: KeyRing) -> str | None:
    """Why the service must not start on ``settings.host``, or None."""
    if is_loopback(settings.host):
        return None
    if settings.open_reads:
        return (
            f"TPS_OPEN_READS=true (or the deprecated TPS_READ_REQUIRES_KEY=false) is honoured "
            f"only on a loopback address, not on {settings.host}: unset it and give clients "
            "keys (python -m service keys create)"
        )
    if (weak := weak_key_problem(settings)) is not None:
        return (
            f"{weak}, refused on a non-loopback address ({settings.host}): give clients keys "
            "(python -m service keys create) or set a random TPS_API_KEY of at least "
            f"{MIN_KEY_CHARS} characters"
        )
    if settings.api_key is None and not keys.has_keys:
        return (
            f"no API keys on a non-loopback address ({settings.host}): create one with "
            "`python -m service keys create --name NAME --role reader` and set TPS_KEYS_FILE "
            "(or set TPS_API_KEY)"
        )
    return None


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, message, headers={"WWW-Authenticate": API_KEY_HEADER}
    )


def _check_key(settings: Settings, supplied: str | None) -> None:
    """TPS_API_KEY, the one place its secret is unwrapped: 401 unless ``supplied`` is it."""
    if settings.api_key is None or not supplied:
        raise _unauthorized(f"this request needs an API key in the {API_KEY_HEADER} header")
    expected = settings.api_key.get_secret_value().encode()
    if not hmac.compare_digest(supplied.encode(), expected):
        raise _unauthorized(INVALID_KEY)


INVALID_KEY = "the API key is not valid (unknown or revoked)"


def _writes_disabled() -> HTTPException:
    return HTTPException(
        status.HTTP_403_FORBIDDEN,
        "writes are disabled: no API key is configured on the server "
        "(set TPS_KEYS_FILE or TPS_API_KEY)",
    )


def _keys_unusable(err: KeysFileError) -> HTTPException:
    log.error("the keys file cannot be used: %s", err)  # the path and the reason: ours only
    return HTTPException(
        status.HTTP_503_SERVICE_UNAVAILABLE,
        "the keys file (TPS_KEYS_FILE) cannot be used; the server log says why",
    )


def _principal(
    settings: Settings, keys: KeyRing, supplied: str, open_ok: bool = True, local: bool = True
) -> Principal:
    try:
        principal = keys.lookup(supplied)
    except KeysFileError as err:
        raise _keys_unusable(err) from None
    if principal is not None:
        return principal
    if settings.api_key is None:
        if not open_ok and not keys.knows_keys:  # no keys at all: the route is simply off
            raise _writes_disabled()
        raise _unauthorized(INVALID_KEY)
    if not local and (weak := weak_key_problem(settings)) is not None:
        # Served without `python -m service`'s start-up check (uvicorn --host 0.0.0.0).
        raise _unauthorized(f"{weak}: it is accepted only from this machine")
    _check_key(settings, supplied)
    return Principal(ENV_KEY_NAME, "admin")  # kept for compatibility: one key that does all


def identify(request: Request, supplied: str | None, role: str, open_ok: bool = False) -> Principal:
    """The caller of a route that needs ``role``, or 401/403; ``open_ok``: open reads let a
    request without a key through."""
    settings: Settings = request.app.state.settings
    keys: KeyRing = request.app.state.keys
    local = is_local(request)
    if open_ok and settings.open_reads and local:
        # Open reads need no key; one that is sent names the caller in the audit trail when it
        # is valid, and is ignored (anonymous) when not, as it would be if it were left out.
        principal = ANONYMOUS
        if supplied:
            try:
                principal = _principal(settings, keys, supplied, local=local)
            except HTTPException as err:
                if err.status_code != status.HTTP_401_UNAUTHORIZED:
                    raise
        request.state.principal = principal
        return principal
    # One look at the keys file per request: whether there are keys at all matters only when
    # none was sent or the one sent is unknown (_principal then says so).
    if not supplied:
        try:
            any_keys = settings.api_key is not None or keys.has_keys
        except KeysFileError as err:
            raise _keys_unusable(err) from None
        if not any_keys and not open_ok:
            raise _writes_disabled()
        raise _unauthorized(f"this request needs an API key in the {API_KEY_HEADER} header")
    principal = _principal(settings, keys, supplied, open_ok, local)
    request.state.principal = principal
    if not principal.can(role):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"the key {principal.name!r} has the role {principal.role}; this needs {role}",
        )
    return principal


async def guard(
    request: Request, supplied: str | None, role: str, open_ok: bool = False
) -> Principal:
    """:func:`identify`, with the lock-out before it and every refusal audited after it."""
    client = request.client.host if request.client else "-"
    lockout: Lockout = request.app.state.lockout
    local = is_local(request)
    if not local and (wait := lockout.retry_after(client)) is not None:
        seconds = str(math.ceil(wait))
        refused = HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"too many wrong API keys from this client: try again in {seconds} s",
            headers={"Retry-After": seconds},
        )
        await refusals.record(request, refused, "locked out after repeated wrong keys")
        raise refused
    try:
        return identify(request, supplied, role, open_ok)
    except HTTPException as err:
        if err.status_code not in (status.HTTP_401_UNAUTHORIZED, status.HTTP_403_FORBIDDEN):
            raise
        if err.status_code == status.HTTP_401_UNAUTHORIZED and supplied and not local:
            lockout.failed(client)
        await refusals.record(request, err, str(err.detail))
        raise


async def require_read_key(
    request: Request, supplied: Annotated[str | None, Security(read_key_header)]
) -> Principal:
    return await guard(request, supplied, "reader", open_ok=True)


async def require_write_key(
    request: Request, supplied: Annotated[str | None, Security(api_key_header)]
) -> Principal:
    return await guard(request, supplied, "writer")


async def require_admin_key(
    request: Request, supplied: Annotated[str | None, Security(api_key_header)]
) -> Principal:
    return await guard(request, supplied, "admin")


Caller = Annotated[Principal, Depends(require_read_key)]


def caller(request: Request) -> Principal:
    """Who the route's key dependency identified (anonymous when none ran)."""
    return getattr(request.state, "principal", ANONYMOUS)


async def require_metrics_key(
    request: Request, supplied: Annotated[str | None, Security(read_key_header)]
) -> Principal:
    """/metrics: an admin's (it tells the gallery's size and the traffic), open with open reads
    like everything else a local demo shows."""
    return await guard(request, supplied, "admin", open_ok=True)
