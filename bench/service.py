"""Search latency and throughput of the HTTP service per runtime, batching on and off.

    python -m bench.service [--model tiny|ViT-B-16] [--runtime torch onnx onnx-int8] [--quick]
                            [--bundle B [--index I]] [--out DIR] [--requests N] [--max-seconds S]
                            [--audit-only]

Every runtime is measured against the baseline measured in the same run: the full-context torch
fp32 path (``TPS_RUNTIME=torch TPS_TRIM_TEXT=false``, every caption padded to the context, as
the service ran before trimming), run first and again last; speed-ups use the faster of the
two. For the baseline and each ``--runtime`` (torch = trimmed torch fp32) it starts
`python -m service` on 127.0.0.1 with batching on and off, drives POST /v1/search from 1, 8 and
32 concurrent clients, and reports p50/p99 latency, QPS and the mean query-batch size the
server saw. In-process encode + search of the same runtime, one query at
a time, is the reference for the HTTP overhead (one-client served p50 / in-process p50). Each
runtime's served top-10 lists for the ranking queries are compared with the baseline's.

Without --index it builds a synthetic gallery (the test split of a synthetic set, padded with
random unit vectors to --gallery-size) with a random-init bundle of --model (or --bundle), and
exports the ONNX graphs the runtimes need. Queries are the synthetic captions. Prints JSON and
writes DIR/service.json. ``--quick``: tiny model, small gallery, short levels (``make bench``).

``audit`` in the output: search QPS and p50 at 1 and 32 clients with the audit trail on and off
(trimmed torch, batching on, a key on every request); ``--audit-only`` measures just that.
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
from typing import Any

import httpx
import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# As `python -m service` does: a fair in-process baseline needs the same OpenMP wait policy.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from bench.http_load import drive, percentile
from support.server import API_KEY, ServiceProcess, service_env

CONCURRENCY = (1, 8, 32)
AUDIT_CONCURRENCY = (1, 32)
# (label, audit on, synchronous mode): the default (full), off, normal, and the default again.
AUDIT_RUNS = (
    ("audit_on", True, "full"),
    ("audit_off", False, "full"),
    ("audit_on_sync_normal", True, "normal"),
    ("audit_on_again", True, "full"),
)
RUNTIMES = ("torch", "onnx", "onnx-int8")
BASELINE = "torch-full-context"
BASELINE_AGAIN = "torch-full-context-again"
RANKING_QUERIES = 48
# Served QPS at 32 clients over the baseline's; served p50 at 1 client over in-process p50.
TARGET_SPEEDUP = 2.0
TARGET_OVERHEAD = 1.15
TARGET_INT8_OVERLAP = 0.99


def config(name: str) -> dict[str, str]:
    """The service settings of a measured configuration."""
    if name == BASELINE:
        return {"TPS_RUNTIME": "torch", "TPS_TRIM_TEXT": "false"}
    return {"TPS_RUNTIME": name, "TPS_TRIM_TEXT": "true"}


def bundle_args(name: str) -> dict[str, Any]:
    settings = config(name)
    return {"runtime": settings["TPS_RUNTIME"], "trim_text": settings["TPS_TRIM_TEXT"] == "true"}


# --- the gallery --------------------------------------------------------------------------------


def build_gallery(
    work: Path,
    gallery_size: int,
    model: str = "tiny",
    bundle_dir: Path | None = None,
    ids: int = 60,
) -> tuple[Path, Path, list[str]]:
    """A synthetic set, a random-init bundle, and an index of its images plus padding."""
    from bundle.encoders import Bundle
    from index.ingest.add import ingest
    from index.ingest.sources import from_dataset
    from index.items import ItemMeta
    from index.store import GalleryIndex
    from support.builders import make_synthetic
    from training.export import export_untrained

    root = make_synthetic(work / "synthetic", ids=ids, images_per_id=3)
    if bundle_dir is None:
        bundle_dir = export_untrained(work / "bundle", model)
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


def ensure_onnx(
    bundle_dir: Path, runtimes: list[str], work: Path, check_ids: int = 250
) -> dict | None:
    """Export the graphs the runtimes need (INT8 written whatever its agreement: measured here)."""
    from bundle.format import read_meta
    from bundle.onnx_files import read_record
    from support.builders import make_synthetic
    from training.export import export_onnx_towers

    want_int8 = "onnx-int8" in runtimes
    if not any(r.startswith("onnx") for r in runtimes):
        return None
    record = read_record(read_meta(bundle_dir))
    started = time.perf_counter()
    if record is None or (want_int8 and "text_int8" not in record.graphs):
        root = make_synthetic(work / "check", ids=check_ids, images_per_id=2, held_out=0.4)
        export_onnx_towers(bundle_dir, int8=want_int8, check_root=root, min_overlap=0.0)
        record = read_record(read_meta(bundle_dir))
    assert record is not None
    return {
        "seconds": round(time.perf_counter() - started, 1),
        "int8_check": record.extra.get("int8"),
    }


# --- in-process reference -----------------------------------------------------------------------


def in_process(bundle_dir: Path, index_dir: Path, name: str, queries: list[str], n: int) -> dict:
    """Encode + search one query at a time (and one batch of 32) with this configuration."""
    from bundle.encoders import Bundle
    from index.store import GalleryIndex

    bundle = Bundle(bundle_dir, device="cpu", **bundle_args(name))
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


# --- the served runs ----------------------------------------------------------------------------


def top10(url: str, queries: list[str]) -> list[list[str]]:
    with httpx.Client(base_url=url, timeout=120) as http:
        lists = []
        for query in queries:
            reply = http.post("/v1/search", json={"query": query, "top_k": 10})
            reply.raise_for_status()
            lists.append([r["image_id"] for r in reply.json()["results"]])
    return lists


def serve_and_drive(
    bundle_dir: Path,
    index_dir: Path,
    work: Path,
    name: str,
    batching: bool,
    queries: list[str],
    args: argparse.Namespace,
) -> tuple[list[dict], list[list[str]] | None]:
    """(the levels, the served top-10 lists when batching is on)."""
    env = service_env(
        bundle_dir,
        index_dir,
        TPS_BATCHING=str(batching).lower(),
        TPS_LOG_LEVEL="warning",
        TPS_INDEX_REFRESH_S="0",
        **config(name),
    )
    log = work / f"service-{name}-batching-{batching}.log"
    server = ServiceProcess(env, log).start().wait_ready(timeout=600)
    try:
        rankings = top10(server.url, queries[: args.ranking_queries]) if batching else None
        levels = []
        for clients in args.concurrency:
            # Warm-up at the same concurrency: opens the connections, fills the thread pools.
            warm = min(4 * clients, args.requests)
            asyncio.run(drive(server.url, queries, clients, warm, args.max_seconds))
            levels.append(
                asyncio.run(drive(server.url, queries, clients, args.requests, args.max_seconds))
            )
        return levels, rankings
    finally:
        server.stop()


def audit_cost(
    bundle_dir: Path, index_dir: Path, work: Path, queries: list[str], args: argparse.Namespace
) -> dict:
    """Search QPS with the audit trail on (fsync per commit, the default), off, and on with
    synchronous=normal (trimmed torch, batching on), every request with a key as a deployed
    server needs; the default runs first and again last, since load on a shared machine drifts.
    Each acknowledged search waits for its entry's commit (group commit)."""
    runs: dict[str, list[dict]] = {}
    for label, on, sync in AUDIT_RUNS[:2] if args.quick else AUDIT_RUNS:  # quick: on and off
        env = service_env(
            bundle_dir,
            index_dir,
            TPS_OPEN_READS="false",
            TPS_AUDIT=str(on).lower(),
            TPS_AUDIT_SYNC=sync,
            TPS_AUDIT_DB=str(work / f"{label}.sqlite"),  # never into a given index's folder
            TPS_LOG_LEVEL="warning",
            TPS_INDEX_REFRESH_S="0",
            **config("torch"),
        )
        server = ServiceProcess(env, work / f"service-{label}.log").start().wait_ready(600)
        key = {"X-API-Key": API_KEY}
        try:
            levels = []
            for clients in args.audit_concurrency:
                warm = min(4 * clients, args.requests)
                asyncio.run(drive(server.url, queries, clients, warm, args.max_seconds, key))
                level = drive(server.url, queries, clients, args.requests, args.max_seconds, key)
                levels.append(asyncio.run(level))
            runs[label] = levels
        finally:
            server.stop()
    ratios = {}
    for i, clients in enumerate(args.audit_concurrency):
        on = [runs[k][i] for k in ("audit_on", "audit_on_again") if k in runs]
        best = max(on, key=lambda r: r["qps"])
        off, normal = runs["audit_off"][i], runs.get("audit_on_sync_normal", [None] * 2)[i]
        ratios[f"{clients}_clients"] = {
            "qps_on": best["qps"],
            "qps_on_sync_normal": normal["qps"] if normal else None,
            "qps_off": off["qps"],
            "on_over_off": round(best["qps"] / off["qps"], 3) if off["qps"] else None,
            "p50_ms_on": best["p50_ms"],
            "p50_ms_on_sync_normal": normal["p50_ms"] if normal else None,
            "p50_ms_off": off["p50_ms"],
        }
    return {"runs": runs, "summary": ratios}


def agreement(got: list[list[str]], want: list[list[str]]) -> dict:
    same = sum(g == w for g, w in zip(got, want, strict=True))
    overlap = [len(set(g) & set(w)) / max(len(w), 1) for g, w in zip(got, want, strict=True)]
    return {
        "queries": len(want),
        "identical_top10": same,
        "top10_overlap": round(float(np.mean(overlap)), 4),
    }


def summary(name: str, runs: dict, base_runs: dict, ranks: dict, reference: dict) -> dict:
    """The targets: QPS at 32 clients vs the baseline, rankings, HTTP overhead at 1 client."""
    qps = runs["batching_on"][-1]["qps"]
    base_qps = base_runs["batching_on"][-1]["qps"]
    one_client = runs["batching_on"][0]["p50_ms"]
    overhead = one_client / reference["encode_search_p50_ms"]
    speedup = qps / base_qps if base_qps else float("nan")
    if name.startswith("onnx-int8"):
        rank_ok = ranks["top10_overlap"] >= TARGET_INT8_OVERLAP
        rank_rule = f"top-10 overlap ≥ {TARGET_INT8_OVERLAP}"
    else:
        rank_ok = ranks["identical_top10"] == ranks["queries"]
        rank_rule = "identical top-10 lists"
    return {
        "clients": runs["batching_on"][-1]["clients"],
        "qps_most_clients": qps,
        "baseline_qps_most_clients": base_qps,
        "speedup_most_clients": round(speedup, 2),
        "speedup_target": TARGET_SPEEDUP,
        "rankings": {**ranks, "rule": rank_rule, "met": rank_ok},
        "http_overhead_1_client": round(overhead, 2),
        "overhead_target": TARGET_OVERHEAD,
        "met": {
            "speedup": speedup >= TARGET_SPEEDUP,
            "rankings": rank_ok,
            "overhead": overhead <= TARGET_OVERHEAD,
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="folder for service.json")
    parser.add_argument("--model", default="tiny", help="random-init tiny or ViT-B-16")
    parser.add_argument(
        "--runtime", nargs="+", choices=RUNTIMES, default=list(RUNTIMES), help="runtimes to serve"
    )
    parser.add_argument("--bundle", type=Path, help="serve this bundle (a gallery is built)")
    parser.add_argument("--index", type=Path, help="and this index (needs --bundle)")
    parser.add_argument("--gallery-size", type=int, default=50_000)
    parser.add_argument("--requests", type=int, default=600, help="requests per level (max)")
    parser.add_argument("--max-seconds", type=float, default=15.0, help="time per level (max)")
    parser.add_argument("--quick", action="store_true", help="tiny model, small and short")
    parser.add_argument(
        "--audit-only", action="store_true", help="only the audit trail's cost (on vs off)"
    )
    args = parser.parse_args(argv)
    if args.index is not None and args.bundle is None:
        parser.error("--index needs --bundle")
    # The plan: --quick is a smoke test of every code path with a fixed, small amount of work
    # (one batching mode, two client levels, no repeated baseline), so a busy machine makes it
    # slower, never different.
    args.concurrency, args.audit_concurrency = CONCURRENCY, AUDIT_CONCURRENCY
    args.batching_modes = (("batching_on", True), ("batching_off", False))
    args.ranking_queries, args.ids, args.check_ids = RANKING_QUERIES, 60, 250
    again = [BASELINE_AGAIN]
    if args.quick:
        if args.bundle is None:
            args.model = "tiny"
        args.gallery_size = min(args.gallery_size, 2_000)
        args.requests = min(args.requests, 24)
        args.max_seconds = min(args.max_seconds, 2.0)
        args.concurrency, args.audit_concurrency = (1, 8), (1,)
        args.batching_modes = (("batching_on", True),)
        args.ranking_queries, args.ids, args.check_ids = 8, 24, 24
        again = []

    with tempfile.TemporaryDirectory(prefix="bench-service-") as tmp:
        work = Path(tmp)
        if args.index is not None:
            bundle_dir, index_dir, queries = args.bundle, args.index, default_queries()
            source = "given"
        else:
            bundle_dir, index_dir, queries = build_gallery(
                work, args.gallery_size, args.model, args.bundle, args.ids
            )
            source = f"synthetic test split + random padding, random-init {args.model} bundle"
        audit = audit_cost(bundle_dir, index_dir, work, queries, args)
        if args.audit_only:
            return _report({"bench": "service", "gallery": source, "audit": audit}, args.out)
        export = ensure_onnx(bundle_dir, args.runtime, work, args.check_ids)
        n = 20 if args.quick else 100
        # The baseline runs first and again last, and each configuration's in-process figure is
        # taken right before its servers: other jobs' load on a shared machine drifts, and this
        # keeps it from favouring whichever configuration happened to run in a quiet spell.
        order = [BASELINE, *args.runtime, *again]
        reference, http, rankings = {}, {}, {}
        for name in order:
            setting = BASELINE if name == BASELINE_AGAIN else name
            reference[name] = in_process(bundle_dir, index_dir, setting, queries, n)
            http[name] = {}
            for label, on in args.batching_modes:
                levels, ranked = serve_and_drive(
                    bundle_dir, index_dir, work, setting, on, queries, args
                )
                http[name][label] = levels
                if ranked is not None and name != BASELINE_AGAIN:
                    rankings[name] = ranked
    ranks = {name: agreement(rankings[name], rankings[BASELINE]) for name in args.runtime}
    # The faster of the two baseline runs: the conservative reference for the speed-ups.
    bases = [n for n in (BASELINE, BASELINE_AGAIN) if n in http]
    best_base = max(bases, key=lambda n: http[n]["batching_on"][-1]["qps"])
    result = {
        "bench": "service",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "note": "2-core machine shared with other users' jobs, and client and server share its "
        "CPUs: figures are noisy; where p99_ms is far above server_p99_ms_at_most, the Python "
        "client is the bottleneck",
        "gallery": source,
        "baseline": f"{BASELINE}: torch fp32, every caption padded to the context; measured "
        f"first and again last ({BASELINE_AGAIN}); speed-ups are against the faster of the two",
        "order": order,
        "onnx_export": export,
        "in_process": reference,
        "http": http,
        "http_overhead": {
            name: round(http[name]["batching_on"][0]["p50_ms"] / ref["encode_search_p50_ms"], 2)
            for name, ref in reference.items()
        },
        "vs_baseline": {
            name: summary(name, http[name], http[best_base], ranks[name], reference[name])
            for name in args.runtime
        },
        "audit": audit,
    }
    return _report(result, args.out)


def _report(result: dict, out: Path | None) -> int:
    text = json.dumps(result, indent=2)
    print(text)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "service.json").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
