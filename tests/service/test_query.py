"""Ranking helpers that need no model."""

from __future__ import annotations

from index.items import Hit
from service.query import best_per_person


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
