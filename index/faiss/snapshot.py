"""The in-memory committed generation that searches use, and the slot it is swapped in.

A snapshot is immutable: a search takes the current one and keeps using it while a write builds
and swaps in the next, so readers never wait for writers and never see half an update.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import faiss

from index.encoding import Encoding
from index.errors import IndexStoreError
from index.faiss.layout import info
from index.search.exact_search import ExactSearch

Labels = dict[int, tuple[str, str | None]]  # faiss id -> (image_id, person_id)


class GpuCopy:
    """A generation's GPU copy; ``index`` is None once freed. Read and cleared only under the
    lock of :class:`index.faiss.gpu_copies.GpuCopies`."""

    def __init__(self, index: faiss.Index) -> None:
        self.index: faiss.Index | None = index


@dataclass(frozen=True)
class Snapshot:
    """One committed generation, immutable: searches keep using it while a write swaps in the
    next one."""

    generation: int
    fingerprint: str
    dim: int
    kind: str
    next_id: int
    master: faiss.Index
    gpu: GpuCopy | None  # searched on this copy when set, else on the master
    labels: Labels
    exact: ExactSearch | None = None  # a flat master searched on the CPU: its engines
    encoding: Encoding = field(default_factory=Encoding)  # how its vectors were encoded

    @property
    def on_gpu(self) -> bool:
        return self.gpu is not None

    def info(self) -> dict[str, object]:
        """What ``index.json`` should say for this generation."""
        return info(
            fingerprint=self.fingerprint,
            dim=self.dim,
            kind=self.kind,
            count=int(self.master.ntotal),
            generation=self.generation,
        )


class SnapshotSlot:
    """Holds the current snapshot; a newer generation replaces it, an older one never does.

    ``retire`` is called with every snapshot that stops being current (replaced, cleared) or
    never becomes current (refused): it frees what they hold outside the CPU heap.
    """

    def __init__(self, folder: Path, retire: Callable[[Snapshot], None] = lambda s: None) -> None:
        self._folder = folder
        self._lock = threading.Lock()
        self._snap: Snapshot | None = None
        self._retire = retire

    def current(self) -> Snapshot:
        snap = self._snap
        if snap is None:
            raise IndexStoreError(f"index {self._folder} is closed")
        return snap

    def install(self, snap: Snapshot) -> bool:
        """Swap in ``snap`` unless a newer generation is already in place."""
        with self._lock:
            installed = self._snap is None or snap.generation > self._snap.generation
            old, self._snap = (self._snap, snap) if installed else (snap, self._snap)
        if old is not None:
            self._retire(old)
        return installed

    def clear(self) -> None:
        with self._lock:
            old, self._snap = self._snap, None
        if old is not None:
            self._retire(old)
