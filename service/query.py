"""Text queries against the gallery: encode and search a whole batch of queries at once.

Queries from concurrent requests meet in the batcher (service/batching.py); one call of
:class:`BatchSearch` then encodes all their texts in one encoder call and searches all vectors
in one index call, which is where both the encoder and FAISS are fastest per query.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from index.items import Hit

if TYPE_CHECKING:
    from bundle.encoders import Bundle
    from index.store import GalleryIndex
    from service.metrics import Metrics
    from service.runtime import Runtime

# unique_persons over-fetches images and keeps one per person; the GPU index caps k at 2048.
MAX_FETCH = 2048
OVERFETCH = 4


@dataclass(frozen=True)
class QueryJob:
    text: str
    k: int


@dataclass(frozen=True)
class QueryAnswer:
    vector: np.ndarray
    hits: list[Hit]


@dataclass(frozen=True)
class QueryOutcome:
    hits: list[Hit]
    truncated: bool


class BatchSearch:
    """The batcher's function: texts of many requests → one encode → one search."""

    def __init__(self, bundle: Bundle, index: GalleryIndex, metrics: Metrics) -> None:
        self.bundle = bundle
        self.index = index
        self.metrics = metrics

    def __call__(self, jobs: list[QueryJob]) -> list[QueryAnswer]:
        started = time.perf_counter()
        vectors = self.bundle.encode_text([job.text for job in jobs])
        encoded = time.perf_counter()
        found = self.index.search(vectors, max(job.k for job in jobs))
        self.metrics.encode.observe(encoded - started, kind="text")
        self.metrics.search.observe(time.perf_counter() - encoded)
        return [
            QueryAnswer(v, hits[: job.k]) for v, hits, job in zip(vectors, found, jobs, strict=True)
        ]


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


def _widen(runtime: Runtime, vector: np.ndarray, top_k: int, fetched: int) -> list[Hit]:
    """Search deeper until ``top_k`` persons are found or the fetch cap is reached (rare: only
    when a few persons own most of the top images)."""
    cap = min(int(runtime.index.stats()["count"]), MAX_FETCH)
    fetch = fetched
    while True:
        fetch = min(cap, fetch * OVERFETCH)
        hits = runtime.search_now(vector[None, :], fetch)[0]
        kept = best_per_person(hits, top_k)
        if len(kept) == top_k or len(hits) < fetch or fetch >= cap:
            return kept


async def run_queries(
    runtime: Runtime, texts: list[str], top_k: int, unique_persons: bool
) -> list[QueryOutcome]:
    context = runtime.bundle.meta.context_length
    truncated = [runtime.bundle.token_count(t) > context for t in texts]
    fetch = min(MAX_FETCH, top_k * OVERFETCH) if unique_persons else top_k
    answers = await runtime.queries.submit([QueryJob(t, fetch) for t in texts])
    outcomes = []
    for answer, cut in zip(answers, truncated, strict=True):
        hits = answer.hits
        if unique_persons:
            kept = best_per_person(hits, top_k)
            if len(kept) < top_k and len(hits) == fetch:
                kept = await asyncio.to_thread(_widen, runtime, answer.vector, top_k, fetch)
            hits = kept
        outcomes.append(QueryOutcome(hits, cut))
    return outcomes
