"""Which engine answers an exact (flat) search: by device, batch size and gallery size.

The thresholds are measurements (``python -m bench.index``, README "Exact search") on the 2-core
AMD EPYC (avx512_bf16) these indexes are built on, shared with other work while measured:

- On a GPU, FAISS's GPU copy: the flat GPU index is what the device is for (not measured here:
  no GPU was lent).
- On the CPU from ``bf16_min_rows`` vectors on, the bf16 scan with an exact re-score, at every
  batch size: at 100k and 1M × 512 it beat every fp32 engine at batch 1 (half the bytes to
  read: 1.8-2.2× numpy) and at batch 64 (bf16 multiply-adds: 2.3× numpy at 100k, 11.8× at 1M).
  At 50k it still won at batch 1, 8 and 64 in two sweeps; at 20k it won at batch 8, split
  batch 1 and lost at 64.
- Below that, FAISS's own flat search with ``faiss_tuning``'s settings: at 5k and 20k it won
  4 of 6 comparisons (batch 1, 8, 64) with numpy's product over the same vectors and lost the
  other two by under 2 ms, and won both batches in every ``--quick`` run (20k); numpy's
  OpenBLAS threads wait by spinning, which costs most on a busy machine. It needs no second
  copy and keeps torch unimported (1.7 s) for small indexes.
- With bf16 switched off, one query against ``numpy_batch1_min_rows`` vectors or more goes to
  numpy's ``sgemv`` (FAISS's batch-1 path reached 0.2 of the bandwidth bound at 1M, numpy's 0.5
  to 0.7), batches to FAISS (tuned: 3.3× numpy at 1M × 64).

FAISS keeps every filtered search (its ID selector) and the IVF/HNSW kinds, which this policy
does not cover.
"""

from __future__ import annotations

from dataclasses import dataclass

CPU, GPU = "cpu", "gpu"
FAISS_GPU = "faiss-gpu-flat"
FAISS_FLAT = "faiss-flat"
NUMPY_FP32 = "numpy-fp32"
BF16_RESCORE = "torch-bf16-rescore"


@dataclass(frozen=True)
class EnginePolicy:
    bf16_min_rows: int = 50_000
    bf16: bool = True  # False: never make the bf16 copy (memory tighter than time)
    # Without bf16, one query from here on goes to numpy's sgemv, not FAISS's batch-1 path.
    numpy_batch1_min_rows: int = 50_000

    def wants_bf16(self, rows: int) -> bool:
        """Whether a snapshot of ``rows`` vectors needs the bf16 copy for some batch."""
        return self.bf16 and rows >= self.bf16_min_rows

    def choose(self, device: str, batch: int, rows: int) -> str:
        """The engine for ``batch`` queries against ``rows`` vectors on ``device``."""
        if device not in (CPU, GPU):
            raise ValueError(f"unknown device {device!r}")
        if batch < 1 or rows < 0:
            raise ValueError(f"bad batch {batch} or rows {rows}")
        if device == GPU:
            return FAISS_GPU
        if self.wants_bf16(rows):
            return BF16_RESCORE
        if batch == 1 and rows >= self.numpy_batch1_min_rows:
            return NUMPY_FP32
        return FAISS_FLAT


DEFAULT_POLICY = EnginePolicy()
