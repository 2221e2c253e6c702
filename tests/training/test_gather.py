"""Gathered features: 2 processes × B/2 give the loss and gradient of 1 process × B."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from tests.training.gather_case import build_case
from training.objectives import compute_losses

ROOT = Path(__file__).resolve().parents[2]


def _two_processes(out: Path) -> dict:
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "tests.training.ddp_gather_worker", str(out),
    ]  # fmt: skip
    env = {
        "HF_HUB_OFFLINE": "1",
        "PATH": "/usr/bin:/bin",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(ROOT),
    }
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return torch.load(out, weights_only=True)


def test_gathered_loss_and_gradient_equal_one_process_over_the_whole_batch(
    tmp_path: Path,
) -> None:
    ddp = _two_processes(tmp_path / "rank0.pt")
    assert ddp["world"] == 2

    core, cfg, images, tokens, pids, stats = build_case()
    single = compute_losses(core, core, images, tokens, pids, cfg, stats)
    single.objective.backward()
    for name in ("cmpm", "isgvfc", "loss"):
        assert torch.allclose(ddp["terms"][name], single.terms[name], rtol=1e-5, atol=1e-6), name
    grads = {n: p.grad for n, p in core.named_parameters() if p.grad is not None}
    assert grads.keys() == ddp["grads"].keys()
    for name, grad in grads.items():
        assert torch.allclose(ddp["grads"][name], grad, rtol=1e-4, atol=1e-6), name

    # Without gathering, rank 0 would see only its own 4 rows: a different loss.
    local = compute_losses(core, core, images[:4], tokens[:4], pids[:4], cfg, stats)
    assert not torch.allclose(local.terms["cmpm"], single.terms["cmpm"])
    # Rank 1 said "skip": rank 0 must skip too.
    assert ddp["agreed"] is False
