"""Where a generation is searched: on the CPU master itself or on a GPU copy of it.

The GPU copy is made when a snapshot is built, before a commit writes anything, so a GPU that
cannot take the new generation fails the write and leaves the index untouched. FAISS GPU
resources are not safe for concurrent searches, so searches on a copy are serialised.
"""

from __future__ import annotations

import logging
import threading

import faiss
import numpy as np

from index import faiss_backend
from index.snapshot import Snapshot

log = logging.getLogger(__name__)


class GpuCopies:
    """The ``use_gpu`` policy of one open index, its GPU resources and their search lock."""

    def __init__(self, use_gpu: str, fp16: bool) -> None:
        self._use_gpu = use_gpu
        self._fp16 = fp16
        self._copier: faiss_backend.GpuCopier | None = None
        self._lock = threading.Lock()
        self._warned_k = False

    def check(self, kind: str) -> bool:
        """Whether ``kind`` is searched on a GPU; raises if the policy cannot be met."""
        return faiss_backend.resolve_use_gpu(self._use_gpu, kind)

    def searcher(self, master: faiss.Index, kind: str) -> tuple[faiss.Index, bool]:
        """The index searches run on, and whether it is a GPU copy."""
        if not self.check(kind):
            return master, False
        if self._copier is None:
            self._copier = faiss_backend.GpuCopier(fp16=self._fp16)
        return self._copier.copy(master), True

    def search(self, snap: Snapshot, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) of the top ``k``; on a GPU ``k`` is capped at what FAISS supports."""
        if not snap.on_gpu:
            return snap.searcher.search(queries, k)
        if k > faiss_backend.GPU_MAX_K:
            if not self._warned_k:
                log.warning(
                    "k=%d is above the GPU limit; returning the top %d",
                    k,
                    faiss_backend.GPU_MAX_K,
                )
                self._warned_k = True
            k = faiss_backend.GPU_MAX_K
        with self._lock:
            return snap.searcher.search(queries, k)

    def release(self) -> None:
        self._copier = None
