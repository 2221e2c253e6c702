"""FAISS helpers: copy-on-write updates per kind, extraction, GPU policy without a GPU."""

from __future__ import annotations

import numpy as np
import pytest

from index.errors import IndexStoreError
from index.faiss import backend as faiss_backend
from tests.index.conftest import random_unit


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_updates_leave_the_original_untouched(kind: str) -> None:
    x = random_unit(120, 8, 0)
    ids = np.arange(100, 220)
    base = faiss_backend.build(kind, 8, x, ids)
    grown = faiss_backend.with_added(base, kind, random_unit(5, 8, 1), np.arange(500, 505))
    shrunk = faiss_backend.with_removed(grown, kind, np.array([100, 501]))
    assert (base.ntotal, grown.ntotal, shrunk.ntotal) == (120, 125, 123)
    assert faiss_backend.kind_of(shrunk) == kind
    got_ids, got_x = faiss_backend.extract(shrunk)
    assert sorted(got_ids) == sorted([*range(101, 220), 500, 502, 503, 504])
    order = np.argsort(got_ids)
    np.testing.assert_array_equal(got_x[order][:119], x[1:])
    assert sorted(faiss_backend.ids_of(base)) == list(ids)


def test_ivf_list_count_grows_with_data() -> None:
    assert faiss_backend.ivf_lists(0) == 1 and faiss_backend.ivf_lists(50) == 1
    assert faiss_backend.ivf_lists(10_000) == 256
    assert faiss_backend.ivf_lists(1_000_000) == 4000


def test_gpu_policy_without_gpu() -> None:
    if faiss_backend.gpu_count() > 0:
        pytest.skip("a GPU is present")
    assert faiss_backend.resolve_use_gpu("auto", "flat") is False
    assert faiss_backend.resolve_use_gpu("never", "flat") is False
    with pytest.raises(IndexStoreError, match="no CUDA GPU"):
        faiss_backend.resolve_use_gpu("always", "flat")
    with pytest.raises(IndexStoreError, match="unknown use_gpu"):
        faiss_backend.resolve_use_gpu("sometimes", "flat")


def test_faiss_messages_lose_the_cpp_location() -> None:
    err = RuntimeError(
        "Error in faiss::Index* faiss::read_index(IOReader*, int) at /project/faiss/impl/"
        'index_read.cpp:3251: Index type 0x4b4e554a ("JUNK") not recognized'
    )
    assert faiss_backend.faiss_reason(err) == 'Index type 0x4b4e554a ("JUNK") not recognized'
