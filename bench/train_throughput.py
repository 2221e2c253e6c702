"""Training throughput of the real recipe: samples/s and peak memory per recipe config.

Rows, all in one process on the same random-init towers: the alignment loss alone (the
baseline), the paper recipe (configs/vfe-tps-cuhk.yaml) and the reference-code recipe
(configs/vfe-tps-cuhk-reference.yaml), each built with the training code's own model and
optimizer builders. The ratios are the price of the auxiliary tasks and of each recipe. JSON on
stdout and in OUT/train_throughput.json.
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

from bundle.openclip_import import import_open_clip
from training.config import load_config
from training.objectives import compute_losses
from training.optim import build_optimizer
from training.runtime import setup_runtime
from training.train import build_model

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
RECIPES = {
    "baseline_cmpm_only": (CONFIGS / "vfe-tps-cuhk.yaml", {"losses": "cmpm"}),
    "paper": (CONFIGS / "vfe-tps-cuhk.yaml", {}),
    "reference": (CONFIGS / "vfe-tps-cuhk-reference.yaml", {}),
}

CAPTION = "a woman in a red coat and black trousers carrying a white shoulder bag, long dark hair"


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def measure(
    recipe: str, model_name: str, batch: int, steps: int, precision: str
) -> dict[str, object]:
    config, overrides = RECIPES[recipe]
    return measure_config(config, overrides, model_name, batch, steps, precision)


def measure_config(
    config: Path,
    overrides: dict[str, object],
    model_name: str,
    batch: int,
    steps: int,
    precision: str,
) -> dict[str, object]:
    """Samples/s and peak memory of ``steps`` timed steps of ``config`` with ``overrides``."""
    rt = setup_runtime("auto", precision)
    cfg = load_config(
        config,
        {
            **overrides,
            "root": ".",
            "model": model_name,
            "pretrained": "none",
            "batch_size": batch,
            "instances_per_id": 2,
            "gvfc_images": min(20, batch),
            "precision": precision,
        },
    )
    torch.manual_seed(0)
    core, model_cfg, spec = build_model(cfg, num_ids=batch // 2)
    core = core.to(rt.device).train()
    optimizer = build_optimizer(core, cfg)
    scaler = torch.amp.GradScaler(rt.device.type, enabled=rt.use_grad_scaler)
    open_clip = import_open_clip()
    size = spec.resolved_image_size()
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
            losses = compute_losses(core, core, images, tokens, pids, cfg, stats)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(losses.objective).backward()
        scaler.step(optimizer)
        scaler.update()
        if rt.device.type == "cuda":
            torch.cuda.synchronize()
        if step:
            timings.append(time.perf_counter() - start)
    per_step = sum(timings) / len(timings)
    return {
        "config": config.name,
        "model": model_name,
        "losses": cfg.losses,
        "batch": batch,
        "device": str(rt.device),
        "precision": str(rt.autocast_dtype or "fp32"),
        "step_s": round(per_step, 4),
        "samples_per_s": round(batch / per_step, 2),
        "peak_memory_mb": round(_peak_mb(rt.device), 1),
        "parameters_m": round(sum(p.numel() for p in core.parameters()) / 1e6, 2),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="ViT-B-16", choices=["ViT-B-16", "tiny"])
    parser.add_argument("--batch", type=int, default=None, help="default: 2 on CPU, 64 on GPU")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    parser.add_argument("--out", type=Path, default=Path("out/bench"))
    args = parser.parse_args(argv)
    batch = args.batch or (64 if torch.cuda.is_available() else 2)
    rows = {name: measure(name, args.model, batch, args.steps, args.precision) for name in RECIPES}
    base = rows["baseline_cmpm_only"]["samples_per_s"]
    result = {
        "benchmark": "train_throughput",
        **rows,
        "throughput_ratio_vs_baseline": {
            name: round(row["samples_per_s"] / base, 3) for name, row in rows.items()
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "train_throughput.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
