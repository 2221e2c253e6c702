"""Which engine answers an exact (flat) search on the CPU: by the machine, then by measurement.

Every engine here gives the exact float64 ranking; they differ only in speed, and which is
fastest depends on the CPU more than on anything else (``python -m bench.index``,
docs/performance.md "Exact search"):

- On an AMD EPYC with ``avx512_bf16``, the bf16 scan with an exact re-score beat every fp32
  engine from 50k vectors on (1.8-2.2× numpy at batch 1, 2.3-11.8× at batch 64).
- On an AMD EPYC without AVX-512 (no native bf16), the same engine ran 6-7× slower than FAISS
  or numpy at batch 64 (bf16 emulated), while numpy's ``sgemv`` won batch 1 at 1M.

So the choice is made in three steps, and ``EngineChoice.reason`` says which one decided:

1. ``forced``: a setting names one engine for every batch (``TPS_EXACT_ENGINE``).
2. ``detected``: what the CPU has decides who may run (without native bf16, the bf16 scan
   only for small batches, where it is bound by memory, not arithmetic), and small galleries
   (under ``CALIBRATE_MIN_ROWS``, where every engine answers in about a millisecond) get the
   rule below without a trial.
3. ``calibrated``: a trial of a few seconds times every candidate on the gallery's own vectors
   at batch 1, 8 and the micro-batcher's largest batch, once per machine, library versions and
   gallery size class (``index/search/engine_calibration.py``); the result is cached on disk.

FAISS keeps every filtered search (its ID selector) and the IVF/HNSW kinds; on a GPU, FAISS's
GPU copy answers (``index/faiss/gpu_copies.py``), and the report says so in the same form.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from index.search.cpu_features import CpuFeatures

CPU, GPU = "cpu", "gpu"
FAISS_GPU = "faiss-gpu-flat"
FAISS_FLAT = "faiss-flat"
NUMPY_FP32 = "numpy-fp32"
BF16_RESCORE = "torch-bf16-rescore"
CPU_ENGINES = (FAISS_FLAT, NUMPY_FP32, BF16_RESCORE)

FORCED, DETECTED, CALIBRATED, CACHED = "forced", "detected", "calibrated", "calibrated (cached)"
# Below this many vectors no trial runs: a scan is about a millisecond whatever the engine, and
# FAISS keeps torch unimported (1.7 s) for small indexes.
CALIBRATE_MIN_ROWS = 8192
# The rule used without a trial, from the measurements above: bf16 only where it is native.
DETECTED_BF16_MIN_ROWS = 50_000
DETECTED_NUMPY_BATCH1_MIN_ROWS = 50_000
# Without native bf16, the bf16 scan is timed only up to this batch size (see ``candidates``).
EMULATED_BF16_MAX_BATCH = 8


@dataclass(frozen=True)
class EnginePolicy:
    forced: str | None = None  # one engine for every CPU search
    bf16: bool = True  # False: never make the bf16 copy (memory tighter than time)
    calibrate: bool = True  # False: the detected rule alone, no timed trial
    batches: tuple[int, ...] = (1, 8, 64)  # the batch sizes a trial times (the largest: served)
    cache_dir: Path | None = None  # None: $XDG_CACHE_HOME/person-search (or ~/.cache/...)
    trial_seconds: float = 1.5  # per batch size, at most (every candidate timed in turns)

    def __post_init__(self) -> None:
        if self.forced is not None and self.forced not in CPU_ENGINES:
            raise ValueError(f"unknown engine {self.forced!r}: one of {', '.join(CPU_ENGINES)}")
        if not self.batches or min(self.batches) < 1:
            raise ValueError(f"bad batch sizes {self.batches}")

    def candidates(self, rows: int, batch: int, cpu: CpuFeatures) -> tuple[str, ...]:
        """The engines worth timing for ``batch`` queries against ``rows`` vectors on this CPU.

        The bf16 scan is a candidate at every batch size where bf16 is native. Elsewhere only up
        to ``EMULATED_BF16_MAX_BATCH``: one query is bound by the bytes read, which bf16 halves
        whatever does the arithmetic (on an AVX2 EPYC it still beat numpy at 1M × 1), while a
        batch is bound by the products, which emulated bf16 makes 5-7× slower than fp32."""
        fp32 = (FAISS_FLAT, NUMPY_FP32)
        if not self.bf16 or rows < CALIBRATE_MIN_ROWS:
            return fp32
        if cpu.native_bf16 or batch <= EMULATED_BF16_MAX_BATCH:
            return (*fp32, BF16_RESCORE)
        return fp32

    def detected(self, batch: int, rows: int, cpu: CpuFeatures) -> str:
        """The engine without a trial (small galleries, or calibration switched off)."""
        if batch < 1 or rows < 0:
            raise ValueError(f"bad batch {batch} or rows {rows}")
        if self.bf16 and cpu.native_bf16 and rows >= DETECTED_BF16_MIN_ROWS:
            return BF16_RESCORE
        if batch == 1 and rows >= DETECTED_NUMPY_BATCH1_MIN_ROWS:
            return NUMPY_FP32
        return FAISS_FLAT


@dataclass(frozen=True)
class EngineChoice:
    """The engine per batch size for one snapshot, and why."""

    engines: dict[int, str]  # batch size -> engine
    reason: str
    size_class: str
    cpu: dict[str, object] = field(default_factory=dict)
    trial_ms: dict[str, dict[int, float]] | None = None  # engine -> batch -> median ms per call
    trial_s: float | None = None  # how long the trial took (None: cached, or none ran)

    def engine_for(self, batch: int) -> str:
        """The engine of the timed batch size nearest to ``batch`` (by ratio)."""
        if batch < 1:
            raise ValueError(f"bad batch {batch}")
        nearest = min(self.engines, key=lambda b: (max(b, batch) / min(b, batch), -b))
        return self.engines[nearest]

    def uses(self, engine: str) -> bool:
        return engine in self.engines.values()

    def describe(self) -> dict[str, object]:
        return {
            "engine": {f"batch_{b}": e for b, e in sorted(self.engines.items())},
            "reason": self.reason,
            "size_class": self.size_class,
            "cpu": self.cpu,
            "trial_ms": None
            if self.trial_ms is None
            else {e: {f"batch_{b}": ms for b, ms in t.items()} for e, t in self.trial_ms.items()},
            "trial_s": self.trial_s,
        }


def pick(trial_ms: dict[str, dict[int, float]]) -> dict[int, str]:
    """The fastest engine per batch size from a trial (ties: the earlier candidate)."""
    batches = sorted({b for timings in trial_ms.values() for b in timings})
    return {b: min(trial_ms, key=lambda e: trial_ms[e].get(b, float("inf"))) for b in batches}


DEFAULT_POLICY = EnginePolicy()
