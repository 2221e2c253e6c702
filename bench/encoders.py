"""Encoder speed per runtime: text latency and throughput, INT8 agreement, image throughput.

    python -m bench.encoders [--model ViT-B-16] [--bundle B] [--out DIR] [--quick]

With a random-init bundle of --model (or --bundle, whose ONNX graphs are exported first when it
has none), it measures, in one process, one after another:

- text encode latency at batch 1 (p50/p99 over distinct captions) and throughput at batch 32
  for torch full-context fp32 (the baseline: every caption padded to the context), torch
  trimmed, ONNX Runtime fp32 full-context and trimmed, and ONNX INT8 (trimmed);
- the INT8 text tower's top-10 overlap with fp32 over the synthetic test captions against the
  synthetic test images (the check ``python -m training export --onnx-int8`` applies; the bench
  writes the graph whatever the figure and reports whether it reaches 0.99);
- per-query time of the served path (ONNX fp32, trimmed) at batch 1 … 64, and the time to
  serve a queue of 32 waiting captions in batches of at most 4, 8, 16 or 32, grouped by length
  (service/batching.py) or in arrival order: what the service's batch size is chosen from;
- image encode images/s at batch 32, torch vs ONNX.

Captions are the synthetic test split's (lengths reported). Prints JSON; writes DIR/encoders.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `python -m service` runs

SWEEP = (1, 2, 4, 8, 16, 32, 64)
CONFIGS = {  # name: (runtime, trim the text batch)
    "torch_full_fp32": ("torch", False),  # the baseline
    "torch_trimmed_fp32": ("torch", True),
    "onnx_full_fp32": ("onnx", False),
    "onnx_trimmed_fp32": ("onnx", True),
    "onnx_trimmed_int8": ("onnx-int8", True),
}


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def prepare(work: Path, model: str, bundle: Path | None, quick: bool) -> tuple[Path, Path, dict]:
    """(bundle with fp32 + INT8 graphs, synthetic root, export figures)."""
    from bundle.format import read_meta
    from bundle.onnx_files import read_record
    from support.builders import make_synthetic
    from training.export import export_onnx_towers, export_untrained

    ids = 24 if quick else 250
    root = make_synthetic(work / "synthetic", ids=ids, images_per_id=2, held_out=0.4)
    if bundle is None:
        bundle = export_untrained(work / "bundle", model)
    record = read_record(read_meta(bundle))
    figures: dict[str, Any] = {}
    if record is None or "text_int8" not in record.graphs:
        started = time.perf_counter()
        # min_overlap 0: the bench measures the agreement and reports it against 0.99 below.
        result = export_onnx_towers(bundle, int8=True, check_root=root, min_overlap=0.0)
        figures["export_s"] = round(time.perf_counter() - started, 1)
        figures["export_check"] = result["check"]
        record = read_record(read_meta(bundle))
    assert record is not None
    check = record.extra["int8"]
    figures["int8_check"] = {**check, "passes_0.99": check["top_k_overlap"] >= 0.99}
    figures["graph_mb"] = {
        name: round((bundle / f).stat().st_size / 2**20, 1)
        for name, f in (
            ("text", "text.onnx"),
            ("image", "image.onnx"),
            ("text_int8", "text.int8.onnx"),
        )
    }
    return bundle, root, figures


def test_captions(root: Path) -> list[str]:
    from training.data.formats import load_records

    return [c for r in load_records("cuhk-pedes", root, "test") for c in r.captions]


def time_calls(fn: Callable[[], Any], repeats: int) -> list[float]:
    fn()  # warm-up: first-call allocations and session set-up are not what is measured
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return times


def text_samples(
    bundle: Any, captions: list[str], singles: int, batches: int
) -> tuple[list[float], list[float]]:
    """(ms per batch-1 call over distinct captions, ms per batch of 32 consecutive captions)."""
    one = iter(captions * (singles // len(captions) + 2))
    latencies = time_calls(lambda: bundle.encode_text([next(one)]), singles)
    groups = [captions[i : i + 32] for i in range(0, len(captions) - 31, 32)] or [captions[:32]]
    batch = iter(groups * (batches // len(groups) + 2))
    return latencies, time_calls(lambda: bundle.encode_text(next(batch)), batches)


def text_summary(latencies: list[float], per_batch: list[float], tokens: int) -> dict:
    return {
        "batch1_p50_ms": round(statistics.median(latencies), 2),
        "batch1_p99_ms": round(percentile(latencies, 99), 2),
        "batch32_queries_per_s": round(32 / (statistics.median(per_batch) / 1000), 1),
        "batch32_ms_per_query": round(statistics.median(per_batch) / 32, 2),
        "batch32_tokens": tokens,
    }


def sweep(bundle: Any, captions: list[str], queries: int) -> dict[str, float]:
    """Per-query ms of the served path by batch size, over consecutive batches of the captions
    (each cut to its own longest): where it stops falling is where a bigger batch stops paying."""
    out = {}
    pool = captions * (2 * queries // len(captions) + 2)
    for size in SWEEP:
        batches = [pool[i : i + size] for i in range(0, max(queries, 2 * size), size)]
        bundle.encode_text(batches[0])  # warm-up at this shape
        started = time.perf_counter()
        for batch in batches:
            bundle.encode_text(batch)
        elapsed = (time.perf_counter() - started) * 1000
        out[str(size)] = round(elapsed / sum(len(b) for b in batches), 2)
    return out


def serve_queue(bundle: Any, queue: list[str], max_size: int, grouped: bool) -> None:
    """Encode a queue the way the micro-batcher takes it: by length (service/batching.py), or
    in arrival order as before length grouping."""
    from service.batching import choose_by_length

    waiting = list(queue)
    while waiting:
        if grouped:
            picked = choose_by_length([bundle.token_count(t) for t in waiting], max_size)
        else:
            picked = list(range(min(max_size, len(waiting))))
        bundle.encode_text([waiting[i] for i in picked])
        waiting = [t for i, t in enumerate(waiting) if i not in set(picked)]


def queue_figures(bundle: Any, captions: list[str], rounds: int) -> dict[str, float]:
    """ms per query to serve a queue of 32 waiting captions (32 clients' worth) by batch size,
    grouped by length or not; sizes interleaved within each round so drift hits all alike."""
    rng = np.random.default_rng(0)
    variants = [(size, grouped) for size in (4, 8, 16) for grouped in (True, False)]
    variants.append((32, False))  # one batch: grouping has nothing to choose
    totals = {v: 0.0 for v in variants}
    serve_queue(bundle, captions[:32], 32, False)  # warm-up
    for _ in range(rounds):
        queue = [captions[i] for i in rng.choice(len(captions), 32, replace=False)]
        for size, grouped in variants:
            started = time.perf_counter()
            serve_queue(bundle, queue, size, grouped)
            totals[(size, grouped)] += time.perf_counter() - started
    return {
        f"max_{size}_{'by_length' if grouped else 'in_arrival_order'}": round(
            total * 1000 / (32 * rounds), 2
        )
        for (size, grouped), total in totals.items()
    }


def image_samples(bundle: Any, batches: int) -> list[float]:
    import torch

    h, w = bundle.meta.image_size
    images = torch.from_numpy(
        np.random.default_rng(0).standard_normal((32, 3, int(h), int(w))).astype(np.float32)
    )
    return time_calls(lambda: bundle.encode_images(images), batches)


def caption_lengths(bundle: Any, captions: list[str]) -> dict:
    counts = [min(bundle.token_count(c), bundle.meta.context_length) for c in captions]
    return {
        "captions": len(captions),
        "mean_tokens": round(float(np.mean(counts)), 1),
        "max_tokens": int(max(counts)),
        "context": bundle.meta.context_length,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ViT-B-16", help="tiny or ViT-B-16 (random init)")
    parser.add_argument("--bundle", type=Path, help="measure this bundle instead")
    parser.add_argument("--out", type=Path, help="folder for encoders.json")
    parser.add_argument("--quick", action="store_true", help="tiny model, few repeats (smoke)")
    args = parser.parse_args(argv)
    model = "tiny" if args.quick and args.bundle is None else args.model
    # Per configuration and round (two rounds).
    singles, batches, images = (5, 2, 1) if args.quick else (30, 4, 2)

    from bundle.encoders import Bundle

    with tempfile.TemporaryDirectory(prefix="bench-encoders-") as tmp:
        bundle_dir, root, export = prepare(Path(tmp), model, args.bundle, args.quick)
        captions = test_captions(root)
        bundles = {
            name: Bundle(bundle_dir, device="cpu", runtime=runtime, trim_text=trim)
            for name, (runtime, trim) in CONFIGS.items()
        }
        served = bundles["onnx_trimmed_fp32"]
        lengths = caption_lengths(served, captions)
        # Two rounds, the second in reverse order, so load from other jobs on the shared
        # machine falls on every configuration alike rather than on whichever ran first.
        samples: dict[str, tuple[list[float], list[float]]] = {n: ([], []) for n in CONFIGS}
        image_times: dict[str, list[float]] = {"torch": [], "onnx": []}
        for reverse in (False, True):
            for name in sorted(CONFIGS, key=list(CONFIGS).index, reverse=reverse):
                one, many = text_samples(bundles[name], captions, singles, batches)
                samples[name][0].extend(one)
                samples[name][1].extend(many)
            for runtime in sorted(image_times, reverse=not reverse):  # torch first, then onnx
                image_times[runtime] += image_samples(bundles[f"{runtime}_trimmed_fp32"], images)
        first_group = captions[:32]
        text = {
            name: text_summary(*samples[name], int(bundles[name].tokens(first_group).shape[1]))
            for name in CONFIGS
        }
        image = {
            runtime: {"batch32_images_per_s": round(32 / (statistics.median(t) / 1000), 1)}
            for runtime, t in image_times.items()
        }
        served_sweep = sweep(served, captions, 16 if args.quick else 128)
        queue = queue_figures(served, captions, 1 if args.quick else 4)
        del bundles, served
    base = text["torch_full_fp32"]
    result = {
        "bench": "encoders",
        "model": model if args.bundle is None else str(args.bundle),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "note": "2-core machine shared with other users' jobs: figures are noisy",
        },
        "captions": lengths,
        "export": export,
        "text": text,
        "text_vs_baseline": {
            name: {
                "batch1_speedup": round(base["batch1_p50_ms"] / t["batch1_p50_ms"], 2),
                "batch32_speedup": round(
                    t["batch32_queries_per_s"] / base["batch32_queries_per_s"], 2
                ),
            }
            for name, t in text.items()
        },
        "served_path_ms_per_query_by_batch": served_sweep,
        "served_path_queue_of_32_ms_per_query": queue,
        "image": image,
    }
    text_out = json.dumps(result, indent=2)
    print(text_out)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "encoders.json").write_text(text_out + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
