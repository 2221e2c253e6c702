"""The one combination of text and example images (index/search/query_vector.py)."""

from __future__ import annotations

import numpy as np
import pytest

from index.search.query_vector import (
    DEFAULT_ALPHA,
    DEFAULT_BETA,
    MAX_WEIGHT,
    QueryVectorError,
    combine,
)


def unit(*values: float) -> np.ndarray:
    v = np.asarray(values, np.float32)
    return v / np.linalg.norm(v)


def test_it_is_the_documented_formula() -> None:
    rng = np.random.default_rng(0)
    t = unit(*rng.standard_normal(8))
    pos = np.stack([unit(*rng.standard_normal(8)) for _ in range(3)])
    neg = np.stack([unit(*rng.standard_normal(8)) for _ in range(2)])
    want = t + 0.7 * pos.mean(axis=0) - 0.3 * neg.mean(axis=0)
    got = combine(t, pos, neg, alpha=0.7, beta=0.3)
    np.testing.assert_allclose(got, want / np.linalg.norm(want), rtol=1e-5, atol=1e-6)
    assert got.dtype == np.float32 and got.shape == (8,)


def test_text_alone_is_the_text() -> None:
    t = unit(1, 2, 3)
    np.testing.assert_allclose(combine(t), t, atol=1e-6)
    np.testing.assert_allclose(combine(t, np.zeros((0, 3)), np.zeros((0, 3))), t, atol=1e-6)


def test_image_only_query_is_the_positives_direction() -> None:
    pos = np.stack([unit(1, 0, 0), unit(0, 1, 0)])
    np.testing.assert_allclose(combine(None, pos), unit(1, 1, 0), atol=1e-6)
    # Without text, alpha only sets the balance against beta.
    neg = unit(0, 0, 1)[None]
    np.testing.assert_allclose(
        combine(None, pos, neg, alpha=2.0, beta=1.0),
        combine(None, pos, neg, alpha=4.0, beta=2.0),
        atol=1e-6,
    )


def test_example_rows_count_as_unit_vectors() -> None:
    """A store that reads back slightly off-unit vectors weights no example above another."""
    pos = np.stack([unit(1, 0) * 3.0, unit(0, 1) * 0.5])
    np.testing.assert_allclose(combine(None, pos), unit(1, 1), atol=1e-6)


def test_negatives_push_away() -> None:
    t, pos, neg = unit(1, 1, 0), unit(1, 0, 0)[None], unit(0, 1, 0)[None]
    q = combine(t, pos, neg, alpha=1.0, beta=1.0)
    assert q @ unit(1, 0, 0) > t @ unit(1, 0, 0)
    assert q @ unit(0, 1, 0) < t @ unit(0, 1, 0)


@pytest.mark.parametrize(
    ("text", "pos", "neg", "alpha", "beta", "says"),
    [
        (None, None, None, 1.0, 0.25, "nothing to search for"),
        (None, None, unit(1, 0)[None], 1.0, 0.25, "nothing to search for"),
        (None, unit(1, 0)[None], unit(1, 0)[None], 1.0, 1.0, "cancel out"),
        (unit(1, 0), None, None, -0.1, 0.25, "alpha and beta"),
        (unit(1, 0), None, None, 1.0, MAX_WEIGHT + 1, "alpha and beta"),
    ],
)
def test_refusals_say_why(text, pos, neg, alpha: float, beta: float, says: str) -> None:
    with pytest.raises(QueryVectorError, match=says):
        combine(text, pos, neg, alpha, beta)


def test_defaults_are_in_range() -> None:
    assert 0 < DEFAULT_ALPHA <= MAX_WEIGHT and 0 <= DEFAULT_BETA <= MAX_WEIGHT
