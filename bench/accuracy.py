"""Accuracy on the synthetic benchmark: the tiny model trained from scratch on CPU vs untrained.

Generates the set if needed, measures an untrained model's test metrics, then trains each loss
set for at most ``--minutes`` and evaluates its bundle on the test split (never used for
selection). JSON on stdout and in OUT/accuracy.json.

``--parts`` compares, at an equal step budget (same epochs and seed, no time limit): VFE-TPS;
VFE-TPS + the part-level head trained alongside and dropped at inference (global vectors); and
the same run in parts inference mode (docs/parts.md). Each inference mode reports its metrics,
the bytes of its vectors, its encode time and its exact (flat) search time per query.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import faiss
import numpy as np
import torch

from bundle.encoders import Bundle
from training.config import load_config
from training.data.formats import load_records
from training.evaluate import EvalSplit, encode_split, evaluate_split
from training.export import export_untrained
from training.metrics import retrieval_metrics
from training.synthetic import generate
from training.train import train

ABLATION = ["cmpm", "cmpm,tgmim", "cmpm,isgvfc", "cmpm,tgmim,isgvfc"]
VFE_TPS = "cmpm,tgmim,isgvfc"
# The tiny towers' embedding is 128-d: d_p = 64 keeps the default layout's 6× (128 + 10·64).
TINY_PARTS = {"parts_width": 128, "parts_dim": 64, "parts_tokens": 4, "parts_stripes": 6}
SEARCH_ROWS = 20_000  # a random gallery of this size times the search at each mode's width


def test_metrics(bundle_dir: Path, split: EvalSplit) -> dict:
    bundle = Bundle(bundle_dir)
    metrics = evaluate_split(
        split, bundle.encode_images, bundle.encode_text, bundle.preprocess, progress=False
    )
    return {k: round(v, 2) if isinstance(v, float) else v for k, v in metrics.items()}


def _search_ms(gallery: np.ndarray, queries: np.ndarray, k: int = 10) -> float:
    """Exact inner-product search, one query at a time (as the service's batch of 1)."""
    index = faiss.IndexFlatIP(gallery.shape[1])
    index.add(np.ascontiguousarray(gallery, np.float32))
    queries = np.ascontiguousarray(queries, np.float32)
    index.search(queries[:1], k)  # warm-up
    rounds = []
    for _ in range(3):  # the best of three: a shared machine only ever adds time
        start = time.perf_counter()
        for q in queries:
            index.search(q[None], k)
        rounds.append((time.perf_counter() - start) * 1000 / len(queries))
    return min(rounds)


def inference_row(bundle_dir: Path, split: EvalSplit, parts: bool) -> dict:
    """Test metrics of one inference mode, with what it costs: vector bytes, encode and
    search time. Parts mode scores S = <G, Q> at the bundle's default weights."""
    bundle = Bundle(bundle_dir, parts=parts)
    seconds = {"image": 0.0, "text": 0.0}

    def timed(kind: str, encode: Callable) -> Callable:
        def run(x: object) -> np.ndarray:
            start = time.perf_counter()
            out = encode(x)
            seconds[kind] += time.perf_counter() - start
            return out

        return run

    gallery, queries, kept = encode_split(
        split,
        timed("image", bundle.encode_images),
        timed("text", bundle.encode_text),
        bundle.preprocess,
        progress=False,
    )
    metrics = retrieval_metrics(
        queries @ gallery.T,
        torch.tensor(split.caption_pids),
        torch.tensor([split.image_pids[i] for i in kept]),
    )
    stored, sent = gallery.numpy(), queries.numpy()
    if bundle.parts is not None:  # what a store holds and is sent (same scores)
        stored, sent = (
            bundle.parts.layout.to_store(stored),
            bundle.parts.layout.query_to_store(sent),
        )
    rng = np.random.default_rng(0)
    big = rng.standard_normal((SEARCH_ROWS, bundle.dim)).astype(np.float32)
    return {
        **{k: round(v, 2) for k, v in metrics.items()},
        "dim": bundle.dim,
        "layout": bundle.layout,
        "index_bytes": int(stored.nbytes),
        "bytes_per_image": bundle.dim * 4,
        "encode_ms_per_image": round(seconds["image"] * 1000 / len(kept), 3),
        "encode_ms_per_caption": round(seconds["text"] * 1000 / len(split.captions), 3),
        "search_ms_per_query": round(_search_ms(stored, sent), 4),
        f"search_ms_per_query_{SEARCH_ROWS // 1000}k": round(_search_ms(big, sent[:200]), 4),
    }


def parts_rows(args: argparse.Namespace, test: EvalSplit) -> dict:
    """VFE-TPS, + parts (training-only), + parts inference, at the same epochs and seed."""
    runs = {}
    for name, losses, extra in (
        ("vfe_tps", VFE_TPS, {}),
        ("vfe_tps_parts", f"{VFE_TPS},parts", {**TINY_PARTS, "parts_export": True}),
    ):
        run_dir = args.runs / f"parts-{name}"
        overrides = {
            "root": args.data, "losses": losses, "out": run_dir, "resume": False,
            "max_minutes": None, "seed": args.seed, "epochs": args.epochs,
            "warmup_epochs": args.warmup_epochs, **extra,
        }  # fmt: skip
        start = time.monotonic()
        bundle = train(load_config(args.config, overrides))
        log = [json.loads(x) for x in (run_dir / "log.jsonl").read_text().splitlines()]
        runs[name] = {
            "bundle": bundle,
            "steps": max(e.get("step", 0) for e in log),
            "train_minutes": round((time.monotonic() - start) / 60, 2),
        }
    rows = {
        "VFE-TPS": (runs["vfe_tps"], False),
        "VFE-TPS + parts (training-only)": (runs["vfe_tps_parts"], False),
        "VFE-TPS + parts inference": (runs["vfe_tps_parts"], True),
    }
    out = {}
    for label, (run, parts) in rows.items():
        out[label] = {
            **inference_row(run["bundle"], test, parts),
            "steps": run["steps"],
            "train_minutes": run["train_minutes"],
        }
        print(json.dumps({label: out[label]}), flush=True)
    return {"head": TINY_PARTS, "rows": out}


def main(argv: list[str] | None = None) -> None:
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
    parser.add_argument(
        "--parts",
        action="store_true",
        help="VFE-TPS vs + parts (training-only) vs + parts inference, at the config's (or "
        "--epochs') step budget, no time limit",
    )
    parser.add_argument("--runs", type=Path, default=Path("runs/accuracy"))
    parser.add_argument("--out", type=Path, default=Path("out/bench"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

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
    if args.parts:
        result["parts"] = parts_rows(args, test)
    for losses in ABLATION if args.ablation else (args.losses or ([] if args.parts else [VFE_TPS])):
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
        steps = max(e.get("step", 0) for e in log)
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
