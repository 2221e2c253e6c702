"""Accuracy on the synthetic benchmark: the tiny model trained from scratch on CPU vs untrained.

Generates the set if needed, measures an untrained model's test metrics, then trains each loss
set for at most ``--minutes`` and evaluates its bundle on the test split (never used for
selection). JSON on stdout and in OUT/accuracy.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from bundle.encoders import Bundle
from training.config import load_config
from training.data.formats import load_records
from training.evaluate import EvalSplit, evaluate_split
from training.export import export_untrained
from training.synthetic import generate
from training.train import train

ABLATION = ["cmpm", "cmpm,tgmim", "cmpm,isgvfc", "cmpm,tgmim,isgvfc"]


def test_metrics(bundle_dir: Path, split: EvalSplit) -> dict:
    bundle = Bundle(bundle_dir)
    metrics = evaluate_split(
        split, bundle.encode_images, bundle.encode_text, bundle.preprocess, progress=False
    )
    return {k: round(v, 2) if isinstance(v, float) else v for k, v in metrics.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("data/synthetic-2000"))
    parser.add_argument("--ids", type=int, default=2000)
    parser.add_argument("--images-per-id", type=int, default=3)
    parser.add_argument("--config", type=Path, default=Path("configs/tiny-synthetic.yaml"))
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget per run")
    parser.add_argument("--epochs", type=int, help="override the config's epoch count")
    parser.add_argument("--warmup-epochs", type=float, help="override the config's warm-up")
    parser.add_argument("--losses", action="append", help="loss set(s) to train; repeatable")
    parser.add_argument("--ablation", action="store_true", help=f"train each of {ABLATION}")
    parser.add_argument("--runs", type=Path, default=Path("runs/accuracy"))
    parser.add_argument("--out", type=Path, default=Path("out/bench"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    if not (args.data / "reid_raw.json").is_file():
        # 5 % of identities each for val and test: 100 unseen persons at the default size.
        generate(
            args.data,
            ids=args.ids,
            images_per_id=args.images_per_id,
            seed=args.seed,
            val_fraction=0.05,
            test_fraction=0.05,
        )
    test = EvalSplit.from_records(load_records("cuhk-pedes", args.data, "test"))
    result: dict = {
        "benchmark": "synthetic_accuracy",
        "data": {"root": str(args.data), "test_images": len(test.image_paths),
                 "test_queries": len(test.captions), "test_ids": len(set(test.image_pids))},
        "threads": torch.get_num_threads(),
        "minutes_per_run": args.minutes,
        "untrained": test_metrics(export_untrained(args.runs / "untrained", seed=args.seed), test),
        "trained": {},
    }  # fmt: skip
    for losses in ABLATION if args.ablation else (args.losses or ["cmpm,tgmim,isgvfc"]):
        run_dir = args.runs / losses.replace(",", "+")
        overrides = {
            "root": args.data,
            "losses": losses,
            "out": run_dir,
            "resume": False,
            "max_minutes": args.minutes,
            "seed": args.seed,
            "epochs": args.epochs,
            "warmup_epochs": args.warmup_epochs,
        }
        start = time.monotonic()
        bundle = train(load_config(args.config, overrides))
        log = [json.loads(x) for x in (run_dir / "log.jsonl").read_text().splitlines()]
        steps = max(e["step"] for e in log)
        result["trained"][losses] = {
            "test": test_metrics(bundle, test),
            "best_val": json.loads((bundle / "bundle.json").read_text())["val_metrics"],
            "steps": steps,
            "train_minutes": round((time.monotonic() - start) / 60, 2),
        }
        print(json.dumps({losses: result["trained"][losses]["test"]}), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "accuracy.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
