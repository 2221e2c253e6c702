"""Queries against the gallery: one :class:`Searcher` owns query → encode → search → widen.

A query is a text, example images (relevance feedback: "more like this", "not this one", an
uploaded photo), or both; index/search/query_vector.py combines them into one vector. Queries from
concurrent requests meet in the batcher (service/batching.py); one call of :class:`BatchSearch`
then encodes all their texts in one encoder call, joins each to its examples, and searches all
vectors in one store call per filter, which is where both the encoder and the store are fastest
per query. Queries only share a store search when their filters are equal: a filter decides
which images are ranked at all, so each filter group gets its own top k. Example images are
dropped from their own results (the store is asked for as many more hits as there are examples,
so k results remain). When ``unique_persons`` keeps fewer persons than asked for, the searcher
widens: it asks the store for more hits of the same vector (and filter) until enough persons
are found.

The runtime (service/runtime.py) holds one searcher. Nothing here knows the runtime, so the two
modules never import each other.

Parts mode (a parts bundle over a parts index, bundle/parts_layout.py): a query is Q, weighted by
the request's part weights (the bundle's defaults for names left out); one text-encoder call
still serves the whole batch, since the weights only scale Q's blocks afterwards. Vectors here
are in Q's units; the store holds G/√(1+M+K), so every store search sends Q·√(1+M+K), and a
hit's score is S = ⟨G, Q⟩.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from bundle.parts_layout import PartsWeightsError, check_weights
from index.filters import GalleryFilter
from index.gallery_store import GalleryStore
from index.items import Hit
from index.search.query_vector import DEFAULT_ALPHA, DEFAULT_BETA, QueryVectorError, combine
from service.batching import Batcher, make_batcher
from service.metrics import Metrics
from service.settings import Settings

if TYPE_CHECKING:
    from bundle.encoders import Bundle
    from bundle.parts_encoder import PartsEncoder
    from bundle.parts_layout import PartsLayout

# unique_persons over-fetches images and keeps one per person; the GPU index caps k at 2048.
MAX_FETCH = 2048
OVERFETCH = 4
WARM_UP_QUERY = "a person walking"


@dataclass(frozen=True)
class Examples:
    """Example images joined to a query: unit image vectors (rows), their weights, and the
    gallery ids the results must leave out."""

    positives: np.ndarray = field(compare=False)
    negatives: np.ndarray = field(compare=False)
    alpha: float = DEFAULT_ALPHA
    beta: float = DEFAULT_BETA
    exclude: frozenset[str] = frozenset()
    # Parts mode: the layout of the vectors and the part weights the examples' blocks get.
    parts: PartsLayout | None = field(default=None, compare=False)
    weights: Mapping[str, float] | None = field(default=None, compare=False)

    def vector(self, text: np.ndarray | None) -> np.ndarray:
        """The query vector for this text embedding (or none); raises QueryVectorError."""
        return combine(
            text, self.positives, self.negatives, self.alpha, self.beta, self.parts, self.weights
        )


def parts_of(bundle: Bundle) -> PartsEncoder | None:
    """The bundle's parts mode, if on (anything with encode_text serves as a global bundle)."""
    return getattr(bundle, "parts", None)


def part_weights(bundle: Bundle, weights: Mapping[str, float] | None) -> dict[str, float] | None:
    """The weights a parts-mode query uses: the request's, the bundle's for names left out
    (None in global mode)."""
    parts = parts_of(bundle)
    return None if parts is None else {**parts.weights, **(weights or {})}


def request_weights(bundle: Bundle, weights: Mapping[str, float] | None) -> dict | None:
    """A request's part weights checked against the served mode: PartsWeightsError (a
    ValueError) names what is wrong, including weights sent to a global index."""
    if weights is None:
        return None
    if parts_of(bundle) is None:
        raise PartsWeightsError(
            "weights apply to a parts index only; this service serves global vectors"
        )
    check_weights(part_weights(bundle, weights))
    return dict(weights)


def in_parts_mode(
    examples: Examples | None, bundle: Bundle, weights: Mapping[str, float] | None
) -> Examples | None:
    """``examples`` told the parts layout and the query's weights (unchanged in global mode)."""
    parts = parts_of(bundle)
    if examples is None or parts is None:
        return examples
    return replace(examples, parts=parts.layout, weights=part_weights(bundle, weights))


@dataclass(frozen=True)
class SearchQuery:
    """What to search for: a text, examples, or both (at least a text or a positive)."""

    text: str | None
    examples: Examples | None = None
    weights: Mapping[str, float] | None = field(default=None, compare=False)  # parts mode

    @property
    def exclude(self) -> frozenset[str]:
        return self.examples.exclude if self.examples is not None else frozenset()


@dataclass(frozen=True)
class QueryJob:
    text: str | None
    k: int
    where: GalleryFilter | None = None
    examples: Examples | None = None
    weights: Mapping[str, float] | None = field(default=None, compare=False)  # parts mode
    # The text's token count when the caller has it (the batcher groups by it): counted once.
    tokens: int | None = field(default=None, compare=False)


@dataclass(frozen=True)
class QueryAnswer:
    vector: np.ndarray | None  # None when ``error`` says why there is no query
    hits: list[Hit]
    error: str | None = None


@dataclass(frozen=True)
class QueryOutcome:
    hits: list[Hit]
    truncated: bool
    vector: np.ndarray | None = field(default=None, compare=False)  # what was searched for


class BatchSearch:
    """The batcher's function: texts of many requests → one encode → each joined to its
    examples → one search per filter."""

    def __init__(self, bundle: Bundle, store: GalleryStore, metrics: Metrics) -> None:
        self.bundle = bundle
        self.store = store
        self.metrics = metrics

    def __call__(self, jobs: list[QueryJob]) -> list[QueryAnswer]:
        started = time.perf_counter()
        texts = [job.text for job in jobs if job.text is not None]
        parts = parts_of(self.bundle)
        if parts is None:
            encoded_texts = iter(self.bundle.encode_text(texts) if texts else ())
        else:  # unit blocks once for the batch; each job's weights applied below
            encoded_texts = iter(parts.text_blocks(self.bundle.tokens(texts)) if texts else ())
        encoded = time.perf_counter()
        vectors: list[np.ndarray | None] = []
        errors: list[str | None] = []
        for job in jobs:
            text = next(encoded_texts) if job.text is not None else None
            if parts is not None and text is not None:
                text = parts.layout.weigh(text[None], part_weights(self.bundle, job.weights))[0]
            try:
                vectors.append(job_vector(text, job.examples))
                errors.append(None)
            except QueryVectorError as err:
                vectors.append(None)
                errors.append(str(err))
        found: list[list[Hit]] = [[] for _ in jobs]
        for where, rows in group_by_filter(jobs).items():
            rows = [row for row in rows if vectors[row] is not None]
            if not rows:
                continue
            k = max(jobs[row].k for row in rows)
            block = to_store(self.bundle, np.stack([vectors[row] for row in rows]))  # type: ignore[misc]
            for row, hits in zip(rows, self.store.search(block, k, where), strict=True):
                found[row] = hits[: jobs[row].k]
        if texts:
            self.metrics.encode.labels(kind="text").observe(encoded - started)
        self.metrics.search.observe(time.perf_counter() - encoded)
        return [
            QueryAnswer(v, hits, error)
            for v, hits, error in zip(vectors, found, errors, strict=True)
        ]


def job_vector(text: np.ndarray | None, examples: Examples | None) -> np.ndarray:
    """The vector one job searches with: its text's, or its text joined to its examples."""
    if examples is not None:
        return examples.vector(text)
    if text is None:
        raise QueryVectorError("nothing to search for: give a text or a positive example")
    return text


def to_store(bundle: Bundle, vectors: np.ndarray) -> np.ndarray:
    """Query rows as a store search takes them (parts mode: Q·√(1+M+K), see the docstring)."""
    parts = parts_of(bundle)
    return vectors if parts is None else parts.layout.query_to_store(vectors)


def group_by_filter(jobs: Sequence[QueryJob]) -> dict[GalleryFilter | None, list[int]]:
    """Positions of the jobs that share each filter, in first-seen order (filters are frozen
    dataclasses: equal conditions, equal keys)."""
    groups: dict[GalleryFilter | None, list[int]] = {}
    for row, job in enumerate(jobs):
        groups.setdefault(job.where, []).append(row)
    return groups


def best_per_person(hits: Sequence[Hit], k: int) -> list[Hit]:
    """The first (best) hit of each person, up to ``k``; hits without a person id each count as
    their own person."""
    seen: set[tuple[str, str]] = set()
    kept: list[Hit] = []
    for hit in hits:
        key = ("person", hit.person_id) if hit.person_id is not None else ("image", hit.image_id)
        if key in seen:
            continue
        seen.add(key)
        kept.append(hit)
        if len(kept) == k:
            break
    return kept


def query_batcher(fn: BatchSearch, settings: Settings, metrics: Metrics) -> Batcher:
    """Cross-request batching as the settings say (or one call per request when it is off)."""
    return make_batcher(
        fn,
        enabled=settings.batching,
        max_size=settings.batch_max_size,
        max_wait_s=settings.batch_max_wait_ms / 1000.0,
        queue_size=settings.batch_queue_size,
        on_batch=lambda size, _seconds: metrics.batch_size.observe(size),
    )


class Searcher:
    """Answers text queries: batches them, encodes, searches, and widens for unique persons."""

    def __init__(
        self, bundle: Bundle, store: GalleryStore, metrics: Metrics, settings: Settings
    ) -> None:
        self.bundle = bundle
        self.store = store
        self.metrics = metrics
        self.batcher = query_batcher(BatchSearch(bundle, store, metrics), settings, metrics)

    @property
    def depth(self) -> int:
        """Queries waiting for or inside the encoder and index."""
        return self.batcher.depth

    async def start(self) -> None:
        await self.batcher.start()

    async def stop(self) -> None:
        await self.batcher.stop()

    async def warm_up(self) -> None:
        """One query through the whole path, so the first user query pays no setup cost."""
        await self.batcher.submit([QueryJob(WARM_UP_QUERY, 1)])

    async def run(
        self,
        queries: Sequence[str | SearchQuery],
        top_k: int,
        unique_persons: bool,
        where: GalleryFilter | None = None,
    ) -> list[QueryOutcome]:
        """Best hits per query (a text, or a :class:`SearchQuery`) among the images that pass
        ``where``, in order, without the query's excluded examples; raises the batcher's
        QueueFullError when it is full, and QueryVectorError when a query's examples leave
        nothing to search for."""
        asked = [SearchQuery(q) if isinstance(q, str) else q for q in queries]
        context = self.bundle.meta.context_length
        counts = [self.bundle.token_count(q.text) if q.text is not None else 0 for q in asked]
        truncated = [count > context for count in counts]
        base = min(MAX_FETCH, top_k * OVERFETCH) if unique_persons else top_k
        fetches = [min(MAX_FETCH, base + len(q.exclude)) for q in asked]
        jobs = [
            QueryJob(q.text, fetch, where, q.examples, q.weights, tokens=count)
            for q, fetch, count in zip(asked, fetches, counts, strict=True)
        ]
        answers = await self.batcher.submit(jobs)
        outcomes = []
        for query, answer, fetch, cut in zip(asked, answers, fetches, truncated, strict=True):
            if answer.error is not None or answer.vector is None:
                raise QueryVectorError(answer.error or "nothing to search for")
            hits = [h for h in answer.hits if h.image_id not in query.exclude]
            if unique_persons:
                kept = best_per_person(hits, top_k)
                if len(kept) < top_k and len(answer.hits) == fetch:
                    kept = await asyncio.to_thread(
                        self.widen, answer.vector, top_k, fetch, where, query.exclude
                    )
                hits = kept
            outcomes.append(QueryOutcome(hits[:top_k], cut, answer.vector))
        return outcomes

    def search_now(
        self, vectors: np.ndarray, k: int, where: GalleryFilter | None = None
    ) -> list[list[Hit]]:
        """One store search outside the batcher (blocking: call it from a worker thread);
        ``vectors`` as the batcher's (parts mode: in Q's units)."""
        started = time.perf_counter()
        hits = self.store.search(to_store(self.bundle, vectors), k, where)
        self.metrics.search.observe(time.perf_counter() - started)
        return hits

    def widen(
        self,
        vector: np.ndarray,
        top_k: int,
        fetched: int,
        where: GalleryFilter | None = None,
        exclude: frozenset[str] = frozenset(),
    ) -> list[Hit]:
        """Search deeper until ``top_k`` persons are found or the fetch cap is reached (rare:
        only when a few persons own most of the top images). Blocking: run it in a thread."""
        cap = min(int(self.store.count()), MAX_FETCH)
        fetch = fetched
        while True:
            fetch = min(cap, fetch * OVERFETCH)
            found = self.search_now(vector[None, :], fetch, where)[0]
            hits = [h for h in found if h.image_id not in exclude]
            kept = best_per_person(hits, top_k)
            if len(kept) == top_k or len(found) < fetch or fetch >= cap:
                return kept
