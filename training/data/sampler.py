"""P persons × K samples per batch, so identity losses (IS-GVFC) always find positives.

Each epoch every person's samples are dealt into groups of K, interleaving the person's images
so a group holds K different images whenever the person has that many (positives of the same
image would teach nothing). A group never holds the same sample twice, except for a person with
fewer than K samples, whose group is filled by drawing with replacement. A person's last partial
group is completed with their earlier samples (other images first), so across an epoch a sample
may recur while another is left for the next epoch. Batches take one group from each of P
distinct persons, picking persons in proportion to the groups they have left so that no person's
groups pile up at the end. An epoch is round(samples / (P·K)) batches: each sample about once.

With K > 1 a person with a single image is left out by default (``drop_single_image``): their
groups would hold K copies of one picture and give IS-GVFC no real positive pair. Their samples
are then unused by this sampler; ``excluded_persons`` says how many persons that is.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

Pool = tuple[tuple[int, ...], ...]  # one person: sample indices grouped by image


class IdentityBatchSampler(Sampler[list[int]]):
    """Yields lists of ``p * k`` dataset indices; use as a DataLoader ``batch_sampler``.

    ``labels[i]`` is the person of sample ``i``; ``image_ids[i]`` its image (default: every sample
    its own image). Batches are a function of (``seed``, epoch): call :meth:`set_epoch` each epoch.
    A batch lists its persons' groups one after another, so under DDP (:class:`RankSlice`) each
    rank's share of a batch holds whole persons when P is a multiple of the process count.
    """

    def __init__(
        self,
        labels: Sequence[int],
        p: int,
        k: int,
        *,
        image_ids: Sequence[Hashable] | None = None,
        seed: int = 0,
        drop_single_image: bool = True,
    ) -> None:
        if p < 1 or k < 1:
            raise ValueError(f"P and K must be at least 1, got P={p}, K={k}")
        if seed < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        if image_ids is not None and len(image_ids) != len(labels):
            raise ValueError(f"{len(image_ids)} image ids for {len(labels)} labels")
        self.p, self.k, self.seed = p, k, seed
        self.epoch = 0

        by_person: dict[int, dict[Hashable, list[int]]] = {}
        for index, label in enumerate(labels):
            image = index if image_ids is None else image_ids[index]
            by_person.setdefault(int(label), {}).setdefault(image, []).append(index)
        pools = [
            tuple(tuple(s) for s in images.values()) for _, images in sorted(by_person.items())
        ]
        drop = k > 1 and drop_single_image
        kept = [pool for pool in pools if len(pool) > 1] if drop else pools
        self.excluded_persons = len(pools) - len(kept)
        self.excluded_samples = sum(len(s) for pool in pools for s in pool) - sum(
            len(s) for pool in kept for s in pool
        )
        self._pools: tuple[Pool, ...] = tuple(kept)
        if len(self._pools) < p:
            raise ValueError(
                f"P={p} persons per batch, but only {len(self._pools)} persons are usable "
                f"({self.excluded_persons} left out for having a single image)"
            )
        samples = sum(len(s) for pool in self._pools for s in pool)
        # Fixed per epoch (a DataLoader needs len() up front); batching refills persons whose
        # groups ran out, so any count works, and this one uses each sample about once.
        self._batches = max(round(samples / (p * k)), 1)

    @property
    def batch_size(self) -> int:
        return self.p * self.k

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self._batches

    def __iter__(self) -> Iterator[list[int]]:
        yield from self._epoch_batches(np.random.default_rng([self.seed, self.epoch]))

    def _epoch_batches(self, rng: np.random.Generator) -> list[list[int]]:
        groups = [self._groups(pool, rng) for pool in self._pools]
        left = np.array([len(g) for g in groups])
        batches = []
        for _ in range(self._batches):
            if np.count_nonzero(left) < self.p:
                # Too few persons with groups left: deal exhausted persons afresh, so every
                # batch still has P distinct persons and the epoch length stays fixed.
                for person in np.flatnonzero(left == 0):
                    groups[person] = self._groups(self._pools[person], rng)
                    left[person] = len(groups[person])
            available = np.flatnonzero(left)
            chosen = rng.choice(available, self.p, replace=False, p=left[available] / left.sum())
            batch = []
            for person in chosen:
                left[person] -= 1
                batch += groups[person][left[person]]
            batches.append(batch)
        return batches

    def _groups(self, pool: Pool, rng: np.random.Generator) -> list[list[int]]:
        """Deal one person's samples into groups of K with distinct images where possible."""
        images = [list(rng.permutation(samples)) for samples in pool]
        order = [images[i] for i in rng.permutation(len(images))]
        # Round-robin over images: any K consecutive samples come from K different images
        # while every image still has samples left.
        dealt: list[int] = []
        while any(order):
            dealt += [samples.pop() for samples in order if samples]
        dealt = [int(i) for i in dealt]
        k = self.k
        if len(dealt) < k:
            return [dealt + [int(i) for i in rng.choice(dealt, k - len(dealt))]]
        groups = [dealt[i : i + k] for i in range(0, len(dealt), k)]
        last = groups[-1]
        if len(last) < k:
            # Complete the last group from earlier samples, images not yet in it first.
            image_of = {s: n for n, samples in enumerate(pool) for s in samples}
            in_last = {image_of[s] for s in last}
            earlier = [dealt[i] for i in rng.permutation(len(dealt) - len(last))]
            earlier.sort(key=lambda s: image_of[s] in in_last)
            last += earlier[: k - len(last)]
        return groups
