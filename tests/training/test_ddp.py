"""Several processes under torchrun (gloo on CPU): the same command trains and exports once."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import torch

from training.checkpoint import load_checkpoint


def test_torchrun_two_processes_train_in_step(synthetic_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "training", "train", "--root", str(synthetic_root), "--model", "tiny",
        "--epochs", "1", "--batch-size", "8", "--instances-per-id", "2", "--mim-layers", "1",
        "--gvfc-images", "8", "--workers", "0", "--log-every", "1", "--out", str(out),
        "--device", "cpu",  # gloo on CPU even on a GPU machine (rank 1 would ask for cuda:1)
    ]  # fmt: skip
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = load_checkpoint(out / "checkpoints" / "last.pt")
    single_rank_batches = len([x for x in (out / "log.jsonl").read_text().splitlines()
                               if json.loads(x)["kind"] == "train"])  # fmt: skip
    assert state["step"] == single_rank_batches > 0  # only rank 0 logs, one line per step
    assert (out / "bundle" / "bundle.json").is_file()
    # DDP averaged the gradients, so both ranks hold identical weights; rank 0 saved them.
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_a_rank_with_no_decodable_image_skips_with_the_others(
    synthetic_root: Path, tmp_path: Path
) -> None:
    """Half the training persons' images are broken: some rank's share comes out empty, and
    every rank must skip that step together instead of waiting in the gradient all-reduce."""
    root = tmp_path / "data"
    shutil.copytree(synthetic_root, root)
    entries = json.loads((root / "reid_raw.json").read_text())
    train_ids = sorted({e["id"] for e in entries if e["split"] == "train"})
    for entry in entries:
        if entry["split"] == "train" and entry["id"] in train_ids[::2]:
            (root / "imgs" / entry["file_path"]).write_bytes(b"not an image")
    out = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "training", "train", "--root", str(root), "--model", "tiny", "--epochs", "1",
        "--batch-size", "8", "--instances-per-id", "2", "--losses", "cmpm", "--workers", "0",
        "--val-split", "none", "--out", str(out), "--device", "cpu",
    ]  # fmt: skip
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "steps were skipped" in proc.stderr
    assert (out / "bundle" / "bundle.json").is_file()
