"""Encode gallery entries with a bundle and add them to a gallery store in one atomic add.

Any :class:`GalleryStore` will do (the FAISS folder or Milvus); each entry's metadata (person,
camera, capture time, tags) goes into the store with its vector.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from bundle.encoders import Bundle
from bundle.format import sha256_file
from index.errors import IndexStoreError, ItemExistsError
from index.gallery_store import GalleryStore
from index.ingest.encode import encode_images
from index.ingest.sources import GalleryEntry
from index.items import ItemMeta

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestReport:
    added: list[str]
    duplicates: dict[str, str]  # image_id -> image_id already holding the same bytes
    failures: list[tuple[str, str]]  # (path, reason) of files that could not be read
    seconds: float


def ingest(
    index: GalleryStore,
    bundle: Bundle,
    entries: Sequence[GalleryEntry],
    batch_size: int = 64,
    workers: int = 2,
    progress: bool = True,
) -> IngestReport:
    """Add ``entries``; files already indexed under the same id and bytes are not re-encoded."""
    start = time.perf_counter()
    entries, unchanged = _skip_unchanged(index, entries)
    vectors, items, failures = _encode(bundle, entries, batch_size, workers, progress)
    result = index.add(vectors, items)
    return IngestReport(
        added=result.added,
        duplicates={**unchanged, **result.duplicates},
        failures=failures,
        seconds=time.perf_counter() - start,
    )


def ingest_new(
    create: Callable[[], GalleryStore],
    bundle: Bundle,
    entries: Sequence[GalleryEntry],
    batch_size: int = 64,
    workers: int = 2,
    progress: bool = True,
) -> tuple[GalleryStore, IngestReport]:
    """Encode ``entries``, then make a store with ``create`` and add them: for stores that cannot
    be assembled aside (Milvus), so a gallery that fails to encode leaves no store behind."""
    start = time.perf_counter()
    vectors, items, failures = _encode(bundle, entries, batch_size, workers, progress)
    if not items:
        raise IndexStoreError(f"none of the {len(entries)} images could be read")
    store = create()
    try:
        result = store.add(vectors, items)
    except BaseException:
        store.close()
        raise
    seconds = time.perf_counter() - start
    return store, IngestReport(result.added, result.duplicates, failures, seconds)


def _encode(
    bundle: Bundle,
    entries: Sequence[GalleryEntry],
    batch_size: int,
    workers: int,
    progress: bool,
) -> tuple[np.ndarray, list[ItemMeta], list[tuple[str, str]]]:
    """(vectors, their items with each entry's metadata, unreadable files)."""
    encoded = encode_images(bundle, [e.path for e in entries], batch_size, workers, progress)
    now = time.time()
    items = [
        ItemMeta(
            image_id=entries[n].image_id,
            person_id=entries[n].person_id,
            source_path=str(entries[n].path.resolve()),
            sha256=sha,
            added_at=now,
            camera_id=entries[n].camera_id,
            captured_at=entries[n].captured_at,
            tags=entries[n].tags,
        )
        for n, sha in zip(encoded.kept, encoded.sha256, strict=True)
    ]
    return encoded.vectors, items, encoded.failures


def _skip_unchanged(
    index: GalleryStore, entries: Sequence[GalleryEntry]
) -> tuple[list[GalleryEntry], dict[str, str]]:
    """Hashing is far cheaper than encoding: settle re-added ids before the encoder runs."""
    todo: list[GalleryEntry] = []
    unchanged: dict[str, str] = {}
    for entry in entries:
        known = index.get(entry.image_id)
        if known is None:
            todo.append(entry)
            continue
        try:
            sha = sha256_file(entry.path)
        except OSError:
            todo.append(entry)  # the encoder reports the unreadable file
            continue
        if sha != known.sha256:
            raise ItemExistsError(
                f"image_id {entry.image_id!r} is already in the index with different content "
                f"({entry.path}); remove it first (nothing was added)"
            )
        unchanged[entry.image_id] = entry.image_id
    if unchanged:
        log.info("%d images are already indexed unchanged", len(unchanged))
    return todo, unchanged
