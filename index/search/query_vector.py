"""One query vector from a description and example images (relevance feedback, Rocchio-style).

A text query alone cannot settle a vague description; the operator's "this one" and "not this
one" can. Both towers put text and images on the same unit sphere, so examples join the query
by vector arithmetic, with no retraining:

    q = normalise( t + alpha * mean(positives) - beta * mean(negatives) )

where ``t`` is the L2-normalised text embedding (left out when there is no text) and the
examples are L2-normalised image embeddings (gallery vectors read from the store, or an
uploaded image encoded by the image tower). Without text, ``alpha`` only sets the balance
against ``beta``; with text, it says how far the examples pull the query away from the words.
The defaults (words and examples weigh the same, negatives a quarter: Rocchio's classic
ratios) are measured by ``python -m bench.feedback`` (docs/searching.md, "Interactive search").

The service (service/query.py) and the index CLI (``python -m index search``) both call
:func:`combine`, so the same request ranks the same way from either.

Parts mode (bundle/parts_layout.py) normalises nothing as a whole: the text's query Q already
carries the part weights, and an example image serves as a query the way a caption would, its
blocks each unit-norm and weighted like Q's. So

    q = Q + alpha * weigh(mean(unit blocks of positives)) - beta * weigh(mean(... negatives))

and a plain text query scores S of docs/parts.md exactly, a single photo the same S with the
photo's blocks in the caption's place.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from bundle.parts_layout import PartsLayout, PartsWeightsError

DEFAULT_ALPHA = 1.0
DEFAULT_BETA = 0.25
MAX_WEIGHT = 10.0  # alpha and beta above this drown the text entirely; refused by both callers
# A combination shorter than this has no direction left (e.g. one image given as both a
# positive and a negative with alpha == beta, and no text).
MIN_NORM = 1e-6


class QueryVectorError(ValueError):
    """The inputs give no query direction; the message says why."""


def _mean(vectors: np.ndarray | None, dim: int) -> np.ndarray | None:
    """The mean of the rows, each L2-normalised first (the stores hold unit vectors already;
    this keeps an approximate read-back from weighting one example above another)."""
    if vectors is None or np.size(vectors) == 0:
        return None
    rows = np.asarray(vectors, dtype=np.float32).reshape(-1, dim)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return (rows / np.maximum(norms, MIN_NORM)).mean(axis=0)


def combine(
    text: np.ndarray | None,
    positives: np.ndarray | None = None,
    negatives: np.ndarray | None = None,
    alpha: float = DEFAULT_ALPHA,
    beta: float = DEFAULT_BETA,
    parts: PartsLayout | None = None,
    weights: Mapping[str, float] | None = None,
) -> np.ndarray:
    """The unit query vector (float32, shape (dim,)) for a text embedding and example image
    embeddings (rows); every input is expected L2-normalised, as the encoders and stores give
    them. Raises QueryVectorError when there is neither text nor a positive example, when a
    weight is out of [0, MAX_WEIGHT], or when the terms cancel out.

    ``parts``: the parts layout of ``text`` (a weighted query Q) and of the examples (gallery
    or photo vectors, any per-block scale); ``weights`` (the same as Q's) weigh the examples'
    blocks. Nothing is normalised as a whole then (see the module's docstring)."""
    if not 0.0 <= alpha <= MAX_WEIGHT or not 0.0 <= beta <= MAX_WEIGHT:
        raise QueryVectorError(f"alpha and beta must be in [0, {MAX_WEIGHT:g}]")
    if parts is not None:
        return _combine_parts(parts, weights, text, positives, negatives, alpha, beta)
    known = [v for v in (text, positives, negatives) if v is not None and np.size(v)]
    if not known:
        raise QueryVectorError("nothing to search for: give a text or a positive example")
    dim = int(np.shape(known[0])[-1])
    query = _rocchio(dim, text, _mean(positives, dim), _mean(negatives, dim), alpha, beta)
    return (query / np.linalg.norm(query)).astype(np.float32)


def _rocchio(
    dim: int,
    text: np.ndarray | None,
    pos: np.ndarray | None,
    neg: np.ndarray | None,
    alpha: float,
    beta: float,
) -> np.ndarray:
    """t + alpha * pos - beta * neg; raises when there is nothing to search for or it cancels."""
    if text is None and pos is None:
        raise QueryVectorError("nothing to search for: give a text or a positive example")
    query = np.zeros(dim, np.float32)
    if text is not None:
        query += np.asarray(text, dtype=np.float32).reshape(dim)
    if pos is not None:
        query += np.float32(alpha) * pos
    if neg is not None:
        query -= np.float32(beta) * neg
    norm = float(np.linalg.norm(query))
    if not np.isfinite(norm) or norm < MIN_NORM:
        raise QueryVectorError("the examples cancel out: nothing is left to search for")
    return query


def _combine_parts(
    layout: PartsLayout,
    weights: Mapping[str, float] | None,
    text: np.ndarray | None,
    positives: np.ndarray | None,
    negatives: np.ndarray | None,
    alpha: float,
    beta: float,
) -> np.ndarray:
    def weighed_mean(vectors: np.ndarray | None) -> np.ndarray | None:
        if vectors is None or np.size(vectors) == 0:
            return None
        rows = layout.unit_blocks(np.asarray(vectors, np.float32).reshape(-1, layout.dim))
        try:
            return layout.weigh(rows.mean(axis=0, keepdims=True), weights)[0]
        except PartsWeightsError as err:
            raise QueryVectorError(str(err)) from None

    pos, neg = weighed_mean(positives), weighed_mean(negatives)
    return _rocchio(layout.dim, text, pos, neg, alpha, beta)
