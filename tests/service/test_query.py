"""Ranking and the searcher's query path, with stand-ins for the model and the index."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from index.items import Hit
from service.metrics import Metrics
from service.query import Searcher, best_per_person
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

    def search(self, vectors: np.ndarray, k: int) -> list[list[Hit]]:
        self.searches.append(k)
        return [self.ranked[:k] for _ in vectors]

    def stats(self) -> dict:
        return {"count": len(self.ranked)}


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
