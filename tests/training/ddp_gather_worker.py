"""Run under torchrun (2 gloo processes): one step of the gathered losses on this rank's share.

Rank 0 writes the loss terms and the DDP-averaged gradients to the file named by argv[1], for
tests/training/test_gather.py to compare with one process over the whole batch.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from tests.training.gather_case import BATCH, build_case
from training.distributed import all_ranks_agree
from training.objectives import compute_losses
from training.runtime import setup_runtime, shutdown


def main(out: Path) -> None:
    rt = setup_runtime("cpu", "fp32")
    core, cfg, images, tokens, pids, stats = build_case()
    share = slice(rt.rank * BATCH // rt.world_size, (rt.rank + 1) * BATCH // rt.world_size)
    model = DistributedDataParallel(core)
    losses = compute_losses(model, core, images[share], tokens[share], pids[share], cfg, stats)
    losses.objective.backward()
    # A rank that must skip makes every rank skip: the flag is the minimum over ranks.
    agreed = all_ranks_agree(rt.rank == 0, rt.device)
    if rt.is_main:
        torch.save(
            {
                "terms": {k: v.detach() for k, v in losses.terms.items()},
                "grads": {n: p.grad for n, p in core.named_parameters() if p.grad is not None},
                "agreed": agreed,
                "world": dist.get_world_size(),
            },
            out,
        )
    shutdown(rt)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
