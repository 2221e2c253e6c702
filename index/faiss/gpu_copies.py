"""Where a generation is searched: on the CPU master itself or on a GPU copy of it.

The GPU copy is made when a snapshot is built, before a commit writes anything, so a GPU that
cannot take the new generation fails the write (as :class:`IndexStoreError`) and leaves the
index, and the snapshot being served, untouched.

One lock guards everything that touches the GPU resources: making a copy, searching one and
freeing one. FAISS's ``StandardGpuResources`` (its scratch allocator and streams) is not
thread-safe, and every copy of one open index shares it, so a copy made by a writer while a
reader searches, or a retired copy freed by the garbage collector in whatever thread dropped
the last reference, would race on it.

A copy is freed when its snapshot is retired (replaced by a newer generation, or never
installed), under the lock, at once: GPU memory then holds at most the generation being served
and the one being built. A search that took the old snapshot just before the swap and reaches
the lock after the free finds its copy gone and searches that snapshot's CPU master instead:
same generation, same results, slower once. That was chosen over reference counts (free when
the last search lets go), which would keep old generations on the GPU for as long as any slow
reader holds one, and need counting outside the lock, on every search, for a race that is rare.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol

import faiss
import numpy as np

from index.errors import IndexStoreError
from index.faiss import backend as faiss_backend
from index.faiss.snapshot import GpuCopy, Snapshot

log = logging.getLogger(__name__)


class Copier(Protocol):
    """Makes the search copy of a CPU master (FAISS: on the GPU; tests: a CPU stand-in)."""

    def copy(self, index: faiss.Index) -> faiss.Index: ...


class GpuCopies:
    """The ``use_gpu`` policy of one open index, its copier (made once) and the one lock.

    ``copier``: a stand-in for FAISS's GPU cloner (it is then taken as the GPU: the policy
    sees one device); the real one is made on the first copy and kept until :meth:`release`.
    """

    def __init__(
        self,
        use_gpu: str,
        fp16: bool = False,
        device: int = 0,
        shards: bool = False,
        copier: Copier | None = None,
    ) -> None:
        self._use_gpu = use_gpu
        self._make: Callable[[], Copier] = (
            (lambda: copier)
            if copier is not None
            else (lambda: faiss_backend.GpuCopier(fp16=fp16, device=device, shards=shards))
        )
        self._stand_in = copier is not None
        self._copier: Copier | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._warned_k = False

    def check(self, kind: str) -> bool:
        """Whether ``kind`` is searched on a GPU; raises if the policy cannot be met."""
        return faiss_backend.resolve_use_gpu(self._use_gpu, kind, available=self._stand_in or None)

    def copy(self, master: faiss.Index, kind: str) -> GpuCopy | None:
        """The search copy of ``master``, or None when it is searched on the CPU."""
        if not self.check(kind):
            return None
        with self._lock:
            if self._closed:
                raise IndexStoreError("the index is closed: no GPU copy is made")
            try:
                if self._copier is None:
                    self._copier = self._make()
                return GpuCopy(self._copier.copy(master))
            except (RuntimeError, MemoryError) as err:
                reason = _forget(err)
        raise IndexStoreError(
            f"cannot copy the index ({int(master.ntotal)} vectors) to the GPU: {reason}; nothing "
            "was changed: searches keep the last good generation (free GPU memory, use "
            "gpu_fp16, or use_gpu='never')"
        )

    def free(self, snap: Snapshot) -> None:
        """Free ``snap``'s GPU copy (a retired snapshot); searches holding it fall back to its
        CPU master."""
        if snap.gpu is None:
            return
        with self._lock:
            snap.gpu.index = None  # the last reference: FAISS frees the copy here, under the lock

    def search(self, snap: Snapshot, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) of the top ``k``; on a GPU ``k`` is capped at what FAISS supports."""
        if snap.gpu is None:
            return snap.master.search(queries, k)
        if k > faiss_backend.GPU_MAX_K:
            if not self._warned_k:
                log.warning(
                    "k=%d is above the GPU limit; returning the top %d",
                    k,
                    faiss_backend.GPU_MAX_K,
                )
                self._warned_k = True
            k = faiss_backend.GPU_MAX_K
        failed = None
        with self._lock:
            # No local name for the copy: a reference left in this frame after the lock is let
            # go would make a concurrent free happen here, outside the lock.
            if snap.gpu.index is not None:
                try:
                    return snap.gpu.index.search(queries, k)
                except (RuntimeError, MemoryError) as err:
                    failed = _forget(err)
        if failed is not None:
            raise IndexStoreError(f"GPU search failed: {failed}")
        # Retired while this search waited: its own generation, on the CPU (see the docstring).
        return snap.master.search(queries, k)

    def release(self) -> None:
        """Drop the copier and its GPU resources (after every copy was freed); a commit or
        refresh still under way then fails instead of making a copy nothing would free."""
        with self._lock:
            self._closed = True
            self._copier = None


def _forget(err: BaseException) -> str:
    """The reason ``err`` gives, with its traceback dropped: the frames of FAISS's wrappers hold
    the GPU index, which must not outlive its free under the lock by riding on an exception
    (freed later, in whatever thread drops it, it would race on the shared GPU resources)."""
    reason = faiss_backend.faiss_reason(err)
    err.__traceback__ = None
    return reason
