"""Gallery stores through the service's own search path: FAISS folder, Milvus server, milvus-lite.

Why: choosing a store for a deployment needs what each costs where replicas pay it, in
`python -m service` answering POST /v1/search (text encode, store search with its metadata,
retention check, JSON), not only in the store's own calls. One run:

1. exports a random-init bundle of ``--model`` (ViT-B-16 by default: 512-d vectors and the
   real text tower, as users run) and makes ``--size`` random unit vectors with random metadata
   (10 cameras, a month of capture times, persons, tags; a few unknowns);
2. for each store (a FAISS folder; a real Milvus standalone server, the ``milvus`` package's
   embedded binary started here on free 127.0.0.1 ports, or ``--milvus`` for one of yours;
   a milvus-lite file): fills it through ``store.add`` in batches (vectors/s), times the store's
   own batch-1 search at each top_k, plain and filtered (2 of 10 cameras and a two-week window,
   about 9 % of the gallery passing), then starts `python -m service` on it and drives
   POST /v1/search from 1, 8 and 32 concurrent clients at each top_k;
3. reports every cell and each store's ratio to the FAISS folder in the same run, and checks
   that the stores return the same top 10 (every index is exact: flat).

    python -m bench.store --out out/bench           # 100k × 512, ViT-B-16 text tower
    python -m bench.store --quick                   # tiny model, 5k vectors, short levels
    python -m bench.store --stores faiss milvus_server --milvus milvus://db:19530/bench

JSON on stdout and in OUT/store.json; progress on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `python -m service` runs

from bench.http_load import drive
from support.server import ServiceProcess, store_env

DAY = 86_400.0
T0 = 1_735_689_600.0  # 2025-01-01 UTC
CAMERAS = [f"cam{j}" for j in range(10)]
TAGS = ("red", "bag", "hat", "bike")
STORES = ("faiss", "milvus_server", "milvus_lite")
CLIENTS = (1, 8, 32)
TOP_K = (10, 100)
COLOURS = ("red", "black", "white", "blue", "grey", "green", "yellow", "brown")
GARMENTS = ("coat", "jacket", "shirt", "dress", "trousers", "skirt", "backpack", "hat")

NOTES = [
    "Served figures include the text encode of every query (the bundle's text tower, batched "
    "across clients by the service's micro-batcher); the store's own search is the `direct` "
    "block. Compare stores within one run: the machine may be shared, see load_avg.",
    "The Milvus server is the `milvus` package's embedded standalone (2.3.5: the real "
    "server's query nodes, segments and load state, with etcd and local storage on this "
    "machine). Searches are strongly consistent by default, so each waits for the server's "
    "time tick (up to 200 ms by default); `served_session` is the same store served with "
    "TPS_MILVUS_SEARCH_CONSISTENCY=session, which does not wait. A cluster changes the RPC "
    "distance and spreads segments over query nodes, not that wait.",
    "milvus-lite is a pure-Python engine behind an in-process gRPC server, for tests, one "
    "process and backups; the Milvus store flushes after every write there.",
    "Hit metadata comes back with Milvus's search, and in one batched SQLite read per request "
    "from the FAISS folder: top_k 100 costs one store call on either.",
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
            source_path=f"cameras/{CAMERAS[cameras[j]]}/{j}.jpg",
            sha256=hashlib.sha256(j.to_bytes(8, "little")).hexdigest(),
            added_at=T0 + 31 * DAY,
            camera_id=None if unknown[j, 0] else CAMERAS[cameras[j]],
            captured_at=None if unknown[j, 1] else float(times[j]),
            tags=tuple(t for t, on in zip(TAGS, tag_bits[j], strict=True) if on),
        )
        for j in range(n)
    ]


def captions(n: int) -> list[str]:
    """Descriptions in the data sets' style, distinct enough that batches vary."""
    return [
        f"a person in a {COLOURS[j % 8]} {GARMENTS[(j // 8) % 8]} and "
        f"{COLOURS[(j // 3) % 8]} {GARMENTS[(j // 5) % 8]}, walking"
        for j in range(n)
    ]


def time_calls(search: Callable[[np.ndarray], Any], queries: np.ndarray, budget_s: float) -> dict:
    """Batch-1 latency of the store's own search over ``queries`` (or until the budget)."""
    for q in queries[:2]:
        search(q)  # warm-up: caches, thread pools, compiled filter expressions
    latencies = []
    started = time.perf_counter()
    for q in queries:
        t0 = time.perf_counter()
        search(q)
        latencies.append(time.perf_counter() - t0)
        if len(latencies) >= 10 and time.perf_counter() - started > budget_s:
            break
    ms = np.array(latencies) * 1000
    return {
        "queries": len(latencies),
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
    }


@contextlib.contextmanager
def milvus_server(uri: str | None, work: Path) -> Iterator[str | None]:
    """The store setting of a Milvus collection: ``uri``'s, or the embedded server's."""
    if uri is not None:
        yield uri
        return
    from support.milvus_standalone import MilvusStandaloneServer

    log("milvus_server: starting the embedded Milvus standalone on 127.0.0.1")
    server = MilvusStandaloneServer(work / "milvus", work / "milvus.log").start()
    try:
        yield server.store("bench_gallery")
    finally:
        server.stop()


def fill_and_time(
    spec: str,
    fingerprint: str,
    data: dict[str, Any],
    where: Any,
    batch: int,
    budget_s: float,
) -> tuple[dict[str, Any], list[list[str]]]:
    """Fill a new store, time its own searches; it is closed again before the service opens it."""
    from index.stores import create_store

    vectors, items, queries = data["vectors"], data["items"], data["queries"]
    store = create_store(spec, fingerprint, vectors.shape[1], "flat", use_gpu="never")
    try:
        started = time.perf_counter()
        for start in range(0, len(items), batch):
            result = store.add(vectors[start : start + batch], items[start : start + batch])
            assert not result.duplicates
            if (start // batch) % 20 == 0:
                log(f"  {start + batch:,} added in {time.perf_counter() - started:.1f} s")
        add_s = time.perf_counter() - started
        assert store.count() == len(items)
        direct = {}
        for k in data["top_k"]:
            direct[f"top{k}"] = time_calls(lambda q, k=k: store.search(q, k), queries, budget_s)
            direct[f"top{k}_filtered"] = time_calls(
                lambda q, k=k: store.search(q, k, where), queries, budget_s
            )
        tops = [[h.image_id for h in row] for row in store.search(queries[:20], 10)]
        stats = store.stats()
    finally:
        store.close()
    return {
        "store": stats["store"],
        "kind": stats["kind"],
        "add": {"vectors": len(items), "batch": batch, "vectors_per_s": round(len(items) / add_s)},
        "direct": direct,
    }, tops


def serve_and_drive(
    bundle: Path,
    spec: str,
    work: Path,
    data: dict[str, Any],
    seconds: float,
    consistency: str = "strong",
) -> list[dict[str, Any]]:
    """`python -m service` on the store, driven at every client count and top_k."""
    images = work / "images"
    images.mkdir(exist_ok=True)
    env = store_env(
        bundle,
        spec,
        images,
        TPS_LOG_LEVEL="warning",
        TPS_MILVUS_SEARCH_CONSISTENCY=consistency,
    )
    server = ServiceProcess(env, work / "service.log").start()
    levels = []
    try:
        server.wait_ready(timeout=300)
        for clients in data["clients"]:
            for k in data["top_k"]:
                warm = max(4, clients)
                asyncio.run(drive(server.url, data["captions"], clients, warm, seconds, top_k=k))
                level = asyncio.run(
                    drive(server.url, data["captions"], clients, 10**6, seconds, top_k=k)
                )
                if set(level["statuses"]) != {"200"}:
                    raise RuntimeError(f"non-200 replies {level['statuses']}:\n{server.logs()}")
                qps, p50 = level["qps"], level["p50_ms"]
                log(f"  {clients:>2} clients, top {k:>3}: {qps} q/s, p50 {p50} ms")
                levels.append(level)
    finally:
        server.stop()
    return levels


def ratios(report: dict[str, Any], stores: list[str]) -> dict[str, Any]:
    """Each store's served QPS and p50 over the FAISS folder's, cell by cell."""
    if "faiss" not in stores:
        return {}
    base = {(c["clients"], c["top_k"]): c for c in report["faiss"]["served"]}
    out: dict[str, Any] = {}
    served = [(name, report[name]["served"]) for name in stores if name != "faiss"]
    if "served_session" in report.get("milvus_server", {}):
        served.append(("milvus_server_session", report["milvus_server"]["served_session"]))
    for name, cells in served:
        out[f"{name}_over_faiss"] = [
            {
                "clients": c["clients"],
                "top_k": c["top_k"],
                "qps": round(c["qps"] / base[c["clients"], c["top_k"]]["qps"], 3),
                "p50_ms": round(c["p50_ms"] / base[c["clients"], c["top_k"]]["p50_ms"], 3),
            }
            for c in cells
        ]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also write OUT/store.json")
    parser.add_argument("--model", default="ViT-B-16", help="towers of the random bundle")
    parser.add_argument("--size", type=int, default=100_000, help="gallery size")
    parser.add_argument("--batch", type=int, default=1000, help="items per add")
    parser.add_argument("--stores", nargs="+", choices=STORES, default=list(STORES))
    parser.add_argument("--milvus", help="milvus://HOST:PORT/COLLECTION of your own server")
    parser.add_argument(
        "--session",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also serve the Milvus server with TPS_MILVUS_SEARCH_CONSISTENCY=session",
    )
    parser.add_argument("--clients", type=int, nargs="+", default=list(CLIENTS))
    parser.add_argument("--top-k", type=int, nargs="+", default=list(TOP_K))
    parser.add_argument("--seconds", type=float, default=8.0, help="per served cell")
    parser.add_argument("--quick", action="store_true", help="tiny model, 5k vectors, 1.5 s cells")
    parser.add_argument("--work", type=Path, help="folder for bundle and stores (default: tmp)")
    args = parser.parse_args(argv)
    model = "tiny" if args.quick else args.model
    size = 5000 if args.quick else args.size
    seconds = 1.5 if args.quick else args.seconds
    budget = 1.0 if args.quick else 5.0

    import faiss
    import pymilvus

    from bundle.format import read_meta
    from index.filters import GalleryFilter
    from index.search.cpu_features import detect
    from training.export import export_untrained

    where = GalleryFilter(
        camera_ids=("cam2", "cam7"), captured_after=T0 + 8 * DAY, captured_before=T0 + 22 * DAY
    )
    report: dict[str, Any] = {
        "machine": {
            "cpu": detect().model,
            "cpus": os.cpu_count(),
            "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
            "faiss": faiss.__version__,
            "pymilvus": pymilvus.__version__,
        },
    }
    tops: dict[str, list[list[str]]] = {}
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        work = Path(tmp)
        log(f"bundle: random-init {model}")
        bundle = export_untrained(work / "bundle", model, seed=0)
        meta = read_meta(bundle)
        dim = int(meta.embed_dim)
        log(f"data: {size:,} random unit vectors × {dim} with random metadata")
        items = random_items(size, seed=1)
        data = {
            "vectors": unit_vectors(size, dim, seed=0),
            "items": items,
            "queries": unit_vectors(200, dim, seed=2),
            "captions": captions(256),
            "clients": args.clients,
            "top_k": args.top_k,
        }
        report["config"] = {
            "model": model,
            "size": size,
            "dim": dim,
            "add_batch": args.batch,
            "index_kind": "flat",
            "clients": args.clients,
            "top_k": args.top_k,
            "seconds_per_cell": seconds,
            "filter": {
                "camera_ids": list(where.camera_ids or ()),
                "captured_after": where.captured_after,
                "captured_before": where.captured_before,
            },
            "filter_passing_fraction": round(sum(map(where.matches, items)) / size, 4),
            "quick": args.quick,
        }
        for name in args.stores:
            home = work / name
            home.mkdir()
            with contextlib.ExitStack() as stack:
                if name == "faiss":
                    spec = str(home / "gallery")
                elif name == "milvus_lite":
                    spec = str(home / "gallery.db")
                else:
                    spec = stack.enter_context(milvus_server(args.milvus, home))
                log(f"{name}: filling {spec}")
                report[name], tops[name] = fill_and_time(
                    spec, meta.fingerprint, data, where, args.batch, budget
                )
                log(f"{name}: serving")
                report[name]["served"] = serve_and_drive(bundle, spec, home, data, seconds)
                if name == "milvus_server" and args.session:
                    log(f"{name}: serving with session consistency")
                    report[name]["served_session"] = serve_and_drive(
                        bundle, spec, home, data, seconds, "session"
                    )
    report["ratios"] = ratios(report, args.stores)
    first = args.stores[0]
    report["same_top10_as_" + first] = {
        name: sum(a == b for a, b in zip(tops[first], tops[name], strict=True))
        for name in args.stores[1:]
    } | {"queries": len(tops[first])}
    report["notes"] = NOTES
    report["machine"]["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "store.json").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
