"""Ranking and the searcher's query path, with stand-ins for the model and the index."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from index.filters import GalleryFilter
from index.items import Hit
from service.metrics import Metrics
from service.query import BatchSearch, QueryJob, Searcher, best_per_person, group_by_filter
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
