"""Example images of a search request: gallery ids (and an uploaded photo) → :class:`Examples`.

"More like this" and "not this person" name gallery images; their vectors are the ones the store
already holds (``GalleryStore.vectors``), so no image is decoded or encoded again, and the
combination with the text (index/search/query_vector.py) sees exactly what the index ranks. An
uploaded photo is encoded by the route and joins the positives. Every id must exist: a search that
silently dropped an example the operator chose would answer a different question, so unknown
ids are refused by name.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from index.gallery_store import GalleryStore
from service.access.retention import is_expired
from service.query import Examples


class UnknownExamplesError(LookupError):
    """Example ids the gallery does not hold (404)."""

    def __init__(self, ids: Sequence[str]) -> None:
        self.ids = list(ids)
        names = ", ".join(repr(i) for i in self.ids)
        super().__init__(f"no gallery image with id {names}")


class ConflictingExamplesError(ValueError):
    """The same image given as a positive and a negative example (422)."""


def distinct(ids: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(ids))


def check_disjoint(positive_ids: Sequence[str], negative_ids: Sequence[str]) -> None:
    both = [i for i in distinct(positive_ids) if i in set(negative_ids)]
    if both:
        names = ", ".join(repr(i) for i in both)
        raise ConflictingExamplesError(
            f"{names} is in both positive_ids and negative_ids: say which it is"
        )


def load_examples(
    store: GalleryStore,
    positive_ids: Sequence[str],
    negative_ids: Sequence[str],
    alpha: float,
    beta: float,
    exclude: bool = True,
    uploaded: np.ndarray | None = None,
    cutoff: float | None = None,
) -> Examples | None:
    """The examples of one request (None when there are none): gallery vectors read in one
    store call, then ``uploaded`` (rows, e.g. an encoded photo) as further positives. Raises
    UnknownExamplesError naming every id the store does not hold, ConflictingExamplesError for
    an id given both ways. An image past the retention ``cutoff`` counts as one the store does
    not hold. Blocking: call it from a worker thread."""
    positives, negatives = distinct(positive_ids), distinct(negative_ids)
    check_disjoint(positives, negatives)
    wanted = [*positives, *negatives]
    if not wanted and uploaded is None:
        return None
    found = store.vectors(wanted) if wanted else {}
    if cutoff is not None:
        for image_id in list(found):
            item = store.get(image_id)
            if item is None or is_expired(item, cutoff):
                del found[image_id]
    missing = [i for i in wanted if i not in found]
    if missing:
        raise UnknownExamplesError(missing)
    dim = store.dim
    pos_rows = [np.asarray(found[i], np.float32).reshape(dim) for i in positives]
    if uploaded is not None:
        pos_rows += list(np.asarray(uploaded, np.float32).reshape(-1, dim))
    return Examples(
        positives=_rows(pos_rows, dim),
        negatives=_rows([np.asarray(found[i], np.float32).reshape(dim) for i in negatives], dim),
        alpha=alpha,
        beta=beta,
        exclude=frozenset(wanted) if exclude else frozenset(),
    )


def _rows(rows: list[np.ndarray], dim: int) -> np.ndarray:
    return np.stack(rows) if rows else np.zeros((0, dim), np.float32)
