"""One GPU session's checks and figures, as one JSON report (run by bench/device_check.sh).

Rows, each ``{"status": "ok" | "skipped" | "failed", "seconds": ..., ...figures}``:

- ``environment``: torch, CUDA device, bf16 support, faiss flavour.
- ``encode_precision``: the torch runtime's bf16 encode on the device against fp32 on the CPU, on
  the same synthetic captions and images: per-vector cosine and ranking agreement.
- ``train_step``: a real ``ViT-B-16`` step with every loss at batch 100 for both recipe configs
  (paper, reference) and the paper recipe with the part-level head: samples/s, peak memory.
- ``gallery_encode``: image-tower images/s at the bundle's input size (384×128).
- ``text_encode``: text-tower queries/s at batch 1, 32 and 256 (trimmed, as served).
- ``exact_search``: brute-force top-10 over 1M × 512 vectors on the device (fp32 and bf16
  scores) against the memory-bandwidth bound read from the device (memory clock × bus width).
- ``faiss_cpu`` / ``faiss_gpu``: FAISS flat search over the same vectors, when installed.

``--dry-run`` runs every row on the CPU at small sizes (tiny model, batch 4, 20k vectors) and
produces the same shape, so the script is tested where no GPU is. A row that cannot run says
why instead of stopping the others.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch

ROWS = (
    "environment",
    "encode_precision",
    "train_step",
    "gallery_encode",
    "text_encode",
    "exact_search",
    "faiss_cpu",
    "faiss_gpu",
)
TEXT_BATCHES = (1, 32, 256)


@dataclass(frozen=True)
class Sizes:
    """What each row measures at; the dry run shrinks every size, never the shape."""

    model: str
    train_batch: int
    train_steps: int
    encode_batch: int
    encode_rounds: int
    text_rounds: int
    gallery_rows: int
    search_repeats: int
    synthetic_ids: int


FULL = Sizes("ViT-B-16", 100, 3, 256, 5, 5, 1_000_000, 20, 100)
DRY = Sizes("tiny", 4, 1, 8, 1, 1, 20_000, 2, 12)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], Any], device: torch.device, repeats: int) -> float:
    """Median seconds of ``repeats`` calls after one warm-up call."""
    fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def bandwidth_bound(device: torch.device) -> dict[str, Any]:
    """The device's peak memory bandwidth (memory clock × 2 × bus width) and its source."""
    if device.type != "cuda":
        return {"limit_gbps": None, "source": "not a CUDA device"}
    from bench.search_limits import gpu_bandwidth

    return gpu_bandwidth(device.index or 0)


def environment(device: torch.device, sizes: Sizes, work: Path) -> dict[str, Any]:
    row: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": str(device),
        "cpus": os.cpu_count(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        row |= {
            "name": props.name,
            "capability": f"{props.major}.{props.minor}",
            "memory_gib": round(props.total_memory / 2**30, 1),
            "bf16_native": torch.cuda.is_bf16_supported(including_emulation=False),
            "bandwidth_bound": bandwidth_bound(device),
        }
    try:
        import faiss

        row["faiss"] = faiss.__version__
        row["faiss_gpus"] = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    except ImportError:
        row["faiss"] = None
    return row


def _bundle(work: Path, model: str) -> Path:
    from training.export import export_untrained

    out = work / f"bundle-{model}"
    return out if (out / "bundle.json").is_file() else export_untrained(out, model)


def _synthetic(work: Path, ids: int) -> tuple[list[str], list[Path]]:
    """Test captions and test images of a small synthetic set."""
    from support.builders import make_synthetic
    from training.data.formats import load_records

    root = make_synthetic(work / "synthetic", ids=ids, images_per_id=2, held_out=0.5)
    records = load_records("cuhk-pedes", root, "test")
    return [r.captions[0] for r in records], [r.image_path for r in records]


def _encoders(bundle_dir: Path, device: torch.device, precision: str) -> Any:
    """The bundle's encoders, loaded (and its weights hashed) once per device and precision."""
    from bundle.torch_runtime import resolve_precision

    return _loaded(bundle_dir, str(device), resolve_precision(precision, device))


@functools.cache
def _loaded(bundle_dir: Path, device: str, precision: str) -> Any:
    from bundle.encoders import Bundle

    return Bundle(bundle_dir, device=device, precision=precision)


def _images(bundle: Any, paths: list[Path]) -> torch.Tensor:
    from bundle.images import decode_file

    return torch.stack([bundle.preprocess(decode_file(p)) for p in paths])


def _cosines(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    cos = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return {"min": round(float(cos.min()), 6), "mean": round(float(cos.mean()), 6)}


def _rank_agreement(ref: np.ndarray, other: np.ndarray, k: int = 10) -> dict[str, float]:
    """Top-1 agreement and mean top-k overlap of two text→gallery score matrices."""
    k = min(k, ref.shape[1])
    top_ref = np.argsort(-ref, axis=1)[:, :k]
    top_other = np.argsort(-other, axis=1)[:, :k]
    overlap = [len(set(a) & set(b)) / k for a, b in zip(top_ref, top_other, strict=True)]
    return {
        "top1_agreement": round(float(np.mean(top_ref[:, 0] == top_other[:, 0])), 4),
        f"top{k}_overlap": round(float(np.mean(overlap)), 4),
    }


def encode_precision(device: torch.device, sizes: Sizes, work: Path) -> dict[str, Any]:
    bundle_dir = _bundle(work, sizes.model)
    captions, paths = _synthetic(work, sizes.synthetic_ids)
    reference = _encoders(bundle_dir, torch.device("cpu"), "fp32")
    candidate = _encoders(bundle_dir, device, "bf16")
    images = _images(reference, paths)
    ref_img, ref_txt = reference.encode_images(images), reference.encode_text(captions)
    bf_img, bf_txt = candidate.encode_images(images), candidate.encode_text(captions)
    return {
        "model": sizes.model,
        "compared": f"{candidate.device} bf16 vs cpu fp32",
        "captions": len(captions),
        "gallery": len(paths),
        "image_cosine": _cosines(ref_img, bf_img),
        "text_cosine": _cosines(ref_txt, bf_txt),
        "ranking": _rank_agreement(ref_txt @ ref_img.T, bf_txt @ bf_img.T),
    }


def train_step(device: torch.device, sizes: Sizes, work: Path) -> dict[str, Any]:
    from bench.train_throughput import RECIPES, measure_config

    configs = {
        "paper": RECIPES["paper"],
        "reference": RECIPES["reference"],
        "paper_with_parts": (RECIPES["paper"][0], {"losses": "cmpm,tgmim,isgvfc,parts"}),
    }
    precision = "bf16" if device.type == "cuda" else "fp32"
    rows = {
        name: measure_config(
            config, overrides, sizes.model, sizes.train_batch, sizes.train_steps, precision
        )
        for name, (config, overrides) in configs.items()
    }
    return {"batch": sizes.train_batch, "precision": precision, **rows}


def gallery_encode(device: torch.device, sizes: Sizes, work: Path) -> dict[str, Any]:
    bundle = _encoders(_bundle(work, sizes.model), device, "auto")
    height, width = bundle.meta.image_size
    images = torch.randn(sizes.encode_batch, 3, height, width)
    if device.type == "cuda":
        images = images.pin_memory()
    seconds = _timed(lambda: bundle.encode_images(images), device, sizes.encode_rounds)
    return {
        "input": f"{height}x{width}",
        "batch": sizes.encode_batch,
        "precision": bundle.precision,
        "images_per_s": round(sizes.encode_batch / seconds, 1),
    }


def text_encode(device: torch.device, sizes: Sizes, work: Path) -> dict[str, Any]:
    bundle = _encoders(_bundle(work, sizes.model), device, "auto")
    captions, _ = _synthetic(work, sizes.synthetic_ids)
    rows = {}
    for batch in TEXT_BATCHES:
        group = (captions * (batch // len(captions) + 1))[:batch]
        seconds = _timed(lambda g=group: bundle.encode_text(g), device, sizes.text_rounds)
        rows[f"batch_{batch}"] = {
            "queries_per_s": round(batch / seconds, 1),
            "ms_per_batch": round(seconds * 1000, 2),
        }
    return {"precision": bundle.precision, **rows}


@functools.cache  # 1M × 512 is 2 GiB of draws: made once for every search row (read only)
def _gallery(rows: int, dim: int = 512, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((rows, dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def _search_row(seconds: float, batch: int, nbytes: int, bound: float | None) -> dict[str, Any]:
    gbps = nbytes / seconds / 1e9
    row = {
        "ms_per_batch": round(seconds * 1000, 3),
        "queries_per_s": round(batch / seconds, 1),
        "scan_gbps": round(gbps, 1),
    }
    if bound:
        row["fraction_of_bandwidth_bound"] = round(gbps / bound, 3)
    return row


def exact_search(device: torch.device, sizes: Sizes, work: Path) -> dict[str, Any]:
    gallery = torch.from_numpy(_gallery(sizes.gallery_rows)).to(device)
    bound = bandwidth_bound(device)
    queries = torch.from_numpy(_gallery(256, seed=1)).to(device)
    result: dict[str, Any] = {"rows": sizes.gallery_rows, "k": 10, "bandwidth_bound": bound}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        vectors = gallery.to(dtype)
        nbytes = vectors.numel() * vectors.element_size()
        per_batch = {}
        for batch in (1, 32, 256):
            q = queries[:batch].to(dtype)
            seconds = _timed(
                lambda q=q, v=vectors: torch.topk(q @ v.T, 10, dim=1), device, sizes.search_repeats
            )
            per_batch[f"batch_{batch}"] = _search_row(seconds, batch, nbytes, bound["limit_gbps"])
        result[name] = per_batch
        del vectors
    return result


def _faiss_rows(index: Any, sizes: Sizes, nbytes: int, bound: float | None) -> dict[str, Any]:
    queries = _gallery(256, seed=1)
    rows = {}
    for batch in (1, 32, 256):
        q = np.ascontiguousarray(queries[:batch])
        seconds = _timed(lambda q=q: index.search(q, 10), torch.device("cpu"), sizes.search_repeats)
        rows[f"batch_{batch}"] = _search_row(seconds, batch, nbytes, bound)
    return rows


def faiss_cpu(device: torch.device, sizes: Sizes, work: Path) -> dict[str, Any] | str:
    try:
        import faiss
    except ImportError:
        return "faiss is not installed"
    vectors = _gallery(sizes.gallery_rows)
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    return {
        "rows": sizes.gallery_rows,
        "threads": faiss.omp_get_max_threads(),
        **_faiss_rows(index, sizes, vectors.nbytes, None),
    }


def faiss_gpu(device: torch.device, sizes: Sizes, work: Path) -> dict[str, Any] | str:
    try:
        import faiss
    except ImportError:
        return "faiss is not installed"
    if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() == 0:
        return (
            "faiss-gpu is not installed or sees no GPU (its wheel is larger than a device run "
            "can carry); the exact_search row measures the same scan with torch"
        )
    vectors = _gallery(sizes.gallery_rows)
    resources = faiss.StandardGpuResources()
    index = faiss.index_cpu_to_gpu(resources, device.index or 0, faiss.IndexFlatIP(512))
    index.add(vectors)
    rows = _faiss_rows(index, sizes, vectors.nbytes, bandwidth_bound(device)["limit_gbps"])
    return {"rows": sizes.gallery_rows, **rows}


CHECKS: dict[str, Callable[[torch.device, Sizes, Path], dict[str, Any] | str]] = {
    "environment": environment,
    "encode_precision": encode_precision,
    "train_step": train_step,
    "gallery_encode": gallery_encode,
    "text_encode": text_encode,
    "exact_search": exact_search,
    "faiss_cpu": faiss_cpu,
    "faiss_gpu": faiss_gpu,
}
assert tuple(CHECKS) == ROWS


def run_row(name: str, device: torch.device, sizes: Sizes, work: Path) -> dict[str, Any]:
    """One row; a failure is reported in the row (with its last line), never raised."""
    started = time.perf_counter()
    print(f"[device-check] {name} ...", file=sys.stderr, flush=True)
    try:
        outcome = CHECKS[name](device, sizes, work)
        if isinstance(outcome, str):
            row: dict[str, Any] = {"status": "skipped", "reason": outcome}
        else:
            row = {"status": "ok", **outcome}
    except Exception as err:  # a row's failure must not hide the other rows
        traceback.print_exc()
        row = {"status": "failed", "error": f"{type(err).__name__}: {err}"[:500]}
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()
    row["seconds"] = round(time.perf_counter() - started, 1)
    print(f"[device-check] {name}: {row['status']} in {row['seconds']} s", file=sys.stderr)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU, small sizes, same JSON")
    parser.add_argument("--out", type=Path, help="also write the report to this file")
    parser.add_argument("--only", help="comma-separated rows to run (default: all)")
    args = parser.parse_args(argv)
    only = set(args.only.split(",")) if args.only else set(ROWS)
    if unknown := only - set(ROWS):
        parser.error(f"unknown rows: {', '.join(sorted(unknown))} (rows: {', '.join(ROWS)})")
    if args.dry_run:
        device, sizes = torch.device("cpu"), DRY
    elif torch.cuda.is_available():
        device, sizes = torch.device("cuda", 0), FULL
    else:
        parser.error("no CUDA device: run with --dry-run to check the script on a CPU")
    report: dict[str, Any] = {"bench": "device_check", "dry_run": args.dry_run, "rows": {}}
    with tempfile.TemporaryDirectory(prefix="device-check-") as tmp:
        for name in ROWS:
            if name in only:
                report["rows"][name] = run_row(name, device, sizes, Path(tmp))
            else:
                report["rows"][name] = {"status": "skipped", "reason": "not asked for (--only)"}
    text = json.dumps(report, indent=2)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
