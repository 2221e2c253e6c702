"""The in-memory committed generation that searches use, and the slot it is swapped in.

A snapshot is immutable: a search takes the current one and keeps using it while a write builds
and swaps in the next, so readers never wait for writers and never see half an update.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import faiss

from index.errors import IndexStoreError
from index.exact_search import ExactSearch
from index.layout import info

Labels = dict[int, tuple[str, str | None]]  # faiss id -> (image_id, person_id)


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
    searcher: faiss.Index  # the GPU copy, or the master itself
    on_gpu: bool
    labels: Labels
    exact: ExactSearch | None = None  # a flat master searched on the CPU: its engines

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
    """Holds the current snapshot; a newer generation replaces it, an older one never does."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._lock = threading.Lock()
        self._snap: Snapshot | None = None

    def current(self) -> Snapshot:
        snap = self._snap
        if snap is None:
            raise IndexStoreError(f"index {self._folder} is closed")
        return snap

    def install(self, snap: Snapshot) -> bool:
        """Swap in ``snap`` unless a newer generation is already in place."""
        with self._lock:
            if self._snap is not None and snap.generation <= self._snap.generation:
                return False
            self._snap = snap
            return True

    def clear(self) -> None:
        with self._lock:
            self._snap = None
