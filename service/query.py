"""Text queries against the gallery: one :class:`Searcher` owns query → encode → search → widen.

Queries from concurrent requests meet in the batcher (service/batching.py); one call of
:class:`BatchSearch` then encodes all their texts in one encoder call and searches all vectors
in one store call per filter, which is where both the encoder and the store are fastest per
query. Queries only share a store search when their filters are equal: a filter decides which
images are ranked at all, so each filter group gets its own top k. When ``unique_persons`` keeps
fewer persons than asked for, the searcher widens: it asks the store for more hits of the same
vector (and filter) until enough persons are found.

The runtime (service/runtime.py) holds one searcher. Nothing here knows the runtime, so the two
modules never import each other.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from index.filters import GalleryFilter
from index.gallery_store import GalleryStore
from index.items import Hit
from service.batching import Batcher, make_batcher
from service.metrics import Metrics
from service.settings import Settings

if TYPE_CHECKING:
    from bundle.encoders import Bundle

# unique_persons over-fetches images and keeps one per person; the GPU index caps k at 2048.
MAX_FETCH = 2048
OVERFETCH = 4
WARM_UP_QUERY = "a person walking"


@dataclass(frozen=True)
class QueryJob:
    text: str
    k: int
    where: GalleryFilter | None = None


@dataclass(frozen=True)
class QueryAnswer:
    vector: np.ndarray
    hits: list[Hit]


@dataclass(frozen=True)
class QueryOutcome:
    hits: list[Hit]
    truncated: bool


class BatchSearch:
    """The batcher's function: texts of many requests → one encode → one search per filter."""

    def __init__(self, bundle: Bundle, store: GalleryStore, metrics: Metrics) -> None:
        self.bundle = bundle
        self.store = store
        self.metrics = metrics

    def __call__(self, jobs: list[QueryJob]) -> list[QueryAnswer]:
        started = time.perf_counter()
        vectors = self.bundle.encode_text([job.text for job in jobs])
        encoded = time.perf_counter()
        found: list[list[Hit]] = [[] for _ in jobs]
        for where, rows in group_by_filter(jobs).items():
            k = max(jobs[row].k for row in rows)
            for row, hits in zip(rows, self.store.search(vectors[rows], k, where), strict=True):
                found[row] = hits[: jobs[row].k]
        self.metrics.encode.labels(kind="text").observe(encoded - started)
        self.metrics.search.observe(time.perf_counter() - encoded)
        return [QueryAnswer(v, hits) for v, hits in zip(vectors, found, strict=True)]


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
        texts: list[str],
        top_k: int,
        unique_persons: bool,
        where: GalleryFilter | None = None,
    ) -> list[QueryOutcome]:
        """Best hits per text among the images that pass ``where``, in order; raises the
        batcher's QueueFullError when it is full."""
        context = self.bundle.meta.context_length
        truncated = [self.bundle.token_count(t) > context for t in texts]
        fetch = min(MAX_FETCH, top_k * OVERFETCH) if unique_persons else top_k
        answers = await self.batcher.submit([QueryJob(t, fetch, where) for t in texts])
        outcomes = []
        for answer, cut in zip(answers, truncated, strict=True):
            hits = answer.hits
            if unique_persons:
                hits = best_per_person(answer.hits, top_k)
                if len(hits) < top_k and len(answer.hits) == fetch:
                    hits = await asyncio.to_thread(self.widen, answer.vector, top_k, fetch, where)
            outcomes.append(QueryOutcome(hits, cut))
        return outcomes

    def search_now(
        self, vectors: np.ndarray, k: int, where: GalleryFilter | None = None
    ) -> list[list[Hit]]:
        """One store search outside the batcher (blocking: call it from a worker thread)."""
        started = time.perf_counter()
        hits = self.store.search(vectors, k, where)
        self.metrics.search.observe(time.perf_counter() - started)
        return hits

    def widen(
        self, vector: np.ndarray, top_k: int, fetched: int, where: GalleryFilter | None = None
    ) -> list[Hit]:
        """Search deeper until ``top_k`` persons are found or the fetch cap is reached (rare:
        only when a few persons own most of the top images). Blocking: run it in a thread."""
        cap = min(int(self.store.count()), MAX_FETCH)
        fetch = fetched
        while True:
            fetch = min(cap, fetch * OVERFETCH)
            hits = self.search_now(vector[None, :], fetch, where)[0]
            kept = best_per_person(hits, top_k)
            if len(kept) == top_k or len(hits) < fetch or fetch >= cap:
                return kept
