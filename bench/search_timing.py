"""Latency of several search engines, measured in turns so that they share the machine's noise.

On a shared 2-core machine another process can take a core for seconds; timing engine A for
15 s and then engine B would compare two different machines. Here every round times each engine
once, so a busy spell slows every engine alike and the ratios between them hold. A pause before
each engine lets the previous library's worker threads go idle: OpenBLAS's (numpy's) keep
spinning about 0.1 s after a call, and an engine timed in that window loses a core to them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np

Search = Callable[[np.ndarray], object]
PAUSE_S = 0.25
MIN_SAMPLE_S = 0.02  # fast calls are repeated within one sample so timer noise stays small


def _repeats(search: Search, queries: np.ndarray) -> int:
    started = time.perf_counter()
    search(queries)  # also the warm-up: first-touch allocations, thread pools
    seconds = time.perf_counter() - started
    return max(1, min(50, math.ceil(MIN_SAMPLE_S / max(seconds, 1e-6))))


def time_in_turns(
    engines: dict[str, Search],
    queries: np.ndarray,
    batch: int,
    budget_s: float,
    min_rounds: int = 3,
    max_rounds: int = 30,
    pause_s: float = PAUSE_S,
) -> dict[str, dict[str, float]]:
    """Per engine: p50/p99/best latency per call (ms) and QPS (batch / p50), from rounds that
    each time every engine once on the next ``batch`` queries."""
    repeats = {name: _repeats(search, queries[:batch]) for name, search in engines.items()}
    samples: dict[str, list[float]] = {name: [] for name in engines}
    started = time.perf_counter()
    offsets = range(0, len(queries) - batch + 1, batch)
    for round_no in range(max_rounds):
        at = offsets[round_no % len(offsets)]
        q = queries[at : at + batch]
        for name, search in engines.items():
            time.sleep(pause_s)
            t0 = time.perf_counter()
            for _ in range(repeats[name]):
                search(q)
            samples[name].append((time.perf_counter() - t0) / repeats[name])
        if round_no + 1 >= min_rounds and time.perf_counter() - started > budget_s:
            break
    out = {}
    for name, seconds in samples.items():
        ms = np.array(seconds) * 1000
        p50 = float(np.percentile(ms, 50))
        out[name] = {
            "rounds": len(ms),
            "calls_per_sample": repeats[name],
            "p50_ms": round(p50, 3),
            "p99_ms": round(float(np.percentile(ms, 99)), 3),
            "best_ms": round(float(ms.min()), 3),
            "qps": round(batch / (p50 / 1000), 1),
        }
    return out
