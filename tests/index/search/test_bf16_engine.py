"""The bf16 engine: its error bound holds for the kernels it runs, and its answers are the exact
ones (ids in float64 order, ties aside, and float64 scores), proven or searched again in fp32."""

from __future__ import annotations

import faiss
import numpy as np
import pytest
import torch

from index.search.bf16_bound import row_errors, upper_exact
from index.search.bf16_engine import Bf16Rescore, candidates_for, packing_available
from index.search.exact_engines import NumpyFp32
from index.search.flat_view import FlatView
from tests.index.conftest import random_unit

KERNELS = [pytest.param(True, id="packed"), pytest.param(False, id="plain")]


def flat_master(vectors: np.ndarray, ids: np.ndarray | None = None) -> faiss.Index:
    master = faiss.IndexIDMap2(faiss.IndexFlatIP(vectors.shape[1]))
    master.add_with_ids(vectors, np.arange(len(vectors)) if ids is None else ids)
    return master


def engine(vectors: np.ndarray, packed: bool, block_rows: int = 4096) -> Bf16Rescore:
    if packed and not packing_available():
        pytest.skip("this torch build cannot pre-pack bf16 weights for oneDNN")
    view = FlatView(flat_master(vectors))
    return Bf16Rescore(view, NumpyFp32(view), packed=packed, block_rows=block_rows)


def assert_exact(
    scores: np.ndarray, positions: np.ndarray, vectors: np.ndarray, queries: np.ndarray
) -> None:
    """Rank by rank, the float64 score of the position returned equals the float64 reference
    score of that rank (so ids agree except between tied scores), and the score returned is
    that score; no position twice in a row."""
    exact = queries.astype(np.float64) @ vectors.astype(np.float64).T
    k = positions.shape[1]
    want = -np.sort(-exact, axis=1)[:, :k]
    got = np.take_along_axis(exact, positions, axis=1)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    np.testing.assert_allclose(scores, got, rtol=0, atol=1e-6)
    assert all(len(set(row)) == k for row in positions.tolist())


@pytest.mark.parametrize("packed", KERNELS)
def test_the_bound_holds_for_the_kernel(packed: bool) -> None:
    """Every vector's exact score is at most upper(its bf16 score), for unit and scaled queries
    and a gallery of mixed norms."""
    vectors = random_unit(20_000, 512, 0) * np.random.default_rng(1).uniform(0.3, 1.0, (20_000, 1))
    vectors = vectors.astype(np.float32)
    found = engine(vectors, packed)
    queries = np.concatenate([random_unit(6, 512, 2), 3.0 * random_unit(2, 512, 3)])
    exact = queries.astype(np.float64) @ vectors.astype(np.float64).T
    rounded = torch.from_numpy(queries).to(torch.bfloat16)
    with torch.inference_mode():
        bf16 = torch.cat([found._score(rounded, block) for _, block in found._blocks], dim=1)
    bf16 = bf16.float().numpy()
    errors = row_errors(queries, rounded.float().numpy(), found.gallery_norm)
    for row in range(len(queries)):
        assert (exact[row] <= upper_exact(bf16[row], errors[row])).all()
        assert (exact[row] - bf16[row]).max() > 0  # the bound is not vacuous: errors exist


@pytest.mark.parametrize("packed", KERNELS)
@pytest.mark.parametrize("seed", [0, 1])
def test_random_100k_gallery_is_exact(packed: bool, seed: int) -> None:
    vectors = random_unit(100_000, 512, seed)
    queries = random_unit(16, 512, 100 + seed)
    found = engine(vectors, packed, block_rows=32_768)
    for k in (1, 10, 100):
        assert_exact(*found.search(queries, k), vectors, queries)
    assert found.counters.queries == 48
    # Random data: always proven in the first pass.
    assert found.counters.second_pass_queries == found.counters.fp32_fallback_queries == 0


@pytest.mark.parametrize("packed", KERNELS)
def test_synthetic_like_gallery_is_exact(packed: bool, gallery) -> None:
    """100k vectors clustered like a re-id gallery (the synthetic set's encoded images, each
    with many near-duplicates): near ties everywhere, still the exact ranking."""
    base = gallery.vectors.astype(np.float32)
    rng = np.random.default_rng(7)
    picks = rng.integers(0, len(base), 100_000)
    noise = rng.standard_normal((100_000, base.shape[1])).astype(np.float32)
    vectors = base[picks] + 0.15 * noise / np.sqrt(base.shape[1])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = base[rng.integers(0, len(base), 12)] + 0.3 * rng.standard_normal(
        (12, base.shape[1])
    ).astype(np.float32) / np.sqrt(base.shape[1])
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    found = engine(vectors, packed, block_rows=16_384)
    for k in (1, 10, 50):
        assert_exact(*found.search(queries, k), vectors, queries)
    assert found.counters.second_pass_queries > 0  # the near ties took the second pass


@pytest.mark.parametrize(("copies", "second", "fallback"), [(500, 1, 0), (2000, 1, 1)])
def test_unproven_rows_get_a_second_pass_then_fp32(copies: int, second: int, fallback: int) -> None:
    """``copies`` copies of the first query's best match: the k-th re-scored score ties the C-th
    bf16 one and nothing is proven. A second pass collects every vector that could still be in
    the top k (the copies) and re-scores them; past n/8 of them the fp32 engine answers."""
    vectors = random_unit(10_000, 64, 4)
    vectors[:copies] = vectors[0]
    queries = np.stack([vectors[0], random_unit(1, 64, 5)[0]])
    found = engine(vectors, packed=False)
    scores, positions = found.search(queries, 5)
    assert found.counters.second_pass_queries == second
    assert found.counters.fp32_fallback_queries == fallback
    assert set(positions[0]) <= set(range(copies))
    assert_exact(scores, positions, vectors, queries)


def test_a_gallery_no_larger_than_the_candidates_goes_straight_to_fp32() -> None:
    vectors = random_unit(60, 16, 6)
    found = engine(vectors, packed=False)
    assert candidates_for(10) >= 60
    assert_exact(*found.search(random_unit(3, 16, 7), 10), vectors, random_unit(3, 16, 7))
    assert found.counters.searches == 0  # the fp32 engine answered


def test_large_batches_are_scored_in_bounded_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a score budget of one block per query, a batch is scored a query at a time and the
    answers do not change."""
    import index.search.bf16_engine as bf16_engine

    vectors, queries = random_unit(20_000, 32, 8), random_unit(9, 32, 9)
    found = engine(vectors, packed=False, block_rows=4096)
    whole = found.search(queries, 10)
    monkeypatch.setattr(bf16_engine, "SCORE_BYTES", 2 * 4096)
    np.testing.assert_array_equal(found.search(queries, 10)[1], whole[1])
    assert_exact(*whole, vectors, queries)
