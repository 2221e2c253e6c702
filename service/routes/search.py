"""POST /v1/search, /v1/search/image and /v1/search/batch: ranked gallery images out.

A search is a description, example images, or both: ``positive_ids`` ("more like this"),
``negative_ids`` ("not this person") and, on /v1/search/image, an uploaded photo join the text
as one query vector (index/search/query_vector.py), and the examples leave the results. With
``suggest``, the reply also names attribute phrases that would split the top results
(service/suggest.py). Optional ``filters`` limit a search to the gallery images that pass them
(cameras, a capture-time window, persons, tags): the store ranks only those, so the reply is the
top k among them. Each hit carries its image's camera and capture time: a Milvus store returns
them with the search itself; the FAISS store's are read in one batched call per request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError

from footage.spans import is_track, span_of
from index.filters import GalleryFilter
from index.items import HitMeta, ItemMeta
from index.search.query_vector import QueryVectorError
from service.access import audit_events
from service.access.retention import is_expired, read_cutoff
from service.access.security import require_read_key
from service.batching import BatcherClosedError, QueueFullError
from service.deps import RuntimeDep
from service.examples import ConflictingExamplesError, UnknownExamplesError, load_examples
from service.image_search_form import IMAGE_SEARCH_REQUEST_BODY, read_image_search
from service.images import ImageRejectedError, check_query_photo
from service.metadata import as_utc
from service.query import Examples, QueryOutcome, SearchQuery, in_parts_mode, request_weights
from service.runtime import Runtime
from service.schemas import (
    BatchSearchRequest,
    BatchSearchResponse,
    ErrorResponse,
    QueryResults,
    SearchHit,
    SearchRequest,
    SearchResponse,
    SuggestedPhrase,
)
from service.suggest import SUGGEST_DEPTH, suggest

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
SEARCH_ERRORS = ERRORS | {
    404: {"model": ErrorResponse, "description": "An example id names no gallery image."},
    422: {
        "model": ErrorResponse,
        "description": "Neither a query nor a positive example; an over-long query, top_k out "
        "of range, a bad filter, an id given as both positive and negative, examples that "
        "cancel out.",
    },
}
IMAGE_ERRORS = SEARCH_ERRORS | {
    400: {"model": ErrorResponse, "description": "The multipart body cannot be parsed."},
    413: {"model": ErrorResponse, "description": "Body, form field or pixel count too large."},
    415: {
        "model": ErrorResponse,
        "description": "Not multipart, or not a JPEG, PNG, WebP or BMP image.",
    },
    422: {
        "model": ErrorResponse,
        "description": "A corrupt image, a missing or repeated image, a bad form field, or any "
        "refusal of /v1/search.",
    },
}


def invalid(field: str, message: str) -> RequestValidationError:
    """A 422 shaped like FastAPI's own validation errors, for limits read from the settings."""
    return RequestValidationError(
        [{"type": "value_error", "loc": ("body", field), "msg": message, "input": None}]
    )


def check_limits(runtime: Runtime, queries: Sequence[str], top_k: int, field: str) -> None:
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
    queries: Sequence[str | SearchQuery],
    top_k: int,
    unique: bool,
    where: GalleryFilter | None,
) -> list[QueryOutcome]:
    try:
        return await runtime.searcher.run(queries, top_k, unique, where)
    except QueryVectorError as err:
        raise invalid("positive_ids", str(err)) from None
    except QueueFullError as err:
        runtime.metrics.rejected.labels(reason="queue_full").inc()
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS, str(err), headers={"Retry-After": "1"}
        ) from None
    except BatcherClosedError as err:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(err)) from None


async def _unexpired(
    runtime: Runtime, outcomes: list[QueryOutcome]
) -> tuple[list[QueryOutcome], dict[str, HitMeta]]:
    """The outcomes without the images past the retention period (still in the store until the
    next sweep), and the camera and capture time of hits the store sent without them (Milvus
    sends them with the search; the FAISS store ranks on vectors and person ids only). One
    batched read for the whole request: of every hit when a retention period is set (an age
    needs the time an image was added), else only of the hits without their metadata."""
    cutoff = read_cutoff(runtime.settings)
    hits = [h for outcome in outcomes for h in outcome.hits]
    # A track's crops carry its time span in their tags, which no store sends with a hit.
    wanted = [
        h.image_id for h in hits if cutoff is not None or h.meta is None or is_track(h.person_id)
    ]
    ids = list(dict.fromkeys(wanted))
    items = await asyncio.to_thread(runtime.store.get_many, ids) if ids else {}
    if cutoff is not None:
        gone = {i for i, item in items.items() if is_expired(item, cutoff)}
        if gone:
            outcomes = [
                QueryOutcome([h for h in o.hits if h.image_id not in gone], o.truncated, o.vector)
                for o in outcomes
            ]
    return outcomes, {i: _TrackHitMeta.of(item) for i, item in items.items()}


@dataclass(frozen=True)
class _TrackHitMeta(HitMeta):
    """A hit's metadata read from the store, with its track's time span when it is a track's
    crop (footage/spans.py)."""

    span: tuple[float, float] | None = None

    @classmethod
    def of(cls, item: ItemMeta) -> _TrackHitMeta:
        span = span_of(item.tags) if is_track(item.person_id) else None
        return cls(item.camera_id, item.captured_at, span)


def _hits(outcome: QueryOutcome, found: dict[str, HitMeta]) -> list[SearchHit]:
    hits = []
    for rank, h in enumerate(outcome.hits, start=1):
        meta = found.get(h.image_id) or h.meta or HitMeta()
        span = meta.span if isinstance(meta, _TrackHitMeta) else None
        hits.append(
            SearchHit(
                image_id=h.image_id,
                person_id=h.person_id,
                camera_id=meta.camera_id,
                captured_at=as_utc(meta.captured_at),
                track_start=as_utc(span[0]) if span else None,
                track_end=as_utc(span[1]) if span else None,
                score=float(h.score),
                rank=rank,
            )
        )
    return hits


async def _examples(
    runtime: Runtime, body: SearchRequest, uploaded: np.ndarray | None
) -> Examples | None:
    try:
        return await asyncio.to_thread(
            load_examples,
            runtime.store,
            body.positive_ids,
            body.negative_ids,
            body.alpha,
            body.beta,
            body.exclude_examples,
            uploaded,
            read_cutoff(runtime.settings),
        )
    except ConflictingExamplesError as err:
        raise invalid("negative_ids", str(err)) from None
    except UnknownExamplesError as err:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(err)) from None


def _suggestions(
    runtime: Runtime, body: SearchRequest, examples: Examples | None, outcome: QueryOutcome
) -> list[SuggestedPhrase]:
    """Blocking: one store read of the top results' vectors and one text-encoder batch."""
    ids = [h.image_id for h in outcome.hits[:SUGGEST_DEPTH]]
    found = runtime.store.vectors(ids) if ids else {}
    rows = [found[i] for i in ids if i in found]  # an image deleted meanwhile drops out
    if outcome.vector is None or len(rows) < 2:
        return []
    started = time.perf_counter()
    weights = body.weights.as_dict() if body.weights is not None else None
    phrases = suggest(
        lambda texts: runtime.bundle.encode_text(texts, weights),
        body.query,
        examples,
        outcome.vector,
        np.stack(rows).astype(np.float32),
        body.suggest_count,
    )
    runtime.metrics.encode.labels(kind="text").observe(time.perf_counter() - started)
    return [SuggestedPhrase(phrase=p.phrase, query=p.query, score=p.score) for p in phrases]


def _require_something(body: SearchRequest) -> None:
    if body.query is None and not body.positive_ids:
        raise invalid(
            "query",
            "nothing to search for: give a query, positive_ids, or an image (/v1/search/image)",
        )


async def answer(
    runtime: Runtime,
    body: SearchRequest,
    started: float,
    uploaded: np.ndarray | None = None,
) -> SearchResponse:
    """One search of either route, once its input is checked: examples from the store, the
    combined query through the batcher, the hits described, suggestions when asked."""
    where = body.filters.gallery_filter() if body.filters else None
    try:  # parts index only; checked before anything is read or encoded
        weights = request_weights(runtime.bundle, body.weights and body.weights.as_dict())
    except ValueError as err:
        raise invalid("weights", str(err)) from None
    examples = in_parts_mode(await _examples(runtime, body, uploaded), runtime.bundle, weights)
    depth = max(body.top_k, SUGGEST_DEPTH) if body.suggest else body.top_k
    query = SearchQuery(body.query, examples, weights)
    [outcome] = await _run(runtime, [query], depth, body.unique_persons, where)
    [outcome], items = await _unexpired(runtime, [outcome])
    suggestions = None
    if body.suggest:
        suggestions = await asyncio.to_thread(_suggestions, runtime, body, examples, outcome)
    shown = QueryOutcome(outcome.hits[: body.top_k], outcome.truncated, outcome.vector)
    return SearchResponse(
        results=_hits(shown, items),
        model=runtime.fingerprint,
        took_ms=(time.perf_counter() - started) * 1000.0,
        truncated=outcome.truncated,
        suggestions=suggestions,
    )


@router.post(
    "/search",
    response_model=SearchResponse,
    summary="Find gallery images matching a description, example images, or both",
    description="Ranks gallery images by cosine similarity to the query, best first. Scores are "
    "raw similarities: no threshold is applied. Queries longer than the text encoder's context "
    "are cut to fit and the reply says `truncated: true`. With `filters`, only images that pass "
    "every condition given are ranked: the results are the top k among them.\n\n"
    "`positive_ids` and `negative_ids` name gallery images of the person sought and of others: "
    "the query vector becomes normalise(text + alpha * mean(positives) - beta * "
    "mean(negatives)) over unit vectors, and (with `exclude_examples`, the default) the "
    "examples are left out of the results. `query` may be left out when there are positives. "
    "With `suggest: true` the reply carries `suggestions`: attribute phrases that would "
    "reorder the top results most.",
    responses=SEARCH_ERRORS,
)
async def search(request: Request, body: SearchRequest, runtime: RuntimeDep) -> SearchResponse:
    check_limits(runtime, [body.query] if body.query is not None else [], body.top_k, "query")
    _require_something(body)
    response = await answer(runtime, body, time.perf_counter())
    await audit_events.search(request, body, response)  # recorded before the reply goes out
    return response


def _encode_upload(runtime: Runtime, data: bytes, name: str) -> np.ndarray:
    """Check and decode the photo (a lower pixel limit than an upload's, a JPEG at reduced
    scale), then encode it (blocking: a worker thread)."""
    s = runtime.settings
    image = check_query_photo(data, name, s.max_query_pixels, s.max_image_side, s.max_pixels)
    return runtime.encode_images_now([runtime.bundle.preprocess(image)])


@router.post(
    "/search/image",
    response_model=SearchResponse,
    summary="Find the person in a photo (cross-camera re-identification)",
    description="A `multipart/form-data` body with the photo in the field `image` and, "
    "optionally, any field of /v1/search as a form field (numbers and booleans as in JSON, "
    "`positive_ids` and `negative_ids` by repeating the field, `filters` as one JSON object). "
    "The photo is checked like an upload (format, pixel limits), encoded by the image tower "
    "and joins the positive examples; with no `query` the search is by image alone. Nothing "
    "is stored.",
    responses=IMAGE_ERRORS,
    openapi_extra={"requestBody": IMAGE_SEARCH_REQUEST_BODY},
)
async def search_image(request: Request, runtime: RuntimeDep) -> SearchResponse:
    form = await read_image_search(request)
    body = form.body
    check_limits(runtime, [body.query] if body.query is not None else [], body.top_k, "query")
    started = time.perf_counter()  # the photo's decode and encode count too
    try:
        # TPS_MAX_CONCURRENT_DECODES at once: the others wait here, on the event loop, holding
        # neither a worker thread nor decoded pixels.
        async with request.app.state.decode_slots:
            vector = await asyncio.to_thread(_encode_upload, runtime, form.data, form.name)
    except ImageRejectedError as err:
        raise HTTPException(err.status, err.message) from None
    response = await answer(runtime, body, started, vector)
    await audit_events.search(request, body, response, audit_events.photo(form.name, form.data))
    return response


@router.post(
    "/search/batch",
    response_model=BatchSearchResponse,
    summary="Several descriptions at once",
    description="Same as /v1/search for each query, with the same filters; results come back "
    "in request order.",
    responses=ERRORS,
)
async def search_batch(
    request: Request, body: BatchSearchRequest, runtime: RuntimeDep
) -> BatchSearchResponse:
    s = runtime.settings
    if len(body.queries) > s.max_batch_queries:
        raise invalid(
            "queries", f"at most {s.max_batch_queries} queries per request, got {len(body.queries)}"
        )
    check_limits(runtime, body.queries, body.top_k, "queries")
    try:  # parts index only, like /v1/search
        weights = request_weights(runtime.bundle, body.weights and body.weights.as_dict())
    except ValueError as err:
        raise invalid("weights", str(err)) from None
    started = time.perf_counter()
    where = body.filters.gallery_filter() if body.filters else None
    queries = [SearchQuery(q, None, weights) for q in body.queries]
    outcomes = await _run(runtime, queries, body.top_k, body.unique_persons, where)
    outcomes, items = await _unexpired(runtime, outcomes)
    described = [_hits(outcome, items) for outcome in outcomes]
    response = BatchSearchResponse(
        queries=[
            QueryResults(results=hits, truncated=o.truncated)
            for hits, o in zip(described, outcomes, strict=True)
        ],
        model=runtime.fingerprint,
        took_ms=(time.perf_counter() - started) * 1000.0,
    )
    await audit_events.batch_search(request, body, response)
    return response
