"""Exact search of a flat snapshot: every engine gives the float64 ranking, the store answers
with its ids through the policy's engine, deletes and filters still apply, and a batch reaches
its engine in one call."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import faiss
import numpy as np
import pytest

from index.faiss import backend as faiss_backend
from index.faiss.gallery import GalleryIndex
from index.filters import GalleryFilter
from index.search.engine_policy import BF16_RESCORE, FAISS_FLAT, NUMPY_FP32, EnginePolicy
from index.search.exact_engines import FaissFlat, NumpyFp32, TorchFp32
from index.search.exact_search import ExactSearch
from index.search.flat_view import FlatView
from tests.index.conftest import assert_matches_brute_force, fake_items, random_unit
from tests.index.search.test_bf16_engine import assert_exact, flat_master

FP = "e" * 64
ALWAYS_BF16 = EnginePolicy(forced=BF16_RESCORE)


def test_the_view_is_faiss_own_memory() -> None:
    vectors = random_unit(1000, 24, 0)
    master = flat_master(vectors, np.arange(1000) * 7)
    view = FlatView(master)
    np.testing.assert_array_equal(view.vectors, vectors)
    np.testing.assert_array_equal(view.ids, np.arange(1000) * 7)
    assert not view.vectors.flags.owndata and not view.vectors.flags.writeable
    assert view.tensor.data_ptr() == view.vectors.ctypes.data
    # Removing from a copy leaves this view's master (and memory) untouched.
    smaller = faiss_backend.with_removed(master, "flat", np.array([0, 7]))
    assert FlatView(smaller).n == 998 and view.n == 1000
    np.testing.assert_array_equal(view.vectors, vectors)


def test_a_flat_view_needs_a_flat_id_map() -> None:
    with pytest.raises(TypeError, match="IndexIDMap2"):
        FlatView(faiss.IndexFlatIP(4))
    assert FlatView(flat_master(np.zeros((0, 4), np.float32))).n == 0


@pytest.mark.parametrize("make", [NumpyFp32, TorchFp32, "faiss"])
def test_fp32_engines_give_the_float64_ranking(make: object, monkeypatch) -> None:
    """On a random 100k × 512 gallery, at batch 1 and 16, with the score budget cut so the
    gallery is scored in several blocks."""
    import index.search.exact_engines as exact_engines

    vectors, queries = random_unit(100_000, 512, 1), random_unit(16, 512, 2)
    master = flat_master(vectors)
    view = FlatView(master)
    found = FaissFlat(view, master) if make == "faiss" else make(view)
    monkeypatch.setattr(exact_engines, "SCORE_BYTES", 16 * 4 * 30_000)
    for batch, k in ((1, 10), (16, 10), (16, 100)):
        assert_exact(*found.search(queries[:batch], k), vectors, queries[:batch])


class Spy:
    """An engine that records the batch sizes it was called with."""

    def __init__(self, inner: object, name: str) -> None:
        self.inner, self.name, self.batches = inner, name, []

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        self.batches.append(len(queries))
        return self.inner.search(queries, k)


def test_a_batch_reaches_its_engine_in_one_call_and_comes_back_as_ids() -> None:
    vectors = random_unit(5000, 32, 3)
    ids = np.arange(5000) * 3 + 11
    exact = ExactSearch(flat_master(vectors, ids), ALWAYS_BF16)
    spy = Spy(exact.engines[BF16_RESCORE], BF16_RESCORE)
    exact.engines[BF16_RESCORE] = spy
    queries = random_unit(48, 32, 4)
    _, found = exact.search(queries, 10)
    assert spy.batches == [48]
    reference = np.argsort(-(queries.astype(np.float64) @ vectors.astype(np.float64).T), axis=1)
    np.testing.assert_array_equal(found, ids[reference[:, :10]])
    described = exact.describe()
    assert described["engine"] == dict.fromkeys(("batch_1", "batch_8", "batch_64"), BF16_RESCORE)
    assert described["reason"] == "forced"
    assert described["searches"] == {BF16_RESCORE: 1}
    assert described["bf16"]["queries"] == 48 and described["bf16"]["fp32_fallback_queries"] == 0


def test_the_default_policy_keeps_small_galleries_on_faiss() -> None:
    exact = ExactSearch(flat_master(random_unit(2000, 16, 5)))
    assert exact.bf16 is None and set(exact.engines) == {FAISS_FLAT, NUMPY_FP32}
    described = exact.describe()
    assert described["engine"] == dict.fromkeys(("batch_1", "batch_8", "batch_64"), FAISS_FLAT)
    assert described["reason"] == "detected"


@pytest.fixture(scope="module")
def store_data() -> tuple[np.ndarray, list, np.ndarray]:
    n = 3000
    return (
        random_unit(n, 64, 6),
        fake_items([f"img{j:05d}" for j in range(n)]),
        random_unit(8, 64, 7),
    )


@pytest.mark.parametrize("policy", [ALWAYS_BF16, EnginePolicy()], ids=["bf16", "default"])
def test_the_store_serves_the_exact_ranking_after_deletes(
    tmp_path: Path, store_data: tuple, policy: EnginePolicy
) -> None:
    vectors, items, queries = store_data
    names = [item.image_id for item in items]
    with GalleryIndex.create(
        tmp_path / "idx", FP, 64, "flat", "never", engine_policy=policy
    ) as index:
        index.add(vectors, items)
        for hits, query in zip(index.search(queries, 20), queries, strict=True):
            assert_matches_brute_force(hits, vectors, names, query, 20)
        # Remove every query's current best: they never come back, the rest is re-ranked.
        best = {hits[0].image_id for hits in index.search(queries, 1)}
        index.remove(sorted(best))
        keep = [j for j, name in enumerate(names) if name not in best]
        for hits, query in zip(index.search(queries, 20), queries, strict=True):
            assert not best & {h.image_id for h in hits}
            assert_matches_brute_force(hits, vectors[keep], [names[j] for j in keep], query, 20)
        stats = index.stats()["search_engine"]
        want = BF16_RESCORE if policy.forced else FAISS_FLAT
        assert set(stats["engine"].values()) == {want}
        assert stats["searches"] == {want: 1}  # the snapshot after the delete: one batch


def test_filters_still_rank_among_what_passes(tmp_path: Path, store_data: tuple) -> None:
    vectors, items, queries = store_data
    passing = {f"img{j:05d}" for j in range(0, 3000, 3)}
    rows = [j for j, item in enumerate(items) if item.image_id in passing]
    where = GalleryFilter(person_ids=("p0",))
    with GalleryIndex.create(
        tmp_path / "idx", FP, 64, "flat", "never", engine_policy=ALWAYS_BF16
    ) as index:
        index.add(vectors[rows], fake_items(sorted(passing), person="p0"))
        others = [j for j in range(3000) if j not in set(rows)]
        index.add(vectors[others], fake_items([f"other{j}" for j in others], person="p1"))
        for hits, query in zip(index.search(queries, 15, where), queries, strict=True):
            assert_matches_brute_force(hits, vectors[rows], sorted(passing), query, 15)


def test_stats_name_faiss_for_the_approximate_kinds(tmp_path: Path) -> None:
    with GalleryIndex.create(tmp_path / "idx", FP, 8, "hnsw", "never") as index:
        assert index.stats()["search_engine"]["engine"]["batch_1"] == "faiss-cpu-hnsw"


def test_opening_and_writing_a_small_index_does_not_import_torch(tmp_path: Path) -> None:
    """torch takes seconds to import: CLI commands and writers that never search skip it."""
    code = f"""
import sys
import numpy as np
from index.faiss.gallery import GalleryIndex
from tests.index.conftest import fake_items, random_unit
with GalleryIndex.create({str(tmp_path / "idx")!r}, {FP!r}, 8, "flat", "never") as index:
    index.add(random_unit(100, 8, 0), fake_items([f"i{{j}}" for j in range(100)]))
    index.remove(["i3"])
assert "torch" not in sys.modules, "torch was imported"
"""
    root = Path(__file__).resolve().parents[3]
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True, timeout=120)
