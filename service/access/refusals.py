"""Refused requests in the audit trail, throttled per client so a flood cannot fill the disk.

A 401 (``auth_failed``), 403 (``forbidden``) or lock-out 429 (``locked_out``) is recorded with
the client, the route and the key's name when it is known (never the key), at most once per
client, route and kind in TPS_AUDIT_REFUSAL_INTERVAL_S; the next entry says how many were
left out (``suppressed``).
A refusal is never turned into a 503 because the trail cannot take its entry: the caller was
refused either way, and the service log has the error.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict

from fastapi import HTTPException, Request

from service.access.audit import AuditError, AuditLog, Entry
from service.access.keys import ANONYMOUS, Principal
from service.middleware import printable

log = logging.getLogger(__name__)

MAX_TRACKED = 10_000  # (client, route, kind) triples remembered; the oldest go first
ACTIONS = {401: "auth_failed", 403: "forbidden", 429: "locked_out"}

Slot = tuple[str, str, str]


class RefusalThrottle:
    """Which refusals get an entry: the first of each (client, route, kind) per interval."""

    def __init__(self, interval_s: float, max_tracked: int = MAX_TRACKED) -> None:
        self.interval_s = interval_s
        self.max_tracked = max_tracked
        self._slots: OrderedDict[Slot, tuple[float, int]] = OrderedDict()
        self._lock = threading.Lock()

    def admit(self, slot: Slot, now: float | None = None) -> int | None:
        """None when this refusal is left out (and counted); else how many were left out
        since the last one admitted for ``slot``."""
        now = time.monotonic() if now is None else now
        with self._lock:
            last = self._slots.get(slot)
            if last is not None and now - last[0] < self.interval_s:
                self._slots[slot] = (last[0], last[1] + 1)
                return None
            self._slots[slot] = (now, 0)
            self._slots.move_to_end(slot)
            while len(self._slots) > self.max_tracked:
                self._slots.popitem(last=False)
            return last[1] if last is not None else 0


def route_of(request: Request) -> str:
    """``METHOD /template`` of the matched route (never a raw id), else the escaped path."""
    route = request.scope.get("route")
    path = getattr(route, "path", None) or printable(request.url.path)[:200]
    return f"{request.method} {path}"


async def record(request: Request, err: HTTPException, reason: str) -> None:
    """Audit one refusal (401, 403, 429), unless the throttle leaves it out."""
    trail: AuditLog | None = request.app.state.audit
    if trail is None:
        return
    client = request.client.host if request.client else None
    action = ACTIONS[err.status_code]
    route = route_of(request)
    suppressed = request.app.state.refusals.admit((client or "-", route, action))
    if suppressed is None:
        return
    who: Principal = getattr(request.state, "principal", ANONYMOUS)
    details = {"route": route, "status": err.status_code, "reason": reason}
    if suppressed:
        details["suppressed"] = suppressed
    try:
        await trail.record(Entry(who.name, who.role, client, action, details))
    except AuditError as err_:
        log.error("a refused request could not be audited: %s", err_)
