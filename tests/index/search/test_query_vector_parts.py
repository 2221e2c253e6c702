"""Relevance feedback in parts mode: nothing is normalised as a whole, examples are weighted
like the caption's query, and whatever scale a store keeps rows at does not change them."""

from __future__ import annotations

import numpy as np
import pytest

from bundle.parts_layout import PartsLayout
from index.search.query_vector import QueryVectorError, combine

LAYOUT = PartsLayout(global_dim=16, coarse=2, fine=3, part_dim=8)


def _gallery(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return LAYOUT.unit_blocks(rng.standard_normal((n, LAYOUT.dim)).astype(np.float32))


def test_a_text_query_is_left_as_it_is() -> None:
    q = LAYOUT.weigh(_gallery(1, 0))[0]
    assert np.array_equal(combine(q, parts=LAYOUT), q)  # not renormalised


def test_an_example_is_a_query_weighted_like_a_caption() -> None:
    gallery = _gallery(5, 1)
    weights = {"global": 2.0, "coarse": 0.5, "fine": 1.0}
    for stored in (gallery, LAYOUT.to_store(gallery)):  # G, or G/√(1+M+K) as a store keeps it
        q = combine(None, stored[:1], parts=LAYOUT, weights=weights)
        assert np.allclose(q, LAYOUT.weigh(gallery[:1], weights)[0], atol=1e-6)
        assert float(gallery[0] @ q) == pytest.approx(sum(weights.values()), abs=1e-5)


def test_text_and_examples_add_up() -> None:
    gallery = _gallery(4, 2)
    text = LAYOUT.weigh(_gallery(1, 3))[0]
    q = combine(text, gallery[:2], gallery[2:3], alpha=0.5, beta=0.25, parts=LAYOUT)
    mean = LAYOUT.unit_blocks(gallery[:2]).mean(axis=0, keepdims=True)
    want = text + 0.5 * LAYOUT.weigh(mean)[0] - 0.25 * LAYOUT.weigh(gallery[2:3])[0]
    assert np.allclose(q, want, atol=1e-6)


def test_examples_that_cancel_out_are_refused() -> None:
    gallery = _gallery(1, 4)
    with pytest.raises(QueryVectorError, match="cancel out"):
        combine(None, gallery, gallery, alpha=1.0, beta=1.0, parts=LAYOUT)
    with pytest.raises(QueryVectorError, match="must be > 0"):
        combine(None, gallery, parts=LAYOUT, weights={"global": 0, "coarse": 0, "fine": 0})
