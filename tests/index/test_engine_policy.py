"""The engine policy: GPU → FAISS's GPU copy; CPU → FAISS's flat search (tuned) for small
galleries, the bf16 scan with an exact re-score from ``bf16_min_rows`` on; without bf16, large
galleries still send one query to numpy's sgemv."""

from __future__ import annotations

import pytest

from index.engine_policy import (
    BF16_RESCORE,
    CPU,
    DEFAULT_POLICY,
    FAISS_FLAT,
    FAISS_GPU,
    GPU,
    NUMPY_FP32,
    EnginePolicy,
)


@pytest.mark.parametrize("batch", [1, 64, 2048])
def test_choices_by_device_and_gallery_size(batch: int) -> None:
    edge = DEFAULT_POLICY.bf16_min_rows
    assert DEFAULT_POLICY.choose(GPU, batch, 10**6) == FAISS_GPU
    assert DEFAULT_POLICY.choose(CPU, batch, edge - 1) == FAISS_FLAT
    assert DEFAULT_POLICY.choose(CPU, batch, edge) == BF16_RESCORE
    assert DEFAULT_POLICY.choose(CPU, batch, 10**6) == BF16_RESCORE
    without = EnginePolicy(bf16=False)
    assert without.choose(CPU, batch, 10**6) == (NUMPY_FP32 if batch == 1 else FAISS_FLAT)
    assert without.choose(CPU, batch, 1000) == FAISS_FLAT


def test_the_bf16_copy_is_made_only_where_it_is_served() -> None:
    policy = EnginePolicy(bf16_min_rows=1000)
    assert not policy.wants_bf16(999) and policy.wants_bf16(1000)
    assert not EnginePolicy(bf16=False).wants_bf16(10**7)


def test_bad_questions() -> None:
    with pytest.raises(ValueError, match="device"):
        DEFAULT_POLICY.choose("tpu", 1, 10)
    with pytest.raises(ValueError, match="batch"):
        DEFAULT_POLICY.choose(CPU, 0, 10)
