"""A bounded soak of the HTTP service: mixed search and upload traffic at the highest rate the
server sustains, recording latency percentiles, errors and the server's RSS over time.

    python -m bench.soak [--duration 300] [--clients 8] [--write-fraction 0.1] [--out DIR]
                         [--bundle B --index I] [--sample-s 5]

Starts `python -m service` on 127.0.0.1 (the only address it ever sends to) over a copy of the
index (the soak writes to it), then runs closed-loop clients: each sends its next request as soon
as the last one is answered, so the rate is whatever the server can sustain. A request is a
search (random description, top_k 10), or with probability --write-fraction an upload of a fresh
image; each client deletes its own oldest upload once it holds more than --keep, so the gallery
stays the same size and RSS drift means memory that is not given back. Without --bundle/--index
it serves the synthetic test split with an untrained tiny bundle. Writes DIR/soak.json and
DIR/soak.png; prints the JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from support.server import API_KEY, ServiceProcess, service_env

EXPECTED = {"search": 200, "upload": 201, "delete": 204}
KEY = {"X-API-Key": API_KEY}


@dataclass(frozen=True)
class Sample:
    t: float  # seconds since the start
    kind: str
    status: int  # 0: no answer (transport error)
    ms: float


def percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 2) if values else None


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def fresh_image(seed: int) -> bytes:
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (128, 64, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(out, "JPEG", quality=90)
    return out.getvalue()


def queries() -> list[str]:
    colours = ["red", "blue", "black", "white", "green", "yellow", "grey", "brown"]
    things = ["coat", "jacket", "shirt", "dress", "backpack", "skirt", "hoodie", "trousers"]
    return [
        f"a person in a {c} {t} with a {d} bag" for c in colours for t in things for d in colours
    ]


class Soak:
    def __init__(self, url: str, args: argparse.Namespace) -> None:
        self.url = url
        self.args = args
        self.samples: list[Sample] = []
        self.seed = 1_000_000
        self.texts = queries()
        self.started = 0.0

    async def run(self, pid: int) -> list[tuple[float, float]]:
        limits = httpx.Limits(max_connections=self.args.clients)
        async with httpx.AsyncClient(base_url=self.url, timeout=60, limits=limits) as http:
            self.started = time.monotonic()
            deadline = self.started + self.args.duration
            rss: list[tuple[float, float]] = []
            sampler = asyncio.create_task(self._sample_rss(pid, rss, deadline))
            await asyncio.gather(
                *(self._client(http, n, deadline) for n in range(self.args.clients))
            )
            sampler.cancel()
            rss.append((time.monotonic() - self.started, rss_mib(pid)))
        return rss

    async def _sample_rss(self, pid: int, out: list, deadline: float) -> None:
        while time.monotonic() < deadline:
            out.append((time.monotonic() - self.started, rss_mib(pid)))
            await asyncio.sleep(self.args.sample_s)

    async def _client(self, http: httpx.AsyncClient, n: int, deadline: float) -> None:
        rng = random.Random(n)
        mine: deque[str] = deque()
        for _ in range(self.args.max_requests // self.args.clients):
            if time.monotonic() >= deadline:
                return
            if rng.random() < self.args.write_fraction:
                await self._upload(http, mine)
                if len(mine) > self.args.keep:
                    await self._delete(http, mine.popleft())
            else:
                body = {"query": rng.choice(self.texts), "top_k": 10}
                await self._timed(http, "search", "POST", "/v1/search", json=body)

    async def _upload(self, http: httpx.AsyncClient, mine: deque[str]) -> None:
        self.seed += 1
        files = [("files", (f"{self.seed}.jpg", fresh_image(self.seed), "image/jpeg"))]
        reply = await self._timed(http, "upload", "POST", "/v1/gallery", files=files, headers=KEY)
        if reply is not None and reply.status_code == 201:
            mine.extend(item["image_id"] for item in reply.json()["added"])

    async def _delete(self, http: httpx.AsyncClient, image_id: str) -> None:
        await self._timed(http, "delete", "DELETE", f"/v1/gallery/{image_id}", headers=KEY)

    async def _timed(self, http: httpx.AsyncClient, kind: str, method: str, path: str, **kw):
        t0 = time.monotonic()
        try:
            reply = await http.request(method, path, **kw)
        except httpx.TransportError:
            reply = None
        status = reply.status_code if reply is not None else 0
        self.samples.append(Sample(t0 - self.started, kind, status, (time.monotonic() - t0) * 1e3))
        return reply


def summarise(samples: list[Sample], rss: list[tuple[float, float]], args) -> dict:
    errors = [s for s in samples if s.status != EXPECTED[s.kind]]
    ms = [s.ms for s in samples]
    by_kind = {}
    for kind in EXPECTED:
        chosen = [s for s in samples if s.kind == kind]
        by_kind[kind] = {
            "requests": len(chosen),
            "errors": sum(s.status != EXPECTED[kind] for s in chosen),
            "p50_ms": percentile([s.ms for s in chosen], 50),
            "p95_ms": percentile([s.ms for s in chosen], 95),
            "p99_ms": percentile([s.ms for s in chosen], 99),
        }
    warm = min(10.0, 0.1 * args.duration)  # start-up growth (caches, pools) is not drift
    steady = [(t, m) for t, m in rss if t >= warm] or rss
    times, sizes = np.array(steady).T
    slope = float(np.polyfit(times, sizes, 1)[0]) * 60 if len(steady) >= 3 else None
    return {
        "duration_s": args.duration,
        "clients": args.clients,
        "write_fraction": args.write_fraction,
        "requests": len(samples),
        "requests_per_s": round(len(samples) / args.duration, 1),
        "errors": len(errors),
        "error_statuses": sorted({s.status for s in errors}),
        "p50_ms": percentile(ms, 50),
        "p95_ms": percentile(ms, 95),
        "p99_ms": percentile(ms, 99),
        "by_kind": by_kind,
        "rss_mib": {
            "after_warm_up": round(steady[0][1], 1),
            "end": round(rss[-1][1], 1),
            "max": round(max(m for _, m in rss), 1),
            "drift": round(rss[-1][1] - steady[0][1], 1),
            "slope_per_min": None if slope is None else round(slope, 2),
        },
    }


def timeline(
    samples: list[Sample], rss: list[tuple[float, float]], step: float, duration: float
) -> list[dict]:
    rows = []
    for k in range(max(1, round(duration / step))):
        lo, hi = k * step, (k + 1) * step
        window = [s for s in samples if lo <= s.t < hi]
        sizes = [m for t, m in rss if t <= hi + step / 2]  # the latest sample by then
        rows.append(
            {
                "t": round(hi, 1),
                "requests_per_s": round(len(window) / step, 1),
                "p50_ms": percentile([s.ms for s in window], 50),
                "p99_ms": percentile([s.ms for s in window], 99),
                "errors": sum(s.status != EXPECTED[s.kind] for s in window),
                "rss_mib": round(sizes[-1], 1) if sizes else None,
            }
        )
    return rows


def plot(rows: list[dict], summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r["t"] for r in rows]
    fig, (lat, rate, mem) = plt.subplots(3, 1, figsize=(9, 9), sharex=True)
    for key, label in (("p50_ms", "p50"), ("p99_ms", "p99")):
        lat.plot(t, [r[key] if r[key] is not None else np.nan for r in rows], label=label)
    lat.set_ylabel("latency (ms)")
    lat.legend()
    lat.set_title(
        f"soak: {summary['requests']:,} requests in {summary['duration_s']:g} s, "
        f"{summary['errors']} errors, p99 {summary['p99_ms']} ms"
    )
    rate.plot(t, [r["requests_per_s"] for r in rows], label="requests/s")
    rate.bar(t, [r["errors"] for r in rows], color="red", label="errors", width=1.0)
    rate.set_ylabel("per second")
    rate.legend()
    mem.plot(t, [r["rss_mib"] if r["rss_mib"] is not None else np.nan for r in rows])
    mem.set_ylabel("server RSS (MiB)")
    mem.set_xlabel("seconds")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def gallery(work: Path, args: argparse.Namespace) -> tuple[Path, Path]:
    if args.bundle is not None:
        index_dir = work / "index"
        shutil.copytree(args.index, index_dir)  # the soak writes: never to the caller's index
        return args.bundle, index_dir
    from bench.service import build_gallery

    bundle_dir, index_dir, _ = build_gallery(work, args.gallery_size)
    return bundle_dir, index_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of load")
    parser.add_argument("--clients", type=int, default=8, help="closed-loop clients")
    parser.add_argument("--write-fraction", type=float, default=0.1)
    parser.add_argument("--keep", type=int, default=25, help="uploads each client keeps")
    parser.add_argument("--max-requests", type=int, default=2_000_000, help="a hard bound")
    parser.add_argument("--sample-s", type=float, default=5.0, help="RSS sampling interval")
    parser.add_argument("--gallery-size", type=int, default=1000)
    parser.add_argument("--bundle", type=Path)
    parser.add_argument("--index", type=Path)
    parser.add_argument("--out", type=Path, default=Path("out/soak"))
    args = parser.parse_args(argv)
    if (args.bundle is None) != (args.index is None):
        parser.error("--bundle and --index go together")

    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        work = Path(tmp)
        bundle_dir, index_dir = gallery(work, args)
        env = service_env(bundle_dir, index_dir, TPS_LOG_LEVEL="warning", TPS_INDEX_REFRESH_S="0")
        server = ServiceProcess(env, work / "service.log").start().wait_ready()
        try:
            assert server.proc is not None
            soak = Soak(server.url, args)
            rss = asyncio.run(soak.run(server.proc.pid))
            alive = server.proc.poll() is None
        finally:
            server.stop()
            log_tail = server.logs()
    summary = summarise(soak.samples, rss, args)
    result = {
        "bench": "soak",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "gallery": "given" if args.bundle else f"synthetic + padding to {args.gallery_size}",
        "server_alive_at_end": alive,
        **summary,
        "timeline": timeline(soak.samples, rss, args.sample_s, args.duration),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result["timeline"], summary, args.out / "soak.png")
    print(json.dumps({k: v for k, v in result.items() if k != "timeline"}, indent=2))
    if not alive:
        print(f"the server died during the soak:\n{log_tail}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
