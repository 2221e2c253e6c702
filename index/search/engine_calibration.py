"""The timed trial behind a ``calibrated`` engine choice, and its cache on disk.

A trial times each candidate engine (``EnginePolicy.candidates``, per batch size) on the
snapshot's own vectors at each of the policy's batch sizes, and keeps the median time per call:
seconds at 1M vectors, once. Its result holds for every gallery of the same size class on the
same kind of machine with the same libraries, so it is cached under a key of those (CPU model
and flags, core count, numpy/FAISS/torch versions, size class, dimension, candidates per batch
size) in ``exact-engines.json`` in the cache folder; a gallery that grows into the next class
is timed again. A cache that cannot be read or written only costs a new trial.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import statistics
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import numpy as np

from index.search.cpu_features import CpuFeatures
from index.search.engine_policy import (
    CACHED,
    CALIBRATE_MIN_ROWS,
    CALIBRATED,
    DETECTED,
    FORCED,
    EngineChoice,
    EnginePolicy,
    pick,
)
from index.search.exact_engines import Engine

log = logging.getLogger("index.engines")

CACHE_FILE = "exact-engines.json"
K = 10  # the top k a trial asks for (the API's default)
MAX_CALLS = 30  # timed calls per engine and batch, at most
PAUSE_S = 0.15
# Size classes, by vector count: a trial measured inside one holds across it.
CLASS_EDGES = (0, CALIBRATE_MIN_ROWS, 50_000, 200_000, 1_000_000, 5_000_000, 20_000_000)

Measure = Callable[[Mapping[str, Engine], np.ndarray, Mapping[int, tuple[str, ...]], float], dict]

_memory: dict[str, dict] = {}
_memory_lock = threading.Lock()


def size_class(rows: int) -> str:
    lower = max(edge for edge in CLASS_EDGES if edge <= rows)
    higher = [edge for edge in CLASS_EDGES if edge > rows]
    return f"{_short(lower)}-{_short(higher[0])}" if higher else f"{_short(lower)}+"


def _short(n: int) -> str:
    return f"{n // 1_000_000}M" if n >= 1_000_000 else f"{n // 1000}k" if n >= 1000 else str(n)


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "person-search"


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "none"


def cache_key(
    policy: EnginePolicy, cpu: CpuFeatures, rows: int, dim: int, plan: Mapping[int, tuple]
) -> str:
    libraries = {n: _version(n) for n in ("numpy", "faiss-cpu", "faiss-gpu", "torch")}
    parts = {
        "cpu": cpu.key(),
        "libraries": libraries,
        "class": size_class(rows),
        "dim": dim,
        "plan": {str(b): list(names) for b, names in sorted(plan.items())},
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def measure(
    engines: Mapping[str, Engine],
    queries: np.ndarray,
    plan: Mapping[int, tuple[str, ...]],
    budget_s: float,
) -> dict[str, dict[int, float]]:
    """Median ms per call of the planned engines at each batch size (``plan``: batch -> engine
    names). Each engine runs its calls in a row, as it would serve them, after a pause that lets
    the previous library's worker threads go idle (OpenBLAS's spin about 0.1 s after a call and
    would take a core from the next engine); about ``budget_s`` per batch size, shared by its
    engines: up to ``MAX_CALLS`` timed calls after the warm-up (at least one), their median."""
    best: dict[str, dict[int, float]] = {name: {} for name in engines}
    for batch, names in plan.items():
        q = queries[:batch]
        share = budget_s / max(1, len(names))
        for name in names:
            engine = engines[name]
            time.sleep(PAUSE_S)
            started = time.perf_counter()
            engine.search(q, K)  # warm-up: first-call allocations, thread pools
            calls = []
            for _ in range(MAX_CALLS):
                t0 = time.perf_counter()
                engine.search(q, K)
                calls.append((time.perf_counter() - t0) * 1000)
                if time.perf_counter() - started > share:  # slow calls: warm-up and one
                    break
            # The median, as a served engine's p50: a lucky call among fast ones decides nothing.
            best[name][batch] = round(statistics.median(calls), 3)
    return {name: t for name, t in best.items() if t}


def choose(
    policy: EnginePolicy,
    cpu: CpuFeatures,
    vectors: np.ndarray,
    make_engines: Callable[[tuple[str, ...]], Mapping[str, Engine]],
    trial: Measure = measure,
) -> EngineChoice:
    """The engine per batch size for a snapshot of ``vectors`` (rows × dim, the engines' own).

    ``make_engines(names)`` builds the candidates a trial needs (the bf16 copy only then).
    """
    rows, dim = vectors.shape
    batches = tuple(sorted(set(policy.batches)))
    klass, described = size_class(rows), cpu.describe()
    if policy.forced is not None:
        return EngineChoice(dict.fromkeys(batches, policy.forced), FORCED, klass, described)
    if not policy.calibrate or rows < CALIBRATE_MIN_ROWS:
        engines = {b: policy.detected(b, rows, cpu) for b in batches}
        return EngineChoice(engines, DETECTED, klass, described)
    plan = {b: policy.candidates(rows, b, cpu) for b in batches}
    key = cache_key(policy, cpu, rows, dim, plan)
    found = _recall(policy, key)
    if found is not None:
        engines = {int(b): e for b, e in found["engines"].items()}
        timings = {e: {int(b): ms for b, ms in t.items()} for e, t in found["trial_ms"].items()}
        return EngineChoice(engines, CACHED, klass, described, timings)
    started = time.perf_counter()
    # The gallery's own vectors as queries: the scores a real query meets, no extra memory.
    queries = np.ascontiguousarray(vectors[np.linspace(0, rows - 1, max(batches), dtype=int)])
    names = tuple(dict.fromkeys(name for names in plan.values() for name in names))
    timings = trial(make_engines(names), queries, plan, policy.trial_seconds)
    seconds = round(time.perf_counter() - started, 2)
    engines = pick(timings)
    choice = EngineChoice(engines, CALIBRATED, klass, described, timings, seconds)
    _remember(policy, key, choice)
    log.info(
        "exact search calibrated for %s × %d vectors on %s (native bf16: %s) in %.1f s: %s",
        klass,
        dim,
        cpu.model,
        "yes" if cpu.native_bf16 else "no",
        seconds,
        "; ".join(
            f"batch {b} → {e} ({timings[e][b]} ms"
            + "".join(f", {o} {timings[o][b]}" for o in timings if o != e and b in timings[o])
            + ")"
            for b, e in sorted(engines.items())
        ),
    )
    return choice


def _cache_path(policy: EnginePolicy) -> Path:
    return (policy.cache_dir or default_cache_dir()) / CACHE_FILE


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _recall(policy: EnginePolicy, key: str) -> dict | None:
    with _memory_lock:
        if key in _memory:
            return _memory[key]
    entry = _read(_cache_path(policy)).get(key)
    if not isinstance(entry, dict) or not {"engines", "trial_ms"} <= entry.keys():
        return None
    with _memory_lock:
        _memory[key] = entry
    return entry


def _remember(policy: EnginePolicy, key: str, choice: EngineChoice) -> None:
    entry = {
        "engines": {str(b): e for b, e in choice.engines.items()},
        "trial_ms": {e: {str(b): ms for b, ms in t.items()} for e, t in choice.trial_ms.items()},
        "size_class": choice.size_class,
        "cpu": choice.cpu,
        "measured_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    with _memory_lock:
        _memory[key] = entry
    path = _cache_path(policy)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {**_read(path), key: entry}
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, path)  # atomic: a reader sees the old cache or the new one
    except OSError as exc:
        log.warning("could not save the engine calibration to %s: %s", path, exc)


def forget_in_memory() -> None:
    """Drop the process's copy of the cache (tests; a new trial reads the file again)."""
    with _memory_lock:
        _memory.clear()
