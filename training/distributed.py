"""Collectives the training step needs under several processes (no-ops in one process)."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather_with_local_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` from every process in rank order; gradient flows only into the local part.

    Ranks may hold different row counts (undecodable images are dropped per rank), so rows are
    padded to the largest count for the collective and trimmed after it.
    """
    world = world_size()
    if world == 1:
        return x
    counts = [torch.zeros(1, dtype=torch.long, device=x.device) for _ in range(world)]
    dist.all_gather(counts, torch.tensor([x.shape[0]], device=x.device))
    sizes = [int(c.item()) for c in counts]
    padded = x.detach().new_zeros((max(sizes), *x.shape[1:]))
    padded[: x.shape[0]] = x.detach()
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded.contiguous())
    rank = dist.get_rank()
    return torch.cat(
        [x if r == rank else p[:n] for r, (p, n) in enumerate(zip(parts, sizes, strict=True))]
    )


def all_ranks_agree(ok: bool, device: torch.device) -> bool:
    """True only when ``ok`` holds on every process: a step is taken by all ranks or by none."""
    if world_size() == 1:
        return ok
    flag = torch.tensor([1 if ok else 0], dtype=torch.int32, device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def mean_over_ranks(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """The mean of each logged number over processes (every rank must call this together)."""
    if world_size() == 1 or not values:
        return values
    keys = sorted(values)
    stacked = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(stacked)
    return dict(zip(keys, (stacked / world_size()).tolist(), strict=True))
