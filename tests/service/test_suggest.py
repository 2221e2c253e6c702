"""Suggestions: one encoder batch, phrases the query already says are skipped, and the phrase
that splits the top results comes first."""

from __future__ import annotations

import numpy as np

from service.query import Examples
from service.suggest import (
    MAX_PER_SLOT,
    evenness,
    reordering,
    suggest,
    unsaid,
    with_phrase,
    words,
)
from service.vocabulary import VOCABULARY, Phrase

DIM = 4


def unit(*values: float) -> np.ndarray:
    v = np.asarray(values, np.float32)
    return v / np.linalg.norm(v)


class Encoder:
    """The query is e0; 'red bag' adds e1 (true of half the images); 'blue bag' adds e2 (true of
    one image); anything else leaves the query as it is."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        rows = []
        for text in texts:
            v = np.array([1.0, 0, 0, 0], np.float32)
            if text.endswith("red bag"):
                v[1] = 1.0
            if text.endswith("blue bag"):
                v[2] = 1.0
            rows.append(v / np.linalg.norm(v))
        return np.stack(rows)


IMAGES = np.stack(
    [unit(1, 1, 0, 0), unit(1, 1, 0, 0.1), unit(1, 0, 0, 0.2), unit(1, 0, 1, 0), unit(1, 0, 0, 0)]
)
VOCAB = [Phrase("glasses", "glasses"), Phrase("blue bag", "bag_colour", ("blue",)),
         Phrase("red bag", "bag_colour", ("red",)), Phrase("man", "gender", ("man",))]  # fmt: skip


def test_one_batch_and_the_splitting_phrase_first() -> None:
    encode = Encoder()
    query = "a man with a bag"
    offered = suggest(encode, query, None, unit(1, 0, 0, 0), IMAGES, 3, VOCAB)
    assert len(encode.calls) == 1  # every candidate phrase in one encoder call
    assert encode.calls[0] == [with_phrase(query, p.text) for p in VOCAB if p.text != "man"]
    assert offered[0].phrase == "red bag"
    assert "man" not in [s.phrase for s in offered]  # already said
    assert offered[0].query == "a man with a bag, red bag"
    scores = {s.phrase: s.score for s in offered}
    assert scores["red bag"] > scores.get("glasses", 0.0)


def test_examples_join_every_candidate_like_the_query() -> None:
    """With examples, each candidate is scored as the search would run it: joined to them."""
    examples = Examples(unit(0, 0, 0, 1)[None], np.zeros((0, DIM), np.float32), alpha=1.0)
    query_vector = examples.vector(unit(1, 0, 0, 0))
    offered = suggest(Encoder(), "a man", examples, query_vector, IMAGES, 2, VOCAB)
    assert offered and offered[0].phrase == "red bag"


def test_nothing_to_split() -> None:
    assert suggest(Encoder(), "q", None, unit(1, 0, 0, 0), IMAGES[:1], 3, VOCAB) == []
    assert suggest(Encoder(), "q", None, unit(1, 0, 0, 0), IMAGES, 0, VOCAB) == []


def test_at_most_a_few_phrases_per_slot() -> None:
    slots: dict[str, int] = {}
    offered = suggest(Encoder(), "q", None, unit(1, 0, 0, 0), IMAGES, 10, VOCABULARY)
    by_text = {p.text: p for p in VOCABULARY}
    for s in offered:
        slots[by_text[s.phrase].slot] = slots.get(by_text[s.phrase].slot, 0) + 1
    assert max(slots.values()) <= MAX_PER_SLOT


def test_phrases_already_said_are_skipped_whatever_the_spelling() -> None:
    said = {p.text for p in VOCABULARY} - {p.text for p in unsaid("A Man in a GRAY t-shirt.")}
    assert {"man", "t-shirt"} <= said and "grey top" not in said  # "top" was not said
    assert words("Blonde hair, tee") == {"blond", "hair", "t-shirt"}


def test_with_phrase_appends_after_a_comma() -> None:
    assert with_phrase("A man in a coat. ", "red bag") == "A man in a coat, red bag"
    assert with_phrase(None, "red bag") == "red bag"
    assert with_phrase("  ", "red bag") == "red bag"


def test_reordering_is_kendalls_distance() -> None:
    base = np.array([4.0, 3.0, 2.0, 1.0])
    rescored = np.stack([base, -base, [4.0, 3.0, 1.0, 2.0]], axis=1)
    np.testing.assert_allclose(reordering(base, rescored), [0.0, 1.0, 1 / 6])


def test_evenness_favours_halves_over_one_against_the_rest() -> None:
    halves = np.array([1.0, 1.0, 0.0, 0.0])
    one = np.array([1.0, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(evenness(np.stack([halves, one], axis=1)), [1.0, 0.75])
