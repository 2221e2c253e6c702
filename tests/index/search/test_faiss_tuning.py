"""FAISS's flat-search settings: applied on import of the backend, scoped by ``settings``, and
the same answers either way (only speed changes)."""

from __future__ import annotations

import numpy as np

from index.faiss import backend as faiss_backend
from index.search import faiss_tuning
from tests.index.conftest import random_unit


def test_the_backend_applies_the_tuned_settings() -> None:
    assert faiss_backend.KINDS  # imported: its import applied the settings
    assert faiss_tuning.current() == faiss_tuning.TUNED


def test_settings_are_scoped_and_answers_do_not_change() -> None:
    vectors, queries = random_unit(30_000, 64, 0), random_unit(64, 64, 1)
    master = faiss_backend.build("flat", 64, vectors, np.arange(30_000))
    for batch in (1, 2, 64):
        tuned = master.search(queries[:batch], 10)
        with faiss_tuning.settings(faiss_tuning.SHIPPED):
            assert faiss_tuning.current() == faiss_tuning.SHIPPED
            shipped = master.search(queries[:batch], 10)
        assert faiss_tuning.current() == faiss_tuning.TUNED
        np.testing.assert_array_equal(tuned[1], shipped[1])
        np.testing.assert_allclose(tuned[0], shipped[0], rtol=0, atol=1e-5)
