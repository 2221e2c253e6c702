"""Plain random batches, and each process's share of a global batch under DDP."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Protocol

import numpy as np
from torch.utils.data import Sampler


class EpochBatchSampler(Protocol):
    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[list[int]]: ...
    def set_epoch(self, epoch: int) -> None: ...


class RandomBatchSampler(Sampler[list[int]]):
    """Shuffled batches of ``batch_size`` samples, the last partial batch dropped.

    The reference code's sampler for the alignment loss alone: no identity structure, so a
    person may appear once or several times in a batch. Batches are a function of (seed, epoch).
    """

    def __init__(self, num_samples: int, batch_size: int, seed: int = 0) -> None:
        if batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {batch_size}")
        if num_samples < batch_size:
            raise ValueError(
                f"{num_samples} training samples do not fill one batch of {batch_size}"
            )
        self.num_samples, self.batch_size, self.seed = num_samples, batch_size, seed
        self.epoch = 0
        self.excluded_persons = 0
        self.dropped_per_epoch = num_samples % batch_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples // self.batch_size

    def __iter__(self) -> Iterator[list[int]]:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.num_samples)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            yield [int(i) for i in order[start : start + self.batch_size]]


class RankSlice(Sampler[list[int]]):
    """Process ``rank``'s contiguous share of every global batch of ``batches``.

    Every process builds the same global batches (same seed and epoch) and keeps B/W of each,
    so ``batch_size`` keeps meaning the global batch and the step count does not depend on W.
    """

    def __init__(self, batches: EpochBatchSampler, batch_size: int, rank: int, world: int) -> None:
        if not 0 <= rank < world:
            raise ValueError(f"rank must be in [0, {world}), got {rank}")
        if batch_size % world:
            raise ValueError(
                f"the global batch of {batch_size} does not split evenly over {world} processes"
            )
        self.batches, self.rank, self.world = batches, rank, world
        self.share = batch_size // world

    def set_epoch(self, epoch: int) -> None:
        self.batches.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[int]]:
        lo = self.rank * self.share
        for batch in self.batches:
            yield batch[lo : lo + self.share]


class ResumableBatches(Sampler[list[int]]):
    """An epoch's batches that can start after the ones a stopped run already trained on.

    Batches are a function of (seed, epoch), so a run stopped mid-epoch (the time budget)
    resumes on the same epoch's next unseen batch: it takes exactly epochs × batches steps and
    its learning rates follow the uninterrupted run's, instead of replaying the epoch's start.
    """

    def __init__(self, batches: EpochBatchSampler) -> None:
        self.batches = batches
        self._skip = 0

    def set_epoch(self, epoch: int) -> None:
        self.batches.set_epoch(epoch)

    def skip_next(self, count: int) -> None:
        """Leave out the first ``count`` batches of the next pass (only of that one)."""
        if not 0 <= count < len(self.batches):
            raise ValueError(f"cannot skip {count} of {len(self.batches)} batches")
        self._skip = count

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[int]]:
        skip, self._skip = self._skip, 0
        return itertools.islice(iter(self.batches), skip, None)
