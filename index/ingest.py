"""Encode gallery entries with a bundle and add them to an index in one atomic add."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from bundle.encoders import Bundle
from bundle.format import sha256_file
from index.encode import encode_images
from index.errors import ItemExistsError
from index.gallery import GalleryIndex
from index.gallery_sources import GalleryEntry
from index.items import ItemMeta

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestReport:
    added: list[str]
    duplicates: dict[str, str]  # image_id -> image_id already holding the same bytes
    failures: list[tuple[str, str]]  # (path, reason) of files that could not be read
    seconds: float


def ingest(
    index: GalleryIndex,
    bundle: Bundle,
    entries: Sequence[GalleryEntry],
    batch_size: int = 64,
    workers: int = 2,
    progress: bool = True,
) -> IngestReport:
    """Add ``entries``; files already indexed under the same id and bytes are not re-encoded."""
    start = time.perf_counter()
    entries, unchanged = _skip_unchanged(index, entries)
    encoded = encode_images(bundle, [e.path for e in entries], batch_size, workers, progress)
    now = time.time()
    items = [
        ItemMeta(
            image_id=entries[n].image_id,
            person_id=entries[n].person_id,
            source_path=str(entries[n].path.resolve()),
            sha256=sha,
            added_at=now,
        )
        for n, sha in zip(encoded.kept, encoded.sha256, strict=True)
    ]
    result = index.add(encoded.vectors, items)
    return IngestReport(
        added=result.added,
        duplicates={**unchanged, **result.duplicates},
        failures=encoded.failures,
        seconds=time.perf_counter() - start,
    )


def _skip_unchanged(
    index: GalleryIndex, entries: Sequence[GalleryEntry]
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
