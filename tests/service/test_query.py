"""Ranking and the searcher's query path (text, examples, exclusion), with stand-ins for the
model and the index."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from index.filters import GalleryFilter
from index.items import Hit
from index.search.query_vector import QueryVectorError
from service.metrics import Metrics
from service.query import (
    BatchSearch,
    Examples,
    QueryJob,
    Searcher,
    SearchQuery,
    best_per_person,
    group_by_filter,
)
from service.settings import Settings


def test_best_per_person_keeps_the_first_hit_of_each_person() -> None:
    hits = [
        Hit("a1", "A", 0.9),
        Hit("a2", "A", 0.8),
        Hit("b1", "B", 0.7),
        Hit("x", None, 0.6),
        Hit("y", None, 0.5),
        Hit("c1", "C", 0.4),
    ]
    assert [h.image_id for h in best_per_person(hits, 10)] == ["a1", "b1", "x", "y", "c1"]
    assert [h.image_id for h in best_per_person(hits, 2)] == ["a1", "b1"]


class _Bundle:
    meta = SimpleNamespace(context_length=77)

    def token_count(self, text: str) -> int:
        return len(text.split())

    def encode_text(self, texts: list[str]) -> np.ndarray:
        return np.ones((len(texts), 4), np.float32) / 2


class _Index:
    """30 images of person A rank first, then one each of B, C and D."""

    def __init__(self) -> None:
        self.ranked = [Hit(f"a{i}", "A", 1 - i / 100) for i in range(30)]
        self.ranked += [Hit(f"{p.lower()}0", p, 0.5 - n / 100) for n, p in enumerate("BCD")]
        self.searches: list[int] = []

    def search(self, vectors: np.ndarray, k: int, where=None) -> list[list[Hit]]:
        self.searches.append(k)
        return [self.ranked[:k] for _ in vectors]

    def count(self) -> int:
        return len(self.ranked)


def test_the_searcher_widens_when_one_person_fills_the_top() -> None:
    index = _Index()
    settings = Settings(bundle=Path("b"), index_dir=Path("i"), batching=False)
    searcher = Searcher(_Bundle(), index, Metrics(), settings)  # type: ignore[arg-type]

    async def run() -> list:
        await searcher.start()
        try:
            return await searcher.run(["a person", "x " * 100], top_k=3, unique_persons=True)
        finally:
            await searcher.stop()

    outcomes = asyncio.run(run())
    assert [[h.image_id for h in o.hits] for o in outcomes] == [["a0", "b0", "c0"]] * 2
    assert [o.truncated for o in outcomes] == [False, True]
    assert index.searches == [12, 33, 33]  # both queries (k=3×4), then one wider each


class _FilteringStore:
    """Records each search: (rows, k, filter); every row's hits name its filter."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int, GalleryFilter | None]] = []

    def search(self, vectors: np.ndarray, k: int, where=None) -> list[list[Hit]]:
        self.calls.append((len(vectors), k, where))
        label = "none" if where is None else ",".join(where.camera_ids or ())
        return [[Hit(f"{label}-{i}", None, 1.0 - i / 10) for i in range(k)] for _ in vectors]


def test_one_batch_searches_once_per_filter_and_never_mixes_them() -> None:
    lobby = GalleryFilter(camera_ids=("lobby",))
    gate = GalleryFilter(camera_ids=("gate",))
    jobs = [
        QueryJob("a", 2, lobby),
        QueryJob("b", 3, None),
        QueryJob("c", 1, GalleryFilter(camera_ids=("lobby",))),  # equal to the first
        QueryJob("d", 2, gate),
    ]
    store = _FilteringStore()
    answers = BatchSearch(_Bundle(), store, Metrics())(jobs)  # type: ignore[arg-type]
    assert sorted(store.calls, key=str) == sorted(
        [(2, 2, lobby), (1, 3, None), (1, 2, gate)], key=str
    )
    assert [[h.image_id for h in a.hits] for a in answers] == [
        ["lobby-0", "lobby-1"],
        ["none-0", "none-1", "none-2"],
        ["lobby-0"],
        ["gate-0", "gate-1"],
    ]
    assert group_by_filter(jobs) == {lobby: [0, 2], None: [1], gate: [3]}


class _CountingBundle(_Bundle):
    """Records what each encoder call was asked to encode."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def encode_text(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return super().encode_text(texts)


def _examples(*rows: list[float], exclude: frozenset[str] = frozenset()) -> Examples:
    positives = np.asarray(rows, np.float32) if rows else np.zeros((0, 4), np.float32)
    return Examples(positives, np.zeros((0, 4), np.float32), exclude=exclude)


def test_examples_join_the_text_in_one_batch_and_image_only_jobs_skip_the_encoder() -> None:
    bundle, store = _CountingBundle(), _FilteringStore()
    jobs = [
        QueryJob("a", 1),
        QueryJob(None, 1, None, _examples([1, 0, 0, 0])),
        QueryJob("b", 1, None, _examples([0, 1, 0, 0])),
        QueryJob(None, 1),  # nothing to search for: answered with an error, not searched
    ]
    answers = BatchSearch(bundle, store, Metrics())(jobs)  # type: ignore[arg-type]
    assert bundle.calls == [["a", "b"]]
    assert store.calls == [(3, 1, None)]
    np.testing.assert_allclose(answers[0].vector, np.full(4, 0.5))
    np.testing.assert_allclose(answers[1].vector, [1, 0, 0, 0])
    assert answers[2].vector is not None and answers[2].vector[1] > answers[2].vector[0]
    assert answers[3].vector is None and "nothing to search for" in (answers[3].error or "")
    assert answers[3].hits == []


def test_examples_leave_the_results_and_k_results_remain() -> None:
    index = _Index()  # a0..a29 (person A), then b0, c0, d0
    settings = Settings(bundle=Path("b"), index_dir=Path("i"), batching=False)
    searcher = Searcher(_Bundle(), index, Metrics(), settings)  # type: ignore[arg-type]
    query = SearchQuery("a person", _examples([1, 0, 0, 0], exclude=frozenset({"a0", "a2"})))

    async def run(unique: bool) -> list:
        await searcher.start()
        try:
            return await searcher.run([query], top_k=3, unique_persons=unique)
        finally:
            await searcher.stop()

    [plain] = asyncio.run(run(False))
    assert [h.image_id for h in plain.hits] == ["a1", "a3", "a4"]
    assert index.searches == [5]  # 3 + the 2 examples
    assert plain.vector is not None
    [unique] = asyncio.run(run(True))
    assert [h.image_id for h in unique.hits] == ["a1", "b0", "c0"]


def test_a_query_whose_examples_cancel_out_is_refused() -> None:
    settings = Settings(bundle=Path("b"), index_dir=Path("i"), batching=False)
    searcher = Searcher(_Bundle(), _Index(), Metrics(), settings)  # type: ignore[arg-type]
    same = np.asarray([[1, 0, 0, 0]], np.float32)
    query = SearchQuery(None, Examples(same, same, alpha=1.0, beta=1.0))

    async def run() -> None:
        await searcher.start()
        try:
            await searcher.run([query], top_k=3, unique_persons=False)
        finally:
            await searcher.stop()

    with pytest.raises(QueryVectorError, match="cancel out"):
        asyncio.run(run())
