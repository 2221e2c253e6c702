"""FAISS's process-wide CPU search settings, and why its defaults lose here.

FAISS 1.15 scores a flat index one of three ways (``faiss/utils/distances.cpp``):

- fewer queries than OpenMP threads (batch 1 on 2 cores): each thread runs BLAS ``sgemm`` with
  ONE query column over ``distance_compute_blas_database_bs``-row blocks of the database. A
  one-column GEMM packs its operands for nothing and the bundled OpenBLAS (0.3.15, held to its
  Haswell kernels on this machine by ``OPENBLAS_CORETYPE``) runs it far below the memory
  bandwidth: at 1M × 512 it reached about 0.2 of the bandwidth bound, numpy's ``sgemv`` over the
  same vectors 0.5-0.7 (two runs). No setting changes that path short of one OpenMP thread
  (then one core scans alone), so batch 1 on a flat index is left to ``exact_engines.py``.
- ``nq·d < distance_compute_blas_threshold`` (128,000 by default, so every batch below 250 at
  d=512): each query scans the whole database on its own, so a batch of 64 reads the gallery
  64 times. This is what made batch 64 lose 6× to numpy. Fixed here: BLAS once a batch holds
  1,024 numbers (two queries at d=512).
- otherwise BLAS ``sgemm`` over tiles of ``distance_compute_blas_query_bs`` ×
  ``distance_compute_blas_database_bs`` (4,096 × 1,024): with a small batch the 1,024-row tiles
  make many small GEMMs and as many passes of the result heaps. At 200k × 512, batch 64 (best of
  7, shared machine): as shipped 1,477 ms, BLAS with 1,024-row tiles 820 ms, BLAS with
  16,384-row tiles 172 ms. The query tile is lowered so the score tile FAISS allocates stays at
  32 MB (512 × 16,384 floats) for any batch.

Together, batch 64 ran 5.2-6.2× faster than FAISS as shipped at 100k and 1M (two
``bench.index`` runs); batch 1 is unchanged. The store serves FAISS's flat search on the CPU
for small galleries only (see ``engine_policy``).

These are globals of the FAISS library, so they are applied once per process (by
``faiss_backend`` on import); ``settings`` sets others for a block (the benchmark uses it to
measure FAISS as shipped). A selector (filtered search) always takes FAISS's per-query path,
whatever the settings.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import faiss


@dataclass(frozen=True)
class FaissSettings:
    blas_threshold: int
    blas_query_bs: int
    blas_database_bs: int


# BLAS once a batch holds 1,024 numbers (two queries at d=512; one query keeps FAISS's SIMD scan
# when it runs on one thread), 512 × 16,384-float score tiles.
TUNED = FaissSettings(blas_threshold=1024, blas_query_bs=512, blas_database_bs=16_384)
# What faiss-cpu 1.15.1 ships with.
SHIPPED = FaissSettings(blas_threshold=128_000, blas_query_bs=4096, blas_database_bs=1024)

_lock = threading.Lock()


def current() -> FaissSettings:
    cvar = faiss.cvar
    return FaissSettings(
        int(cvar.distance_compute_blas_threshold),
        int(cvar.distance_compute_blas_query_bs),
        int(cvar.distance_compute_blas_database_bs),
    )


def apply(values: FaissSettings = TUNED) -> None:
    """Set FAISS's flat-search globals for the whole process."""
    with _lock:
        faiss.cvar.distance_compute_blas_threshold = values.blas_threshold
        faiss.cvar.distance_compute_blas_query_bs = values.blas_query_bs
        faiss.cvar.distance_compute_blas_database_bs = values.blas_database_bs


@contextmanager
def settings(values: FaissSettings) -> Iterator[None]:
    """``values`` for the block, then whatever was set before (not thread-safe against searches
    running meanwhile: for benchmarks and tests)."""
    before = current()
    apply(values)
    try:
        yield
    finally:
        apply(before)
