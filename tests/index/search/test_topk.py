"""The blocked top k equals one top k over the whole score matrix, whatever the blocks."""

from __future__ import annotations

import pytest
import torch

from index.search.topk import GROUP, RunningTopK


def reference(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.topk(scores.float(), k, dim=1)


def blocked(scores: torch.Tensor, k: int, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    top = RunningTopK(k)
    for start in range(0, scores.shape[1], block):
        top.add(scores[:, start : start + block], start)
    return top.result()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("k", "block"), [(1, GROUP), (10, 4 * GROUP), (64, 1000), (100, 64)])
@pytest.mark.parametrize("shift", [0.0, -5.0])  # -5: every score negative, the fp32 path
def test_blocks_merge_to_the_whole_top_k(
    dtype: torch.dtype, k: int, block: int, shift: float
) -> None:
    generator = torch.Generator().manual_seed(k + block)
    scores = (torch.randn(7, 10_000, generator=generator) * 0.05 + shift).to(dtype)
    values, positions = blocked(scores, k, block)
    want, _ = reference(scores, k)
    torch.testing.assert_close(values.float(), want, rtol=0, atol=0)
    # Positions point at those scores (ties in bf16 make the positions themselves ambiguous).
    torch.testing.assert_close(torch.gather(scores, 1, positions).float(), want, rtol=0, atol=0)
    assert all(len(set(row.tolist())) == k for row in positions)


def test_ties_and_a_short_last_block() -> None:
    scores = torch.zeros(3, 5 * GROUP + 7)
    scores[:, 2 * GROUP + 5] = 1.0
    scores[:, -1] = 2.0
    values, positions = blocked(scores, 4, GROUP)
    assert values[:, :2].tolist() == [[2.0, 1.0]] * 3
    assert positions[:, :2].tolist() == [[5 * GROUP + 6, 2 * GROUP + 5]] * 3
    assert values[:, 2:].tolist() == [[0.0, 0.0]] * 3


def test_fewer_columns_than_k_and_no_blocks() -> None:
    values, positions = blocked(torch.tensor([[0.5, 0.25, 0.75]]), 10, 2)
    assert values.tolist() == [[0.75, 0.5, 0.25]] and positions.tolist() == [[2, 0, 1]]
    with pytest.raises(ValueError, match="no block"):
        RunningTopK(3).result()
    with pytest.raises(ValueError, match="at least 1"):
        RunningTopK(0)
