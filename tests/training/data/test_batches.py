"""Plain random batches and the per-process share of a global batch."""

from __future__ import annotations

import pytest

from training.data.batches import RandomBatchSampler, RankSlice


def _epoch(sampler: RandomBatchSampler | RankSlice, epoch: int) -> list[list[int]]:
    sampler.set_epoch(epoch)
    return list(sampler)


def test_random_batches_cover_distinct_samples_and_drop_the_remainder() -> None:
    sampler = RandomBatchSampler(23, 5, seed=3)
    batches = _epoch(sampler, 0)
    assert len(batches) == len(sampler) == 4 and sampler.dropped_per_epoch == 3
    flat = [i for b in batches for i in b]
    assert all(len(b) == 5 for b in batches) and len(set(flat)) == 20
    assert set(flat) <= set(range(23))


def test_random_batches_depend_on_seed_and_epoch_only() -> None:
    a, b = RandomBatchSampler(40, 8, seed=1), RandomBatchSampler(40, 8, seed=1)
    assert _epoch(a, 2) == _epoch(b, 2)
    assert _epoch(a, 2) != _epoch(a, 3)
    assert _epoch(RandomBatchSampler(40, 8, seed=2), 2) != _epoch(a, 2)


def test_rank_slices_partition_each_global_batch_in_rank_order() -> None:
    shares = [_epoch(RankSlice(RandomBatchSampler(40, 8, seed=1), 8, r, 4), 1) for r in range(4)]
    whole = _epoch(RandomBatchSampler(40, 8, seed=1), 1)
    assert all(len(s) == len(whole) for s in shares)
    for step, batch in enumerate(whole):
        assert [i for share in shares for i in share[step]] == batch
        assert all(len(share[step]) == 2 for share in shares)


def test_invalid_batches_are_refused() -> None:
    with pytest.raises(ValueError, match="do not fill one batch"):
        RandomBatchSampler(3, 4)
    with pytest.raises(ValueError, match="does not split evenly over 3 processes"):
        RankSlice(RandomBatchSampler(40, 8), 8, 0, 3)
    with pytest.raises(ValueError, match="rank must be in"):
        RankSlice(RandomBatchSampler(40, 8), 8, 2, 2)
