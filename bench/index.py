"""Gallery index throughput: image encoding (images/s) and exact top-k search, engine by engine.

Per gallery size (random unit vectors) and batch (1 and 64), every exact-search engine is timed in
turns in one process (bench/search_timing.py): a numpy baseline (matrix product + argpartition),
FAISS's flat search as shipped and as tuned (index/search/faiss_tuning.py), numpy and torch fp32
over FAISS's own vectors, and the bf16 scan with an exact re-score (packed for oneDNN and not).
``served: true`` marks the engine the store's policy picks (index/search/engine_policy.py), timed
through the store's own search path. Each row gives its QPS, ``qps_ratio_over_numpy``, and
``fraction_of_limit``: the machine's limit, measured in the same run (bench/search_limits.py), over
the engine's p50 — memory bandwidth for batch 1 (the bytes of a scan in the engine's precision),
GEMM FLOP/s in that precision for batches. ``targets`` checks the issue's goals.
With a FAISS GPU build and a device, flat fp32 and fp16 GPU copies are timed too (else their
rows say ``skipped``): k is clamped to FAISS's GPU limit (the rows say so), and batch 1 is set
against the device's peak memory bandwidth, from its memory clock and bus width (``limits.gpu``
says where the figure came from; ``--peak-gbps`` overrides it).

    python -m bench.index --skip-encode --sizes 100000,1000000   # minutes; ~6 GB at 1M
    python -m bench.index --quick                                # 20k vectors, a smoke test

JSON on stdout and in OUT/index.json. The machine is usually shared: read the ratios, which
hold across a busy spell, more than the absolute figures.
"""

from __future__ import annotations

import argparse
import dataclasses
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
# As the service runs (service/__main__.py): OpenMP threads sleep when idle instead of spinning.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from bench.search_limits import gemm_flops, gpu_bandwidth, limit_ms, read_bandwidth  # noqa: E402
from bench.search_timing import time_in_turns  # noqa: E402

BATCHES = (1, 8, 64)


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
    """The baseline: one numpy matrix product and argpartition, as a user would write it."""

    def search(queries: np.ndarray) -> np.ndarray:
        scores = queries @ database.T
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
        return np.take_along_axis(top, order, axis=1)

    return search


def _gpu_rows(
    master: Any,
    n: int,
    dim: int,
    k: int,
    queries: np.ndarray,
    budget_s: float,
    bandwidth: dict[str, Any],
) -> list[dict]:
    """FAISS GPU copies of the master (fp32, fp16), or rows saying why they were not run."""
    import faiss

    from index.faiss import backend as faiss_backend

    names = ("faiss-gpu-flat-fp32", "faiss-gpu-flat-fp16")
    if faiss_backend.gpu_count() == 0:
        return [
            {"engine": name, "n": n, "dim": dim, "k": k, "batch": batch, "skipped": "no GPU"}
            for name in names
            for batch in BATCHES
        ]
    asked, k = k, min(k, faiss_backend.GPU_MAX_K)  # FAISS GPU k-selection stops there
    peak_gbps = bandwidth.get("limit_gbps")
    resources = faiss.StandardGpuResources()
    rows = []
    for name, fp16 in zip(names, (False, True), strict=True):
        options = faiss.GpuClonerOptions()
        options.useFloat16 = fp16
        gpu = faiss.index_cpu_to_gpu(resources, 0, master, options)
        for batch in BATCHES:
            timing = time_in_turns(
                {name: lambda q, g=gpu: g.search(q, k)}, queries, batch, budget_s
            )[name]
            row = {
                "engine": name,
                "served": False,
                "n": n,
                "dim": dim,
                "k": k,
                "batch": batch,
                **timing,
            }
            if k != asked:
                row["k_asked"] = asked
                row["k_clamped_to"] = f"GPU_MAX_K={faiss_backend.GPU_MAX_K}"
            if batch == 1:
                scanned = n * dim * (2 if fp16 else 4)
                gbps = scanned / (timing["p50_ms"] / 1000) / 1e9
                row["achieved_gbps"] = round(gbps, 1)
                row["limit"] = f"gpu memory bandwidth {peak_gbps} GB/s ({bandwidth['source']})"
                if peak_gbps:
                    row["fraction_of_limit"] = round(gbps / peak_gbps, 3)
            rows.append(row)
            log(f"  {name} batch {batch}: {timing['p50_ms']} ms p50")
        del gpu
    return rows


def _engines(master: Any, k: int, cpu: Any) -> tuple[Any, dict[str, tuple[Callable, str]], float]:
    """The store's exact search for ``master``, every CPU engine measured against it (name ->
    (search of a query batch, the precision it scans in)), and the bf16 copy's build seconds."""
    from index.search import faiss_tuning
    from index.search.bf16_engine import Bf16Rescore
    from index.search.engine_policy import EnginePolicy
    from index.search.exact_engines import FaissFlat, TorchFp32
    from index.search.exact_search import ExactSearch

    # What GalleryIndex serves with the default policy, calibrated in this run (a private
    # cache folder): the trial's choice is part of what is measured.
    policy = EnginePolicy(cache_dir=Path(tempfile.mkdtemp(prefix="bench-")))
    exact = ExactSearch(master, policy, cpu)
    view = exact.view
    fp32 = exact.engines["numpy-fp32"]
    bf16 = exact.bf16 or Bf16Rescore(view, fp32)  # measured even where it is not served
    flat = FaissFlat(view, master)
    torch_fp32 = TorchFp32(view)

    def shipped(q: np.ndarray) -> object:
        with faiss_tuning.settings(faiss_tuning.SHIPPED):
            return flat.search(q, k)

    engines: dict[str, tuple[Callable, str]] = {
        "numpy": (_numpy_topk(view.vectors, k), "fp32"),
        "faiss-flat-shipped": (shipped, "fp32"),
        "faiss-flat": (lambda q: flat.search(q, k), "fp32"),
        "numpy-fp32": (lambda q: fp32.search(q, k), "fp32"),
        "torch-fp32": (lambda q: torch_fp32.search(q, k), "fp32"),
        bf16.name: (lambda q: bf16.search(q, k), "bf16"),
    }
    if bf16.packed:  # what pre-packing buys
        plain = Bf16Rescore(view, fp32, packed=False)
        engines[f"{bf16.name}-unpacked"] = (lambda q: plain.search(q, k), "bf16")
    return exact, engines, bf16.build_s


def bench_search(
    n: int,
    dim: int,
    k: int,
    n_queries: int,
    budget_s: float,
    limits: dict[str, dict[str, Any]] | None,
    cpu: Any,
    quick: bool = False,
) -> list[dict]:
    from index.faiss import backend as faiss_backend

    log(f"search: {n:,} × {dim} vectors")
    # --quick is a smoke test: two rounds, short pauses (its figures are not the point).
    turns = {"min_rounds": 2, "pause_s": 0.02} if quick else {}
    database = _unit_vectors(n, dim, seed=n)
    queries = _unit_vectors(max(n_queries, max(BATCHES) * 3), dim, seed=1)
    t0 = time.perf_counter()
    master = faiss_backend.build("flat", dim, database, np.arange(n))
    build_s = time.perf_counter() - t0
    del database  # every engine reads FAISS's own copy from here on
    exact, engines, bf16_build_s = _engines(master, k, cpu)
    rows = []
    for batch in BATCHES:
        served = exact.engine_for(batch)
        calls = {name: search for name, (search, _) in engines.items()}
        calls[served] = lambda q: exact.search(q, k)  # the store's own path, ids and all
        timings = time_in_turns(calls, queries, batch, budget_s, **turns)
        check = queries[:batch]
        same = _same_top_k(exact.search(check, k)[1], engines["numpy"][0](check))
        base = timings["numpy"]["qps"]
        best_qps = max(t["qps"] for t in timings.values())
        for name, timing in timings.items():
            precision = engines[name][1]
            row = {
                "engine": name,
                "served": name == served,
                "n": n,
                "dim": dim,
                "k": k,
                "batch": batch,
                "precision": precision,
                **timing,
                "qps_ratio_over_numpy": round(timing["qps"] / base, 2),
                "qps_ratio_over_best": round(timing["qps"] / best_qps, 2),
                "build_s": round(build_s, 2),
            }
            if limits is not None:  # --quick measures no machine limits
                bound_ms, limit = limit_ms(n, dim, batch, precision, limits)
                row["limit"] = limit
                row["limit_ms"] = round(bound_ms, 3)
                row["fraction_of_limit"] = round(bound_ms / timing["p50_ms"], 3)
            if name == served:
                row["same_top_k_as_numpy"] = same
                row["bf16_build_s"] = round(bf16_build_s, 2) if "bf16" in name else None
                row["store_stats"] = exact.describe()
            rows.append(row)
        summary = ", ".join(f"{name} {t['p50_ms']}" for name, t in timings.items())
        log(f"  batch {batch} (served: {served}) p50 ms: {summary}")
    log(f"  calibration: {exact.choice.reason}, {exact.choice.trial_s} s")
    rows += _gpu_rows(master, n, dim, k, queries, budget_s, (limits or {}).get("gpu", {}))
    return rows


def _same_top_k(ids: np.ndarray, reference: np.ndarray) -> float:
    """Fraction of queries whose ranked top-k ids equal the numpy baseline's."""
    return round(float(np.mean([(a == b).all() for a, b in zip(ids, reference, strict=True)])), 3)


def targets(rows: list[dict], n: int) -> dict[str, Any]:
    """The targets at ``n`` vectors, from this run's rows: per batch, the served engine against
    the best exact engine measured here (≥ 0.9) and the numpy baseline (≥ 1.0)."""
    out: dict[str, Any] = {"n": n}
    met = {}
    for batch in BATCHES:
        here = [r for r in rows if r["n"] == n and r["batch"] == batch and "skipped" not in r]
        served = next((r for r in here if r["served"]), None)
        if served is None:
            continue
        best = max(here, key=lambda r: r["qps"])
        out[f"batch_{batch}"] = {
            "served": served["engine"],
            "best": best["engine"],
            "over_best": served["qps_ratio_over_best"],
            "over_numpy": served["qps_ratio_over_numpy"],
        }
        met[f"batch_{batch}_over_best_>=_0.9"] = served["qps_ratio_over_best"] >= 0.9
        met[f"batch_{batch}_over_numpy_>=_1.0"] = served["qps_ratio_over_numpy"] >= 1.0
    out["met"] = met
    return out


def bench_encode(bundle_dir: Path | None, images: Path | None, ids: int, batch: int) -> dict:
    from bundle.encoders import Bundle
    from index.ingest.encode import encode_images
    from index.ingest.sources import from_folder

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
        "precision": bundle.precision,
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
    parser.add_argument(
        "--sizes", default="20000,200000,1000000", help="gallery sizes, comma-separated"
    )
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--queries", type=int, default=256, help="queries per setting, at most")
    parser.add_argument(
        "--budget", type=float, default=3.0, help="seconds per size and batch, about"
    )
    parser.add_argument("--quick", action="store_true", help="20k vectors, short budgets")
    parser.add_argument(
        "--peak-gbps",
        type=float,
        help="GPU peak memory bandwidth, GB/s (default: from the device's clock and bus width)",
    )
    parser.add_argument("--bundle", type=Path, help="bundle to encode with (default: tiny random)")
    parser.add_argument("--images", type=Path, help="images to encode (default: synthetic)")
    parser.add_argument("--encode-ids", type=int, default=100, help="synthetic people, 4 images")
    parser.add_argument("--encode-batch", type=int, default=64)
    parser.add_argument("--skip-encode", action="store_true")
    parser.add_argument(
        "--without-native-bf16",
        action="store_true",
        help="decide as on a CPU without native bf16 (its flags masked; with "
        "ONEDNN_MAX_CPU_ISA=AVX2 bf16 products are emulated too): a stand-in for such CPUs",
    )
    parser.add_argument(
        "--faiss-threads", type=int, default=0, help="OpenMP threads for FAISS (0: its default)"
    )
    args = parser.parse_args(argv)
    sizes = [20_000] if args.quick else [int(s) for s in args.sizes.split(",") if s.strip()]
    budget = 0.5 if args.quick else args.budget
    import faiss

    from index.faiss import backend as faiss_backend

    if args.faiss_threads > 0:
        faiss.omp_set_num_threads(args.faiss_threads)
    import torch

    from index.search import faiss_tuning
    from index.search.cpu_features import X86_BF16, detect
    from index.search.engine_policy import DEFAULT_POLICY

    cpu = detect()
    if args.without_native_bf16:
        cpu = dataclasses.replace(cpu, flags=cpu.flags - X86_BF16 - {"bf16", "sve_bf16"})
    report: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            # Other work on the machine skews CPU timings (OpenMP threads suffer most): say so.
            "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
            "faiss": faiss.__version__,
            "faiss_threads": faiss.omp_get_max_threads(),
            "faiss_settings": vars(faiss_tuning.current()),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
            "gpus": faiss_backend.gpu_count(),
            "cpu": cpu.describe(),
            "cpu_as_detected": detect().describe(),
            "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
        },
        "config": {
            "sizes": sizes,
            "dim": args.dim,
            "k": args.k,
            "batches": list(BATCHES),
            "policy": {
                k: str(v) if isinstance(v, Path) else v for k, v in vars(DEFAULT_POLICY).items()
            },
            "qps": "batch / p50 latency; engines timed in turns (bench/search_timing.py)",
        },
    }
    if not args.skip_encode:
        ids = 20 if args.quick else args.encode_ids
        report["encode"] = bench_encode(args.bundle, args.images, ids, args.encode_batch)
    limits = None
    if not args.quick:  # a smoke test measures no machine limits
        log("limits: memory bandwidth and GEMM rates")
        limits = {
            "bandwidth": read_bandwidth(),
            "gemm": gemm_flops(native_bf16=cpu.native_bf16),
        }
        if faiss_backend.gpu_count() > 0:
            limits["gpu"] = gpu_bandwidth(0, args.peak_gbps)
    report["limits"] = limits
    report["search"] = [
        row
        for n in sizes
        for row in bench_search(n, args.dim, args.k, args.queries, budget, limits, cpu, args.quick)
    ]
    report["targets"] = [targets(report["search"], n) for n in sizes]
    report["machine"]["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "index.json").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
