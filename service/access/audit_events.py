"""What each audited request writes to the trail (audit.py), from the routes.

The entry is committed before the route returns, so the reply is sent only for a recorded
request; when the trail cannot be written the request fails with 503 instead of going
unrecorded. With ``TPS_AUDIT=false`` (the benchmark's baseline) nothing is written.
"""

from __future__ import annotations

import hashlib
from typing import Any

from fastapi import HTTPException, Request, status

from service.access.audit import AuditError, AuditLog, Entry
from service.access.security import caller
from service.schemas import BatchSearchRequest, BatchSearchResponse, SearchRequest, SearchResponse


def entry(request: Request, action: str, details: dict[str, Any]) -> Entry:
    who = caller(request)
    client = request.client.host if request.client else None
    return Entry(who.name, who.role, client, action, details)


def _unavailable(err: AuditError) -> HTTPException:
    return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(err))


async def record(request: Request, action: str, details: dict[str, Any]) -> None:
    trail: AuditLog | None = request.app.state.audit
    if trail is None:
        return
    try:
        await trail.record(entry(request, action, details))
    except AuditError as err:
        raise _unavailable(err) from None


def record_now(request: Request, action: str, details: dict[str, Any]) -> None:
    """The blocking form, for plain ``def`` routes (they run in the threadpool)."""
    trail: AuditLog | None = request.app.state.audit
    if trail is None:
        return
    try:
        trail.record_now(entry(request, action, details))
    except AuditError as err:
        raise _unavailable(err) from None


def search_details(body: SearchRequest, response: SearchResponse) -> dict[str, Any]:
    details: dict[str, Any] = {
        "query": body.query,
        "top_k": body.top_k,
        "returned": [hit.image_id for hit in response.results],
    }
    if body.filters is not None:
        details["filters"] = body.filters.model_dump(mode="json", exclude_none=True)
    if body.positive_ids:
        details["positive_ids"] = list(body.positive_ids)
    if body.negative_ids:
        details["negative_ids"] = list(body.negative_ids)
    return details


async def search(
    request: Request, body: SearchRequest, response: SearchResponse, photo: dict | None = None
) -> None:
    details = search_details(body, response)
    if photo is not None:
        details["photo"] = photo
    await record(request, "image_search" if photo is not None else "search", details)


async def batch_search(
    request: Request, body: BatchSearchRequest, response: BatchSearchResponse
) -> None:
    details: dict[str, Any] = {
        "queries": list(body.queries),
        "top_k": body.top_k,
        "returned": [[hit.image_id for hit in q.results] for q in response.queries],
    }
    if body.filters is not None:
        details["filters"] = body.filters.model_dump(mode="json", exclude_none=True)
    await record(request, "search", details)


def photo(name: str, data: bytes) -> dict[str, Any]:
    """What identifies an uploaded search photo without storing it: name, size, SHA-256."""
    return {"name": name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
