"""Gallery index throughput: image encoding (images/s) and top-k search latency and QPS.

Search runs the index's flat inner-product master over random unit vectors at batch 1 and batch
64, against a numpy baseline (matrix product + argpartition) in the same process; the ratio is
QPS(faiss) / QPS(numpy). With a FAISS GPU build and a device, flat fp32 and fp16 GPU copies are
timed too, with the fraction of the memory-bandwidth bound reached at batch 1.

    python bench/index.py --out out/bench                   # 100k and 1M vectors × 512
    python bench/index.py --quick                           # 20k vectors, a smoke test

JSON on stdout and in OUT/index.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

# Run as a script, this file's folder comes first on sys.path and its name would shadow the
# `index` package; put the repository root there instead.
_HERE = Path(__file__).resolve().parent
_ROOT = _HERE.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

BATCHES = (1, 64)


def _unit_vectors(n: int, dim: int, seed: int, chunk: int = 100_000) -> np.ndarray:
    """Random unit vectors, generated in chunks to keep the peak memory at one copy."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, chunk):
        block = rng.standard_normal((min(chunk, n - start), dim), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start : start + len(block)] = block
    return out


def _numpy_topk(database: np.ndarray, k: int) -> Callable[[np.ndarray], np.ndarray]:
    def search(queries: np.ndarray) -> np.ndarray:
        scores = queries @ database.T
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
        return np.take_along_axis(top, order, axis=1)

    return search


def _time_calls(
    search: Callable[[np.ndarray], Any], queries: np.ndarray, batch: int, budget_s: float
) -> dict[str, float]:
    """Per-call latency over batches of ``queries`` until they run out or the budget is spent."""
    search(queries[:batch])  # warm-up: first-touch allocations, thread pools
    latencies = []
    started = time.perf_counter()
    for start in range(0, len(queries) - batch + 1, batch):
        t0 = time.perf_counter()
        search(queries[start : start + batch])
        latencies.append(time.perf_counter() - t0)
        if len(latencies) >= 3 and time.perf_counter() - started > budget_s:
            break
    total = sum(latencies)
    ms = np.array(latencies) * 1000
    return {
        "calls": len(latencies),
        "queries": len(latencies) * batch,
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "qps": round(len(latencies) * batch / total, 1),
    }


def bench_search(
    n: int, dim: int, k: int, n_queries: int, budget_s: float, peak_gbps: float
) -> list[dict]:
    import faiss

    from index import faiss_backend

    log(f"search: {n:,} × {dim} vectors")
    database = _unit_vectors(n, dim, seed=n)
    queries = _unit_vectors(max(n_queries, max(BATCHES) * 3), dim, seed=1)
    t0 = time.perf_counter()
    master = faiss_backend.build("flat", dim, database, np.arange(n))
    build_s = time.perf_counter() - t0
    numpy_search = _numpy_topk(database, k)
    rows = []
    for batch in BATCHES:
        cpu = _time_calls(lambda q: master.search(q, k), queries, batch, budget_s)
        base = _time_calls(numpy_search, queries, batch, budget_s)
        rows.append(
            {
                "engine": "faiss-cpu-flat",
                "n": n,
                "dim": dim,
                "k": k,
                "batch": batch,
                **cpu,
                "numpy": base,
                "qps_ratio_faiss_over_numpy": round(cpu["qps"] / base["qps"], 2),
                "build_s": round(build_s, 2),
            }
        )
        log(f"  batch {batch}: faiss {cpu['p50_ms']} ms p50, numpy {base['p50_ms']} ms p50")
    if faiss_backend.gpu_count() > 0:
        resources = faiss.StandardGpuResources()
        for fp16 in (False, True):
            options = faiss.GpuClonerOptions()
            options.useFloat16 = fp16
            gpu = faiss.index_cpu_to_gpu(resources, 0, master, options)
            for batch in BATCHES:
                timing = _time_calls(lambda q, g=gpu: g.search(q, k), queries, batch, budget_s)
                row = {
                    "engine": f"faiss-gpu-flat-{'fp16' if fp16 else 'fp32'}",
                    "n": n,
                    "dim": dim,
                    "k": k,
                    "batch": batch,
                    **timing,
                }
                if batch == 1:
                    scanned = n * dim * (2 if fp16 else 4)
                    gbps = scanned / (timing["p50_ms"] / 1000) / 1e9
                    row["achieved_gbps"] = round(gbps, 1)
                    row["bandwidth_fraction"] = round(gbps / peak_gbps, 3)
                rows.append(row)
                log(f"  gpu fp16={fp16} batch {batch}: {timing['p50_ms']} ms p50")
            del gpu
    return rows


def bench_encode(bundle_dir: Path | None, images: Path | None, ids: int, batch: int) -> dict:
    from bundle.encoders import Bundle
    from index.encode import encode_images
    from index.gallery_sources import from_folder

    label = "tiny, random init" if bundle_dir is None else str(bundle_dir)
    with tempfile.TemporaryDirectory() as tmp:
        if bundle_dir is None:
            from support.builders import make_random_bundle

            bundle_dir = make_random_bundle(Path(tmp) / "bundle")
        if images is None:
            from training.synthetic import generate

            generate(Path(tmp) / "synthetic", ids=ids, images_per_id=4, seed=0)
            images = Path(tmp) / "synthetic" / "imgs"
        bundle = Bundle(bundle_dir, device="auto")
        paths = [e.path for e in from_folder(images)]
        encode_images(bundle, paths[:batch], batch_size=batch, workers=0, progress=False)
        workers = min(2, os.cpu_count() or 1)
        t0 = time.perf_counter()
        result = encode_images(bundle, paths, batch_size=batch, workers=workers, progress=False)
        seconds = time.perf_counter() - t0
    log(f"encode: {len(result.kept)} images in {seconds:.1f}s")
    return {
        "bundle": label,
        "model": bundle.meta.model_name,
        "device": str(bundle.device),
        "images": len(result.kept),
        "batch_size": batch,
        "workers": workers,
        "seconds": round(seconds, 2),
        "images_per_s": round(len(result.kept) / seconds, 1),
    }


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also write OUT/index.json")
    parser.add_argument("--sizes", default="100000,1000000", help="gallery sizes, comma-separated")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--queries", type=int, default=256, help="queries per setting, at most")
    parser.add_argument("--budget", type=float, default=15.0, help="seconds per setting, about")
    parser.add_argument("--quick", action="store_true", help="20k vectors, short budgets")
    parser.add_argument("--peak-gbps", type=float, default=3350.0, help="GPU memory bandwidth")
    parser.add_argument("--bundle", type=Path, help="bundle to encode with (default: tiny random)")
    parser.add_argument("--images", type=Path, help="images to encode (default: synthetic)")
    parser.add_argument("--encode-ids", type=int, default=100, help="synthetic people, 4 images")
    parser.add_argument("--encode-batch", type=int, default=64)
    parser.add_argument("--skip-encode", action="store_true")
    parser.add_argument(
        "--faiss-threads", type=int, default=0, help="OpenMP threads for FAISS (0: its default)"
    )
    args = parser.parse_args(argv)
    sizes = [20_000] if args.quick else [int(s) for s in args.sizes.split(",") if s.strip()]
    budget = 3.0 if args.quick else args.budget
    import faiss

    from index import faiss_backend

    if args.faiss_threads > 0:
        faiss.omp_set_num_threads(args.faiss_threads)
    report: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            # Other work on the machine skews CPU timings (OpenMP threads suffer most): say so.
            "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
            "faiss": faiss.__version__,
            "faiss_threads": faiss.omp_get_max_threads(),
            "gpus": faiss_backend.gpu_count(),
        },
        "config": {"sizes": sizes, "dim": args.dim, "k": args.k, "batches": list(BATCHES)},
    }
    if not args.skip_encode:
        ids = 20 if args.quick else args.encode_ids
        report["encode"] = bench_encode(args.bundle, args.images, ids, args.encode_batch)
    report["search"] = [
        row
        for n in sizes
        for row in bench_search(n, args.dim, args.k, args.queries, budget, args.peak_gbps)
    ]
    report["machine"]["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "index.json").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
