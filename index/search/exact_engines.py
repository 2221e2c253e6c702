"""Exact fp32 inner-product engines over a flat master's own vectors (no copy).

Three ways to score every vector, all exact in fp32, all answering storage positions:

- ``faiss-flat``: FAISS's own flat search, with ``faiss_tuning``'s settings.
- ``numpy-fp32``: numpy's matrix product (OpenBLAS) over the zero-copy view. At batch 1 that is
  ``sgemv`` on both cores; at 1M × 512 it reached 0.5-0.7 of the bandwidth bound where FAISS's
  batch-1 path (a one-column GEMM per thread) reached about 0.2.
- ``torch-fp32``: torch's matrix product (MKL) over the same memory; measured, never served:
  MKL's fp32 paths on this AMD CPU lost to OpenBLAS at batch 1 and 64.

Each scores the gallery a block of rows at a time (``topk.RunningTopK``), so a batch of b queries
holds at most ``SCORE_BYTES`` of scores, whatever the gallery size.
"""

from __future__ import annotations

from typing import Protocol

import faiss
import numpy as np

from index.search.flat_view import FlatView

SCORE_BYTES = 64 << 20  # scores held at once by one search (batch × block × 4 bytes)
MIN_BLOCK_ROWS = 4096


class Engine(Protocol):
    """Top-k scorer of one snapshot's vectors: (scores, storage positions), best first."""

    name: str

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...


def block_rows(batch: int, itemsize: int, rows: int) -> int:
    """Gallery rows per block so that ``batch`` × block scores fit in ``SCORE_BYTES``."""
    return max(MIN_BLOCK_ROWS, min(rows, SCORE_BYTES // (itemsize * max(1, batch))))


class FaissFlat:
    """FAISS's flat search over the master's inner index (positions, not labels)."""

    name = "faiss-flat"

    def __init__(self, view: FlatView, master: faiss.Index) -> None:
        self._flat = faiss.downcast_index(master.index)
        self._view = view

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores, positions = self._flat.search(np.ascontiguousarray(queries, np.float32), k)
        return scores, positions


class NumpyFp32:
    """numpy matrix product over the view, blocked, with torch's top k."""

    name = "numpy-fp32"

    def __init__(self, view: FlatView) -> None:
        self._view = view

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        import torch  # imported on first search only: see FlatView.tensor

        from index.search.topk import RunningTopK

        vectors = self._view.vectors
        q = np.ascontiguousarray(queries, np.float32)
        top = RunningTopK(k)
        step = block_rows(len(q), 4, len(vectors))
        for start in range(0, len(vectors), step):
            top.add(torch.from_numpy(q @ vectors[start : start + step].T), start)
        scores, positions = top.result()
        return scores.numpy(), positions.numpy()


class TorchFp32:
    """torch matrix product over the same memory, blocked."""

    name = "torch-fp32"

    def __init__(self, view: FlatView) -> None:
        self._view = view

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        import torch

        from index.search.topk import RunningTopK

        vectors = self._view.tensor
        q = torch.from_numpy(np.array(queries, np.float32))  # a copy: the caller's may be read-only
        top = RunningTopK(k)
        step = block_rows(len(q), 4, len(vectors))
        with torch.inference_mode():
            for start in range(0, len(vectors), step):
                top.add(torch.mm(q, vectors[start : start + step].T), start)
        scores, positions = top.result()
        return scores.numpy(), positions.numpy()
