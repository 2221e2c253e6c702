from __future__ import annotations

from collections import Counter

import pytest

from training.data.batches import RankSlice
from training.data.sampler import IdentityBatchSampler


def _dataset(persons: int = 12, images: int = 4, captions: int = 2) -> tuple[list, list]:
    """labels and image ids of a caption-pair dataset (one sample per caption)."""
    labels, image_ids = [], []
    for person in range(persons):
        for image in range(images):
            labels += [person] * captions
            image_ids += [f"{person}/{image}"] * captions
    return labels, image_ids


def _batches(sampler: IdentityBatchSampler, epoch: int = 0) -> list[list[int]]:
    sampler.set_epoch(epoch)
    return list(sampler)


def test_batches_hold_p_distinct_persons_times_k() -> None:
    labels, image_ids = _dataset()
    sampler = IdentityBatchSampler(labels, p=4, k=3, image_ids=image_ids, seed=1)
    batches = _batches(sampler)
    assert len(batches) == len(sampler) > 0
    assert sampler.batch_size == 12
    for batch in batches:
        assert len(batch) == 12
        counts = Counter(labels[i] for i in batch)
        assert len(counts) == 4 and set(counts.values()) == {3}
        # every person's K samples come from K different images (each person has 4)
        for person in counts:
            assert len({image_ids[i] for i in batch if labels[i] == person}) == 3


def test_length_is_about_samples_over_batch_size() -> None:
    labels, image_ids = _dataset(persons=20, images=5, captions=2)  # 200 samples
    sampler = IdentityBatchSampler(labels, p=5, k=4, image_ids=image_ids)
    assert len(sampler) == 10 == len(_batches(sampler))
    seen = Counter(i for batch in _batches(sampler) for i in batch)
    assert len(seen) >= 0.75 * len(labels)  # most samples, the rest next epoch


def test_deterministic_per_seed_and_epoch_and_varies() -> None:
    labels, image_ids = _dataset()
    a = IdentityBatchSampler(labels, p=4, k=2, image_ids=image_ids, seed=7)
    b = IdentityBatchSampler(labels, p=4, k=2, image_ids=image_ids, seed=7)
    assert _batches(a, 3) == _batches(b, 3)
    assert _batches(a, 3) != _batches(a, 4)
    other_seed = IdentityBatchSampler(labels, p=4, k=2, image_ids=image_ids, seed=8)
    assert _batches(other_seed, 3) != _batches(a, 3)


def test_ddp_shares_of_a_global_batch_hold_whole_persons() -> None:
    labels, image_ids = _dataset(persons=16)
    whole = _batches(IdentityBatchSampler(labels, p=4, k=2, image_ids=image_ids, seed=2), 5)
    shares = [
        _batches(
            RankSlice(
                IdentityBatchSampler(labels, p=4, k=2, image_ids=image_ids, seed=2), 8, r, 2
            ),
            5,
        )
        for r in range(2)
    ]
    assert len(shares[0]) == len(shares[1]) == len(whole)  # the step count does not depend on W
    for batch, first, second in zip(whole, *shares, strict=True):
        assert first + second == batch
        assert not {labels[i] for i in first} & {labels[i] for i in second}


def test_few_samples_drawn_with_replacement_single_image_persons_dropped() -> None:
    # person 0: one image with one caption; person 1: two images, one caption each;
    # persons 2–3: three images.
    labels = [0, 1, 1, 2, 2, 2, 3, 3, 3]
    image_ids = ["a", "b", "c", "d", "e", "f", "g", "h", "i"]
    sampler = IdentityBatchSampler(labels, p=2, k=3, image_ids=image_ids, seed=0)
    assert sampler.excluded_persons == 1 and sampler.excluded_samples == 1
    for epoch in range(5):
        for batch in _batches(sampler, epoch):
            assert 0 not in {labels[i] for i in batch}
            ones = [i for i in batch if labels[i] == 1]
            if ones:
                assert len(ones) == 3 and set(ones) == {1, 2}  # repeats only for person 1
            for person in (2, 3):
                mine = [i for i in batch if labels[i] == person]
                assert len(set(mine)) == len(mine)

    keep = IdentityBatchSampler(labels, p=2, k=3, image_ids=image_ids, drop_single_image=False)
    assert keep.excluded_persons == 0
    assert any(0 in {labels[i] for i in b} for e in range(10) for b in _batches(keep, e))


def test_k_one_keeps_everyone_and_defaults_to_one_image_per_sample() -> None:
    sampler = IdentityBatchSampler([5, 9, 9, 11], p=2, k=1)
    assert sampler.excluded_persons == 0
    assert len(sampler) == 2
    for batch in _batches(sampler):
        assert len({[5, 9, 9, 11][i] for i in batch}) == 2


def test_invalid_configurations() -> None:
    labels, image_ids = _dataset(persons=3)
    with pytest.raises(ValueError, match="P=4 persons per batch, but only 3"):
        IdentityBatchSampler(labels, p=4, k=2, image_ids=image_ids)
    with pytest.raises(ValueError, match="at least 1"):
        IdentityBatchSampler(labels, p=0, k=2)
    with pytest.raises(ValueError, match="image ids for"):
        IdentityBatchSampler(labels, p=2, k=2, image_ids=image_ids[:-1])
