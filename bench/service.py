"""Search latency and throughput of the HTTP service, with cross-request batching on and off.

    python bench/service.py [--out DIR] [--bundle B --index I] [--requests N] [--max-seconds S]

Starts `python -m service` on 127.0.0.1 (once with batching, once without), drives
POST /v1/search from 1, 8 and 32 concurrent clients, and reports p50/p99 latency, QPS and the
mean query-batch size the server saw. The baseline is the same encode + search in-process, one
query at a time; `http_overhead` is the served p50 at one client over that baseline.
Without --bundle/--index it builds a synthetic gallery with an untrained tiny bundle, padded with
random vectors to --gallery-size. Prints JSON and writes DIR/service.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# As `python -m service` does: a fair in-process baseline needs the same OpenMP wait policy.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from support.server import ServiceProcess, service_env

CONCURRENCY = (1, 8, 32)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


# --- the gallery --------------------------------------------------------------------------------


def build_gallery(work: Path, gallery_size: int) -> tuple[Path, Path, list[str]]:
    """A synthetic set, an untrained tiny bundle, and an index of its images plus padding."""
    from bundle.encoders import Bundle
    from index.gallery_sources import from_dataset
    from index.ingest import ingest
    from index.items import ItemMeta
    from index.store import GalleryIndex
    from support.builders import make_random_bundle, make_synthetic

    root = make_synthetic(work / "synthetic", ids=60, images_per_id=3)
    bundle_dir = make_random_bundle(work / "bundle")
    bundle = Bundle(bundle_dir, device="cpu")
    index_dir = work / "index"
    with GalleryIndex.create(index_dir, bundle.fingerprint, bundle.dim, "flat", "never") as index:
        ingest(index, bundle, from_dataset("cuhk-pedes", root, "test"), workers=0, progress=False)
        pad = gallery_size - index.stats()["count"]
        if pad > 0:
            # Random unit vectors stand in for a large camera gallery: search cost is what counts.
            rng = np.random.default_rng(0)
            vectors = rng.standard_normal((pad, bundle.dim)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            now = time.time()
            items = [
                ItemMeta(f"pad-{i}", f"pad-{i // 4}", "/nonexistent", f"{i:064x}", now)
                for i in range(pad)
            ]
            index.add(vectors, items)
    return bundle_dir, index_dir, captions(root)


def captions(root: Path) -> list[str]:
    entries = json.loads((root / "reid_raw.json").read_text())
    return [c for e in entries for c in e["captions"]]


def default_queries() -> list[str]:
    colours = ["red", "blue", "black", "white", "green", "yellow", "grey", "brown"]
    things = ["coat", "jacket", "shirt", "dress", "backpack", "skirt", "hoodie", "trousers"]
    return [
        f"a person in a {c} {t} carrying a {d} bag"
        for c in colours
        for t in things
        for d in colours[:2]
    ]


# --- in-process baseline ------------------------------------------------------------------------


def baseline(bundle_dir: Path, index_dir: Path, queries: list[str], n: int) -> dict:
    from bundle.encoders import Bundle
    from index.store import GalleryIndex

    bundle = Bundle(bundle_dir, device="cpu")
    with GalleryIndex.open(index_dir, bundle.fingerprint, bundle.dim, "never") as index:
        for q in queries[:5]:
            index.search(bundle.encode_text([q]), 10)  # warm-up
        times = []
        for i in range(n):
            started = time.perf_counter()
            index.search(bundle.encode_text([queries[i % len(queries)]]), 10)
            times.append((time.perf_counter() - started) * 1000)
        batch = queries[:32]
        started = time.perf_counter()
        index.search(bundle.encode_text(batch), 10)
        batched = (time.perf_counter() - started) * 1000 / len(batch)
        count = index.stats()["count"]
    return {
        "encode_search_p50_ms": round(statistics.median(times), 3),
        "encode_search_p99_ms": round(percentile(times, 99), 3),
        "batched_32_per_query_ms": round(batched, 3),
        "gallery_size": count,
        "embed_dim": bundle.dim,
    }


# --- load against the server ----------------------------------------------------------------------


def _samples(metrics_text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """(labels, value) of every sample called ``name`` in a Prometheus text exposition."""
    return [
        (sample.labels, sample.value)
        for family in text_string_to_metric_families(metrics_text)
        for sample in family.samples
        if sample.name == name
    ]


def server_buckets(metrics_text: str) -> dict[float, int]:
    """Cumulative counts of the server's own latency histogram for /v1/search."""
    return {
        float(labels["le"]): int(value)
        for labels, value in _samples(metrics_text, "tps_http_request_duration_seconds_bucket")
        if labels.get("method") == "POST" and labels.get("route") == "/v1/search"
    }


def server_quantile(before: dict[float, int], after: dict[float, int], q: float) -> float | None:
    """Upper bound (ms) of the bucket holding quantile q of the requests between two scrapes."""
    deltas = sorted((le, after[le] - before.get(le, 0)) for le in after)
    total = deltas[-1][1] if deltas else 0
    for le, n in deltas:
        if total and n >= q * total:
            return le * 1000
    return None


def batch_stats(metrics_text: str) -> tuple[float, float]:
    """(sum, count) of the server's text batch-size histogram."""
    total = _samples(metrics_text, "tps_query_batch_size_sum")
    count = _samples(metrics_text, "tps_query_batch_size_count")
    return (total[0][1] if total else 0.0), (count[0][1] if count else 0.0)


async def drive(url: str, queries: list[str], clients: int, requests: int, max_s: float) -> dict:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    next_request = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        scrape = (await http.get("/metrics")).text
        before, buckets_before = batch_stats(scrape), server_buckets(scrape)
        started = time.perf_counter()
        deadline = started + max_s

        async def client() -> None:
            nonlocal next_request
            while next_request < requests and time.perf_counter() < deadline:
                query = queries[next_request % len(queries)]
                next_request += 1
                t0 = time.perf_counter()
                reply = await http.post("/v1/search", json={"query": query, "top_k": 10})
                latencies.append((time.perf_counter() - t0) * 1000)
                statuses[reply.status_code] = statuses.get(reply.status_code, 0) + 1

        await asyncio.gather(*(client() for _ in range(clients)))
        elapsed = time.perf_counter() - started
        scrape = (await http.get("/metrics")).text
        after, buckets_after = batch_stats(scrape), server_buckets(scrape)
    calls = after[1] - before[1]
    return {
        "clients": clients,
        "requests": len(latencies),
        "seconds": round(elapsed, 3),
        "qps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(percentile(latencies, 50), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "encoder_calls": int(calls),
        "mean_query_batch": round((after[0] - before[0]) / calls, 2) if calls else None,
        # From the server's histogram: bucket upper bounds, so coarse, but free of client delays.
        "server_p50_ms_at_most": server_quantile(buckets_before, buckets_after, 0.5),
        "server_p99_ms_at_most": server_quantile(buckets_before, buckets_after, 0.99),
    }


def serve_and_drive(
    bundle_dir: Path, index_dir: Path, work: Path, batching: bool, queries: list[str], args
) -> list[dict]:
    env = service_env(
        bundle_dir,
        index_dir,
        TPS_BATCHING=str(batching).lower(),
        TPS_LOG_LEVEL="warning",
        TPS_INDEX_REFRESH_S="0",
    )
    server = ServiceProcess(env, work / f"service-batching-{batching}.log").start().wait_ready()
    try:
        levels = []
        for clients in CONCURRENCY:
            # Warm-up at the same concurrency: opens the connections, fills the thread pools.
            asyncio.run(drive(server.url, queries, clients, 4 * clients, args.max_seconds))
            levels.append(
                asyncio.run(drive(server.url, queries, clients, args.requests, args.max_seconds))
            )
        return levels
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="folder for service.json")
    parser.add_argument("--bundle", type=Path, help="bundle to serve (with --index)")
    parser.add_argument("--index", type=Path, help="index to serve (with --bundle)")
    parser.add_argument("--gallery-size", type=int, default=50_000)
    parser.add_argument("--requests", type=int, default=600, help="requests per level (max)")
    parser.add_argument("--max-seconds", type=float, default=15.0, help="time per level (max)")
    args = parser.parse_args(argv)
    if (args.bundle is None) != (args.index is None):
        parser.error("--bundle and --index go together")

    with tempfile.TemporaryDirectory(prefix="bench-service-") as tmp:
        work = Path(tmp)
        if args.bundle is not None:
            bundle_dir, index_dir, queries = args.bundle, args.index, default_queries()
            source = "given"
        else:
            bundle_dir, index_dir, queries = build_gallery(work, args.gallery_size)
            source = "synthetic test split + random padding, untrained tiny bundle"
        base = baseline(bundle_dir, index_dir, queries, 100)
        runs = {
            name: serve_and_drive(bundle_dir, index_dir, work, on, queries, args)
            for name, on in (("batching_on", True), ("batching_off", False))
        }
    one_client = runs["batching_on"][0]["p50_ms"]
    result = {
        "bench": "service",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "note": "client and server share the machine's CPUs; where p99_ms is far above "
        "server_p99_ms_at_most, the Python client is the bottleneck",
        "gallery": source,
        "in_process": base,
        "http": runs,
        "http_overhead": round(one_client / base["encode_search_p50_ms"], 2),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "service.json").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
