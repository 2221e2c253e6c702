"""POST /v1/search and /v1/search/batch: text in, ranked gallery images out.

Optional ``filters`` limit a search to the gallery images that pass them (cameras, a capture-time
window, persons, tags): the store ranks only those, so the reply is the top k among them. Each
hit carries its image's camera and capture time, read from the store in one worker-thread call
per request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from fastapi import APIRouter, Depends, HTTPException, status
from fastapi.exceptions import RequestValidationError

from index.filters import GalleryFilter
from index.gallery_store import GalleryStore
from index.items import ItemMeta
from service.batching import BatcherClosedError, QueueFullError
from service.deps import RuntimeDep
from service.metadata import as_utc
from service.query import QueryOutcome
from service.runtime import Runtime
from service.schemas import (
    BatchSearchRequest,
    BatchSearchResponse,
    ErrorResponse,
    QueryResults,
    SearchHit,
    SearchRequest,
    SearchResponse,
)
from service.security import require_read_key

router = APIRouter(prefix="/v1", tags=["search"], dependencies=[Depends(require_read_key)])

ERRORS = {
    400: {"model": ErrorResponse, "description": "The body cannot be read as JSON text."},
    422: {
        "model": ErrorResponse,
        "description": "Empty or over-long query, top_k out of range, a bad filter.",
    },
    429: {"model": ErrorResponse, "description": "The encoder queue is full; retry shortly."},
    503: {"model": ErrorResponse, "description": "Model and index are still loading."},
}


def invalid(field: str, message: str) -> RequestValidationError:
    """A 422 shaped like FastAPI's own validation errors, for limits read from the settings."""
    return RequestValidationError(
        [{"type": "value_error", "loc": ("body", field), "msg": message, "input": None}]
    )


def check_limits(runtime: Runtime, queries: list[str], top_k: int, field: str) -> None:
    s = runtime.settings
    if top_k > s.max_top_k:
        raise invalid("top_k", f"top_k must be at most {s.max_top_k}, got {top_k}")
    for i, query in enumerate(queries):
        if len(query) > s.max_query_chars:
            where = field if len(queries) == 1 and field == "query" else f"{field}[{i}]"
            raise invalid(
                where,
                f"{where} is {len(query)} characters; the limit is {s.max_query_chars}",
            )


async def _run(
    runtime: Runtime,
    queries: list[str],
    top_k: int,
    unique: bool,
    where: GalleryFilter | None,
) -> list[QueryOutcome]:
    try:
        return await runtime.searcher.run(queries, top_k, unique, where)
    except QueueFullError as err:
        runtime.metrics.rejected.labels(reason="queue_full").inc()
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS, str(err), headers={"Retry-After": "1"}
        ) from None
    except BatcherClosedError as err:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(err)) from None


def _metadata(store: GalleryStore, image_ids: Iterable[str]) -> dict[str, ItemMeta]:
    """The stored items of the hits (blocking: one look-up per distinct image). An image
    deleted since the search ranked it keeps its hit, without camera or time."""
    found = {}
    for image_id in dict.fromkeys(image_ids):
        item = store.get(image_id)
        if item is not None:
            found[image_id] = item
    return found


async def _described(runtime: Runtime, outcomes: list[QueryOutcome]) -> list[list[SearchHit]]:
    ids = [h.image_id for outcome in outcomes for h in outcome.hits]
    items = await asyncio.to_thread(_metadata, runtime.store, ids) if ids else {}
    return [_hits(outcome, items) for outcome in outcomes]


def _hits(outcome: QueryOutcome, items: dict[str, ItemMeta]) -> list[SearchHit]:
    hits = []
    for rank, h in enumerate(outcome.hits, start=1):
        item = items.get(h.image_id)
        hits.append(
            SearchHit(
                image_id=h.image_id,
                person_id=h.person_id,
                camera_id=item.camera_id if item else None,
                captured_at=as_utc(item.captured_at) if item else None,
                score=float(h.score),
                rank=rank,
            )
        )
    return hits


@router.post(
    "/search",
    response_model=SearchResponse,
    summary="Find gallery images matching a description",
    description="Ranks gallery images by cosine similarity to the query, best first. Scores are "
    "raw similarities: no threshold is applied. Queries longer than the text encoder's context "
    "are cut to fit and the reply says `truncated: true`. With `filters`, only images that pass "
    "every condition given are ranked: the results are the top k among them.",
    responses=ERRORS,
)
async def search(body: SearchRequest, runtime: RuntimeDep) -> SearchResponse:
    check_limits(runtime, [body.query], body.top_k, "query")
    started = time.perf_counter()
    where = body.filters.gallery_filter() if body.filters else None
    [outcome] = await _run(runtime, [body.query], body.top_k, body.unique_persons, where)
    [hits] = await _described(runtime, [outcome])
    return SearchResponse(
        results=hits,
        model=runtime.fingerprint,
        took_ms=(time.perf_counter() - started) * 1000.0,
        truncated=outcome.truncated,
    )


@router.post(
    "/search/batch",
    response_model=BatchSearchResponse,
    summary="Several descriptions at once",
    description="Same as /v1/search for each query, with the same filters; results come back "
    "in request order.",
    responses=ERRORS,
)
async def search_batch(body: BatchSearchRequest, runtime: RuntimeDep) -> BatchSearchResponse:
    s = runtime.settings
    if len(body.queries) > s.max_batch_queries:
        raise invalid(
            "queries", f"at most {s.max_batch_queries} queries per request, got {len(body.queries)}"
        )
    check_limits(runtime, body.queries, body.top_k, "queries")
    started = time.perf_counter()
    where = body.filters.gallery_filter() if body.filters else None
    outcomes = await _run(runtime, body.queries, body.top_k, body.unique_persons, where)
    described = await _described(runtime, outcomes)
    return BatchSearchResponse(
        queries=[
            QueryResults(results=hits, truncated=o.truncated)
            for hits, o in zip(described, outcomes, strict=True)
        ],
        model=runtime.fingerprint,
        took_ms=(time.perf_counter() - started) * 1000.0,
    )
