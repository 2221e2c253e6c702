"""GET /v1/audit (the trail, paged) and POST /v1/retention (a retention sweep now): admin only."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status

from service.access import audit_events
from service.access.audit import AuditLog
from service.access.retention import cutoff_for, sweep
from service.access.security import caller, require_admin_key
from service.deps import RuntimeDep
from service.metadata import MetadataError, parse_time
from service.schemas import ErrorResponse

router = APIRouter(prefix="/v1", tags=["audit"], dependencies=[Depends(require_admin_key)])

MAX_PAGE = 1000
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in (
        (401, "Missing, unknown or revoked API key."),
        (403, "The key is not an admin's."),
        (422, "A bad parameter, or (retention) no retention period set."),
        (503, "Model and index are still loading, or the trail cannot be read."),
    )
}
TIME = "ISO 8601, e.g. 2026-01-31T08:00:00Z; no zone means UTC"


def _seconds(text: str | None, name: str) -> float | None:
    """An ISO 8601 time as seconds since the epoch, read as every other time of the API is
    (not as a datetime parameter, which would also take a bare number of seconds)."""
    if text is None:
        return None
    try:
        return parse_time(text, name)
    except MetadataError as err:
        raise HTTPException(422, str(err)) from None


@router.get(
    "/audit",
    summary="The audit trail, oldest first, in pages",
    description="Entries (time, key name, role, client address, action, details) in the order "
    "they were written. `since`/`until` are ISO 8601 times (no zone means UTC); `cursor` is the "
    "`next_cursor` of the previous page (the last id it held), stable while entries are added.",
    responses=ERRORS,
)
def audit(
    request: Request,
    since: Annotated[str | None, Query(max_length=64, description=TIME)] = None,
    until: Annotated[str | None, Query(max_length=64, description=TIME + "; exclusive")] = None,
    key: Annotated[str | None, Query(max_length=64)] = None,
    action: Annotated[str | None, Query(max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    cursor: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    trail: AuditLog | None = request.app.state.audit
    if trail is None and request.app.state.settings.audit:  # opened once the index has loaded
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the audit trail is opening")
    if trail is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "the audit trail is off (TPS_AUDIT=false)")
    rows = trail.read(
        since=_seconds(since, "since"),
        until=_seconds(until, "until"),
        key=key,
        action=action,
        after_id=cursor,
        limit=limit + 1,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    # Who read whose searches is recorded too, after the read (a page never holds its own).
    given = {"since": since, "until": until, "key": key, "action": action, "cursor": cursor}
    filters = {name: value for name, value in given.items() if value} | {"limit": limit}
    audit_events.record_now(request, "audit_read", {"filters": filters, "returned": len(rows)})
    return {"entries": rows, "next_cursor": rows[-1]["id"] if more else None}


@router.post(
    "/retention",
    summary="Remove gallery images past the retention period now",
    description="What the scheduled sweep does (TPS_RETENTION_DAYS), at once; `dry_run=true` "
    "lists the images it would remove. `days` overrides the setting for this sweep.",
    responses=ERRORS,
)
async def retention(
    request: Request,
    runtime: RuntimeDep,
    dry_run: bool = False,
    days: Annotated[float | None, Query(gt=0)] = None,
) -> dict[str, Any]:
    days = days if days is not None else runtime.settings.retention_days
    if days is None:
        raise HTTPException(422, "no retention period: set TPS_RETENTION_DAYS or pass days")
    who = caller(request)
    client = request.client.host if request.client else None
    async with runtime.write_lock:
        outcome = await asyncio.to_thread(
            sweep,
            runtime.store,
            runtime.images,
            cutoff_for(days),
            trail=request.app.state.audit,
            who=(who.name, who.role),
            client=client,
            dry_run=dry_run,
        )
    return outcome.as_dict()
