"""Suggestions for a vague query: the attribute phrases that would reorder its top results most.

The paper's limitation is that a vague description cannot be resolved by the model alone; the
witness can, if asked the right question. The right question is about an attribute on which
the current candidates differ: adding "red bag" to "a man in a black jacket" matters when some
of the top men carry a red bag and others do not, and not at all when none does.

So, for every phrase of the fixed vocabulary (service/vocabulary.py) that the query does not
already say, the query with the phrase appended is encoded (all of them in ONE text-encoder
batch), joined to the same example images as the query itself, and used to re-rank the top M
results. A phrase's score is how much it reorders them (the fraction of pairs of those M images
whose order it swaps, Kendall's distance) times how evenly it splits them (4·f·(1−f), where f is
the share of images on the rising side of the best two-group split of their score changes). The
second factor matters: a colour the model reacts to strongly reorders everything by lifting two
or three images, which is rarely true of the person sought; an attribute half the candidates
have is the question worth asking (bench/feedback.py measured both). The best phrases come back,
at most ``MAX_PER_SLOT`` about the same attribute, so a few different questions are asked.

Blocking (one encoder call): the route runs it in a worker thread.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from index.search.query_vector import QueryVectorError
from service.query import Examples, job_vector
from service.vocabulary import VOCABULARY, Phrase

SUGGEST_DEPTH = 20  # the top results that suggestions must split
MAX_PER_SLOT = 2
SPELLINGS = {"gray": "grey", "blonde": "blond", "tee": "t-shirt"}

EncodeText = Callable[[list[str]], np.ndarray]


@dataclass(frozen=True)
class Suggestion:
    phrase: str
    query: str  # the query with the phrase appended, as it was scored
    score: float  # reordering × evenness of the split, in [0, 1]


def words(text: str | None) -> set[str]:
    found = re.findall(r"[a-z]+(?:-[a-z]+)*", (text or "").lower())
    return {SPELLINGS.get(w, w) for w in found}


def with_phrase(query: str | None, phrase: str) -> str:
    """The query with one phrase appended after a comma (the search page does the same)."""
    base = (query or "").strip().rstrip(".,;: ")
    return f"{base}, {phrase}" if base else phrase


def unsaid(query: str | None, vocabulary: Sequence[Phrase] = VOCABULARY) -> list[Phrase]:
    """The phrases with at least one word the query does not already contain."""
    said = words(query)
    return [p for p in vocabulary if not words(p.text) <= said]


def suggest(
    encode_text: EncodeText,
    query: str | None,
    examples: Examples | None,
    query_vector: np.ndarray,
    hit_vectors: np.ndarray,
    count: int,
    vocabulary: Sequence[Phrase] = VOCABULARY,
) -> list[Suggestion]:
    """Up to ``count`` phrases, best first, that split the images ``hit_vectors`` (the top
    results' vectors, rows) most, against the vector the results were ranked by; only phrases
    that would reorder something, so empty when nothing would (or fewer than two images)."""
    candidates = unsaid(query, vocabulary)
    if len(hit_vectors) < 2 or not candidates or count < 1:
        return []
    texts = [with_phrase(query, p.text) for p in candidates]
    text_vectors = encode_text(texts)  # one batch for every candidate
    base = hit_vectors @ query_vector
    queries = np.stack([_joined(t, examples, query_vector) for t in text_vectors])
    rescored = hit_vectors @ queries.T  # (images, phrases)
    score = reordering(base, rescored) * evenness(rescored - base[:, None])
    chosen: list[Suggestion] = []
    per_slot: dict[str, int] = {}
    for n in np.argsort(-score, kind="stable"):
        phrase = candidates[int(n)]
        if score[n] <= 0:
            break  # it would reorder nothing: not a question worth asking
        if per_slot.get(phrase.slot, 0) >= MAX_PER_SLOT:
            continue
        per_slot[phrase.slot] = per_slot.get(phrase.slot, 0) + 1
        chosen.append(Suggestion(phrase.text, texts[int(n)], round(float(score[n]), 6)))
        if len(chosen) == count:
            break
    return chosen


def _joined(text: np.ndarray, examples: Examples | None, fallback: np.ndarray) -> np.ndarray:
    """The candidate's query vector; the unchanged query (a score of 0) in the corner case
    where the phrase's text and the examples cancel out."""
    try:
        return job_vector(text, examples)
    except QueryVectorError:
        return fallback


def reordering(base: np.ndarray, rescored: np.ndarray) -> np.ndarray:
    """Per column of ``rescored`` (images × phrases): the fraction of image pairs whose order
    differs from ``base`` (Kendall's distance, 0 = same order, 1 = reversed)."""
    m = len(base)
    before = np.sign(base[:, None] - base[None, :])[:, :, None]
    after = np.sign(rescored[:, None, :] - rescored[None, :, :])
    swapped = (before * after < 0).sum(axis=(0, 1)) / 2
    return swapped / (m * (m - 1) / 2)


def evenness(moved: np.ndarray) -> np.ndarray:
    """Per column of ``moved`` (images × phrases, each image's score change): 4·f·(1−f) for
    the share f of images above the best two-group split (the one with the largest
    between-group variance, Otsu's rule): 1 for halves, near 0 for one image against the rest."""
    m = len(moved)
    ordered = np.sort(moved, axis=0)
    k = np.arange(1, m)[:, None]  # images below the split
    low = np.cumsum(ordered, axis=0)[:-1] / k
    high = (ordered.sum(axis=0) - np.cumsum(ordered, axis=0)[:-1]) / (m - k)
    between = k * (m - k) * (high - low) ** 2
    best = np.argmax(between, axis=0) + 1  # images below the best split
    share = (m - best) / m
    return 4 * share * (1 - share)
