"""Closed-loop HTTP load against a running service, and the server's own view of it.

``drive`` runs N clients that each send one POST /v1/search after another, and reads the
server's Prometheus histograms before and after, so the report has both the client's latencies
and the server's (free of the client's own delays on a shared machine).
"""

from __future__ import annotations

import asyncio
import time

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


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


async def drive(
    url: str,
    queries: list[str],
    clients: int,
    requests: int,
    max_s: float,
    headers: dict[str, str] | None = None,
    top_k: int = 10,
) -> dict:
    """``headers`` go with every request (an API key, for a server without open reads)."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    next_request = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits, headers=headers) as http:
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
                reply = await http.post("/v1/search", json={"query": query, "top_k": top_k})
                latencies.append((time.perf_counter() - t0) * 1000)
                statuses[reply.status_code] = statuses.get(reply.status_code, 0) + 1

        await asyncio.gather(*(client() for _ in range(clients)))
        elapsed = time.perf_counter() - started
        scrape = (await http.get("/metrics")).text
        after, buckets_after = batch_stats(scrape), server_buckets(scrape)
    calls = after[1] - before[1]
    return {
        "clients": clients,
        "top_k": top_k,
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
