"""Gallery store throughput: FAISS + SQLite (the default store) against milvus-lite.

Why: choosing a store for a deployment needs the cost of each, measured through the same
``GalleryStore`` calls the service makes. One run fills each store with the same random unit
vectors and random metadata (10 cameras, a month of capture times, persons, tags; a few
unknowns), then times:

- add: vectors/s through ``store.add`` in batches of 1,000 (dedupe planning and durable commit
  included, as the service pays them);
- search: batch 1, top 10, p50 / p99 latency and QPS, without a filter and with one (2 of 10
  cameras and a two-week capture window, about 9 % of the gallery passing);

and the ratio milvus-lite / FAISS of each. It also checks that both stores return the same
top 10 for a few queries (both indexes are exact: flat).

    python -m bench.store --out out/bench                  # 100k × 512
    python -m bench.store --quick                          # 5k vectors, a smoke test

JSON on stdout and in OUT/store.json; progress on stderr.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

FP = "bench-" + "0" * 58
DAY = 86_400.0
T0 = 1_735_689_600.0  # 2025-01-01 UTC
CAMERAS = [f"cam{j}" for j in range(10)]
TAGS = ("red", "bag", "hat", "bike")
ENGINES = {"faiss": "gallery", "milvus_lite": "gallery.db"}

NOTES = [
    "milvus-lite 3.x is a pure-Python engine (Arrow/Parquet segments searched with numpy or "
    "FAISS, behind an in-process gRPC server); these figures measure that embedded mode, meant "
    "for tests, single-process use and backups, not a Milvus server. The Milvus store flushes "
    "after every write on milvus-lite, because rows left in its in-memory table are searched "
    "row by row in Python.",
    "Not runnable here: there is no Milvus server or cluster and no GPU on this machine. The "
    "milvus:// path was exercised only by the tests, against `milvus-lite server` (the same "
    "engine behind gRPC).",
    "A Milvus server or cluster would change: search runs in C++ (Knowhere) over sealed, "
    "indexed segments spread across query nodes, so latency is mostly the RPC and proxy and "
    "QPS grows with query-node replicas; inserts go through the proxy and the WAL and are "
    "indexed asynchronously, with no flush per write; strong consistency makes a read wait "
    "until the query nodes have caught up with its timestamp (up to about one time tick, "
    "200 ms by default), so replicas that do not need read-your-writes could search with "
    "Bounded consistency; metadata filters use the inverted scalar indexes the store creates.",
    "A GPU index (kind gpu_cagra or gpu_brute_force, a Milvus GPU server only) would move "
    "each segment's search to the GPU: large query batches gain the most; batch-1 latency "
    "stays dominated by the RPC. milvus-lite refuses these kinds.",
    "The FAISS store commits every add as a new generation (copy-on-write index, a new "
    "vectors file, fsync), so its per-batch add cost grows with the gallery; large imports "
    "are cheaper in fewer, larger batches or with `python -m index build`.",
    "The machine is shared: compare the two engines within one run, and see load_avg.",
]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def unit_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def random_items(n: int, seed: int) -> list[Any]:
    """Random metadata: 10 cameras, a month of capture times, 5k persons, a few tags; about
    5 % of images without a camera, a capture time or a person."""
    from index.items import ItemMeta

    rng = np.random.default_rng(seed)
    cameras = rng.integers(0, len(CAMERAS), n)
    times = T0 + rng.uniform(0, 30 * DAY, n).round()
    persons = rng.integers(0, 5000, n)
    unknown = rng.random((n, 3)) < 0.05
    tag_bits = rng.random((n, len(TAGS))) < 0.2
    return [
        ItemMeta(
            image_id=f"img{j:08d}",
            person_id=None if unknown[j, 2] else f"p{persons[j]}",
            source_path=f"/cameras/{CAMERAS[cameras[j]]}/{j}.jpg",
            sha256=hashlib.sha256(j.to_bytes(8, "little")).hexdigest(),
            added_at=T0 + 31 * DAY,
            camera_id=None if unknown[j, 0] else CAMERAS[cameras[j]],
            captured_at=None if unknown[j, 1] else float(times[j]),
            tags=tuple(t for t, on in zip(TAGS, tag_bits[j], strict=True) if on),
        )
        for j in range(n)
    ]


def time_calls(
    search: Callable[[np.ndarray], Any], queries: np.ndarray, budget_s: float, at_least: int
) -> dict[str, float]:
    """Batch-1 latency over ``queries`` until they run out or the budget is spent."""
    for q in queries[:2]:
        search(q)  # warm-up: caches, thread pools, compiled filter expressions
    latencies = []
    started = time.perf_counter()
    for q in queries:
        t0 = time.perf_counter()
        search(q)
        latencies.append(time.perf_counter() - t0)
        if len(latencies) >= at_least and time.perf_counter() - started > budget_s:
            break
    ms = np.array(latencies) * 1000
    return {
        "queries": len(latencies),
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "qps": round(len(latencies) / float(np.sum(latencies)), 1),
    }


def bench_engine(
    engine: str,
    root: Path,
    vectors: np.ndarray,
    items: list[Any],
    queries: np.ndarray,
    where: Any,
    batch: int,
    budget_s: float,
    at_least: int,
) -> tuple[dict[str, Any], list[list[str]]]:
    from index.stores import create_store

    store = create_store(root / ENGINES[engine], FP, vectors.shape[1], "flat", use_gpu="never")
    try:
        log(f"{engine}: adding {len(items):,} vectors in batches of {batch:,}")
        started = time.perf_counter()
        for start in range(0, len(items), batch):
            result = store.add(vectors[start : start + batch], items[start : start + batch])
            assert not result.duplicates
            if (start // batch) % 20 == 0:
                done = start + batch
                log(f"  {done:,} in {time.perf_counter() - started:.1f} s")
        add_s = time.perf_counter() - started
        assert store.count() == len(items)
        log(f"  {len(items) / add_s:,.0f} vectors/s; searching")
        plain = time_calls(lambda q: store.search(q, 10), queries, budget_s, at_least)
        log(f"  plain: {plain['p50_ms']} ms p50")
        filtered = time_calls(lambda q: store.search(q, 10, where), queries, budget_s, at_least)
        log(f"  filtered: {filtered['p50_ms']} ms p50")
        tops = [[h.image_id for h in row] for row in store.search(queries[:20], 10, where)]
        tops += [[h.image_id for h in row] for row in store.search(queries[:20], 10)]
        stats = store.stats()
    finally:
        store.close()
    return {
        "store": stats["store"],
        "kind": stats["kind"],
        "add": {
            "vectors": len(items),
            "batch": batch,
            "seconds": round(add_s, 2),
            "vectors_per_s": round(len(items) / add_s, 1),
        },
        "search": plain,
        "search_filtered": filtered,
    }, tops


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also write OUT/store.json")
    parser.add_argument("--size", type=int, default=100_000, help="gallery size")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--batch", type=int, default=1000, help="items per add")
    parser.add_argument("--queries", type=int, default=400, help="queries per setting, at most")
    parser.add_argument("--budget", type=float, default=20.0, help="seconds per setting, about")
    parser.add_argument("--quick", action="store_true", help="5k vectors, few queries")
    parser.add_argument("--work", type=Path, help="folder for the stores (default: a tmp one)")
    args = parser.parse_args(argv)
    size = 5000 if args.quick else args.size
    n_queries = 20 if args.quick else args.queries
    budget = 1.0 if args.quick else args.budget

    import faiss
    import milvus_lite
    import pymilvus

    from index.filters import GalleryFilter

    where = GalleryFilter(
        camera_ids=("cam2", "cam7"),
        captured_after=T0 + 8 * DAY,
        captured_before=T0 + 22 * DAY,
    )
    log(f"data: {size:,} random unit vectors × {args.dim} with random metadata")
    vectors = unit_vectors(size, args.dim, seed=0)
    items = random_items(size, seed=1)
    queries = unit_vectors(max(n_queries, 22), args.dim, seed=2)
    passing = sum(where.matches(i) for i in items) / size
    report: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
            "faiss": faiss.__version__,
            "faiss_threads": faiss.omp_get_max_threads(),
            "pymilvus": pymilvus.__version__,
            "milvus_lite": milvus_lite.__version__,
        },
        "config": {
            "size": size,
            "dim": args.dim,
            "k": 10,
            "add_batch": args.batch,
            "search_batch": 1,
            "kind": "flat",
            "filter": {
                "camera_ids": list(where.camera_ids or ()),
                "captured_after": where.captured_after,
                "captured_before": where.captured_before,
            },
            "filter_passing_fraction": round(passing, 4),
            "quick": args.quick,
        },
    }
    tops: dict[str, list[list[str]]] = {}
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        for engine in ENGINES:
            report[engine], tops[engine] = bench_engine(
                engine,
                Path(tmp),
                vectors,
                items,
                queries,
                where,
                args.batch,
                budget,
                at_least=min(20, n_queries),
            )
    faiss_r, lite_r = report["faiss"], report["milvus_lite"]
    report["ratio_milvus_lite_over_faiss"] = {
        "add_vectors_per_s": _ratio(
            lite_r["add"]["vectors_per_s"], faiss_r["add"]["vectors_per_s"]
        ),
        "search_p50_ms": _ratio(lite_r["search"]["p50_ms"], faiss_r["search"]["p50_ms"]),
        "search_qps": _ratio(lite_r["search"]["qps"], faiss_r["search"]["qps"]),
        "filtered_search_p50_ms": _ratio(
            lite_r["search_filtered"]["p50_ms"], faiss_r["search_filtered"]["p50_ms"]
        ),
        "filtered_search_qps": _ratio(
            lite_r["search_filtered"]["qps"], faiss_r["search_filtered"]["qps"]
        ),
    }
    same = sum(a == b for a, b in zip(tops["faiss"], tops["milvus_lite"], strict=True))
    report["same_top10"] = {"queries": len(tops["faiss"]), "identical": same}
    report["notes"] = NOTES
    report["machine"]["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "store.json").write_text(text + "\n")
    return 0


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


if __name__ == "__main__":
    sys.exit(main())
