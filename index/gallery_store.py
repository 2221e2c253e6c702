"""What a gallery store does, whichever engine keeps it: FAISS + SQLite on local disk
(:class:`index.faiss.gallery.GalleryIndex`, the default) or a Milvus server or file
(:class:`index.milvus.store.MilvusStore`). The service and the CLI see only this."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from index.encoding import Encoding
from index.filters import GalleryFilter
from index.items import AddResult, Hit, ItemMeta


@runtime_checkable
class GalleryStore(Protocol):
    @property
    def location(self) -> str:
        """Where the store is (a folder, a file or a URL), for logs and messages."""
        ...

    @property
    def fingerprint(self) -> str:
        """The bundle the vectors were encoded with; a store refuses any other."""
        ...

    @property
    def dim(self) -> int: ...

    @property
    def encoding(self) -> Encoding:
        """How the vectors were encoded (precision, layout); see index/encoding.py."""
        ...

    def add(self, vectors: np.ndarray, items: Sequence[ItemMeta]) -> AddResult:
        """Add atomically; bytes already present (same sha256) are duplicates, not added; an
        image_id taken by other bytes raises ItemExistsError and nothing is added."""
        ...

    def upsert(self, vectors: np.ndarray, items: Sequence[ItemMeta]) -> None:
        """Add, or replace the vector and metadata of an image_id that exists."""
        ...

    def plan_add(self, items: Sequence[ItemMeta]) -> tuple[list[int], dict[str, str]]:
        """What add would do now: (positions it would add, image_id → item it duplicates)."""
        ...

    def remove(self, image_ids: Sequence[str]) -> list[str]:
        """Remove atomically; return the ids that were present."""
        ...

    def get(self, image_id: str) -> ItemMeta | None: ...

    def get_many(self, image_ids: Sequence[str]) -> dict[str, ItemMeta]:
        """The items of the ids that exist, in one batched read (not one read per id)."""
        ...

    def vectors(self, image_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """The stored vectors of the ids that exist."""
        ...

    def items(self) -> Iterator[ItemMeta]: ...

    def count(self) -> int: ...

    def stats(self) -> dict[str, Any]:
        """At least count, dim, fingerprint, kind and store (the engine's name)."""
        ...

    def search(
        self, queries: np.ndarray, k: int, where: GalleryFilter | None = None
    ) -> list[list[Hit]]:
        """Top k by inner product per query row among the items that pass ``where``; every
        write acknowledged before the call is seen (strong consistency)."""
        ...

    def refresh(self) -> bool:
        """Pick up writes of other processes; True when something changed."""
        ...

    def close(self) -> None: ...
