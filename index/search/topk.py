"""The best k per row over a gallery scored block by block, so scores never exist all at once.

A batch of b queries against n vectors would need b × n scores at once (64 × 1M floats is
256 MB); scoring a block of rows at a time and keeping a running top k per query bounds that to
b × block. Once k are held, a block only matters where it beats the k-th best so far, which is
rare: the block is cut into groups of ``GROUP`` columns, only groups whose maximum beats the
k-th best are kept, and their scores merged into the running top k (which stays sorted). A full
top-k of every block cost more than half as much as the bf16 matrix product before it; a group
maximum costs a sixth of a top-k, and comparisons and ``nonzero`` over whole bf16 blocks are no
cheaper than a top-k on this torch.
"""

from __future__ import annotations

import torch

GROUP = 64


class RunningTopK:
    """Best ``k`` (score, position) per row among every block :meth:`add` has seen."""

    def __init__(self, k: int) -> None:
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        self.k = k
        self._values: torch.Tensor | None = None
        self._positions: torch.Tensor | None = None

    def add(self, scores: torch.Tensor, offset: int) -> None:
        """``scores`` (rows × block) of gallery rows ``offset``, ``offset + 1``, …"""
        full = self._values is not None and self._values.shape[1] == self.k
        if full and scores.shape[1] % GROUP == 0:
            self._merge(*self._beating(scores, offset))
        else:  # the first blocks, or a last one cut short
            values, positions = torch.topk(scores, min(self.k, scores.shape[1]), dim=1)
            self._merge(values, positions + offset)

    def _beating(self, scores: torch.Tensor, offset: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The groups of ``scores`` holding a score above the k-th best, row by row, padded
        with -inf (never chosen over the k real scores held)."""
        assert self._values is not None
        rows = scores.shape[0]
        groups = scores.view(rows, -1, GROUP)
        # A group whose best equals the k-th best cannot displace it (ties: earlier rows stay).
        hit_row, hit_group = torch.nonzero(
            _group_max_beats(groups, self._values[:, -1:]), as_tuple=True
        )
        counts = torch.bincount(hit_row, minlength=rows)
        slot = torch.arange(len(hit_row)) - (torch.cumsum(counts, 0) - counts)[hit_row]
        width = max(1, int(counts.max()) if len(hit_row) else 0)
        values = torch.full((rows, width, GROUP), float("-inf"), dtype=scores.dtype)
        positions = torch.zeros((rows, width, GROUP), dtype=torch.int64)
        values[hit_row, slot] = groups[hit_row, hit_group]
        positions[hit_row, slot] = (hit_group * GROUP + offset)[:, None] + torch.arange(GROUP)
        return values.view(rows, -1), positions.view(rows, -1)

    def _merge(self, values: torch.Tensor, positions: torch.Tensor) -> None:
        if self._values is not None and self._positions is not None:
            values = torch.cat([self._values, values], dim=1)
            positions = torch.cat([self._positions, positions], dim=1)
        values, order = torch.topk(values, min(self.k, values.shape[1]), dim=1)
        self._values, self._positions = values, torch.gather(positions, 1, order)

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(scores, positions), rows × min(k, rows seen), best first."""
        if self._values is None or self._positions is None:
            raise ValueError("no block was added")
        return self._values, self._positions


def _group_max_beats(groups: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """rows × groups: whether a group holds a score above its row's ``threshold`` (rows × 1).

    A bf16 maximum is not vectorised in torch (5× slower than fp32), but a non-negative bf16
    orders like its bits read as int16, and any negative bf16 reads as a negative int16: so
    against a non-negative threshold the int16 maximum answers exactly, at int16 speed.
    """
    if groups.dtype == torch.bfloat16 and bool((threshold >= 0).all()):
        bits = groups.view(torch.int16).amax(dim=2)
        return bits > threshold.contiguous().view(torch.int16)
    return groups.amax(dim=2) > threshold
