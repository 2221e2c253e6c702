"""Training throughput of the real recipe: samples/s and peak memory, full VFE-TPS vs CMPM alone.

The baseline is the same towers trained with the alignment loss only, run in the same process,
so the ratio is the price of the two auxiliary tasks. JSON on stdout and in
OUT/train_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from index.openclip_import import import_open_clip
from training.config import TrainConfig
from training.model.towers import TowerSpec, build_towers
from training.model.vfe_tps import VFETPS
from training.objectives import compute_losses
from training.runtime import setup_runtime

CAPTION = "a woman in a red coat and black trousers carrying a white shoulder bag, long dark hair"


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def measure(model_name: str, losses: list[str], batch: int, steps: int, precision: str) -> dict:
    rt = setup_runtime("auto", precision)
    cfg = TrainConfig(
        root=Path("."),
        model=model_name,
        losses=losses,
        batch_size=batch,
        instances_per_id=2,
        gvfc_images=min(20, batch),
        precision=precision,
    )
    torch.manual_seed(0)
    clip, model_cfg = build_towers(TowerSpec(model_name))
    core = VFETPS(clip, use_mim="tgmim" in losses).to(rt.device).train()
    optimizer = torch.optim.Adam(core.parameters(), lr=1e-5)
    scaler = torch.amp.GradScaler(rt.device.type, enabled=rt.use_grad_scaler)
    open_clip = import_open_clip()
    size = TowerSpec(model_name).resolved_image_size()
    images = torch.randn(batch, 3, *size, device=rt.device)
    tokenizer = open_clip.tokenizer.SimpleTokenizer(
        context_length=model_cfg["text_cfg"]["context_length"]
    )
    tokens = tokenizer([CAPTION] * batch).to(rt.device)
    pids = torch.arange(batch // 2, device=rt.device).repeat_interleave(2)
    stats = (
        torch.tensor(open_clip.OPENAI_DATASET_MEAN, device=rt.device).view(1, 3, 1, 1),
        torch.tensor(open_clip.OPENAI_DATASET_STD, device=rt.device).view(1, 3, 1, 1),
    )
    if rt.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(rt.device)
    timings = []
    for step in range(steps + 1):  # the first step warms up and is not timed
        if rt.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with rt.autocast():
            terms = compute_losses(core, core, images, tokens, pids, cfg, stats)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(terms["loss"]).backward()
        scaler.step(optimizer)
        scaler.update()
        if rt.device.type == "cuda":
            torch.cuda.synchronize()
        if step:
            timings.append(time.perf_counter() - start)
    per_step = sum(timings) / len(timings)
    return {
        "model": model_name,
        "losses": losses,
        "batch": batch,
        "device": str(rt.device),
        "precision": str(rt.autocast_dtype or "fp32"),
        "step_s": round(per_step, 4),
        "samples_per_s": round(batch / per_step, 2),
        "peak_memory_mb": round(_peak_mb(rt.device), 1),
        "parameters_m": round(sum(p.numel() for p in core.parameters()) / 1e6, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="ViT-B-16", choices=["ViT-B-16", "tiny"])
    parser.add_argument("--batch", type=int, default=None, help="default: 2 on CPU, 64 on GPU")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    parser.add_argument("--out", type=Path, default=Path("out/bench"))
    args = parser.parse_args()
    batch = args.batch or (64 if torch.cuda.is_available() else 2)
    baseline = measure(args.model, ["cmpm"], batch, args.steps, args.precision)
    full = measure(args.model, ["cmpm", "tgmim", "isgvfc"], batch, args.steps, args.precision)
    result = {
        "benchmark": "train_throughput",
        "baseline_cmpm_only": baseline,
        "vfe_tps": full,
        "throughput_ratio_vs_baseline": round(full["samples_per_s"] / baseline["samples_per_s"], 3),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "train_throughput.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
