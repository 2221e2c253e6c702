"""Re-encode an index's gallery with another bundle: same items and ids, new vectors.

It uses only the index's public API: :meth:`GalleryIndex.exclusive` holds the write lock for the
whole re-encode (so no add or remove can slip in between reading the rows and replacing them),
and the replacement is one new generation under the usual commit protocol.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bundle.encoders import Bundle
from index.encoding import encoding_of
from index.errors import IndexStoreError
from index.faiss import backend as faiss_backend
from index.faiss.gallery import GalleryIndex
from index.faiss.manifest import Row
from index.faiss.publish import staging
from index.ingest.encode import EncodeResult, encode_images
from index.items import ItemMeta
from index.source_files import source_files

log = logging.getLogger(__name__)

_SHOWN_FAILURES = 3


def rebuild_index(
    path: Path,
    bundle: Bundle,
    out: Path | None,
    *,
    kind: str | None,
    batch_size: int,
    workers: int,
    progress: bool,
    drop_unreadable: bool,
    use_gpu: str,
    images_root: Path | None = None,
) -> GalleryIndex:
    """See :func:`index.store.rebuild`. Writers wait for the whole re-encode; readers do not."""
    source = GalleryIndex.open(path, use_gpu="never")
    try:
        with source.exclusive() as writer:
            new_kind = faiss_backend.check_kind(kind or writer.kind)
            rows = writer.rows()
            log.info("re-encoding %d images of %s with bundle %s", len(rows), path, bundle.path)
            encoded = encode_images(
                bundle,
                source_files([r.item for r in rows], images_root),
                batch_size,
                workers,
                progress,
            )
            kept, dropped = _kept_rows(rows, encoded, drop_unreadable)
            if out is None:
                writer.replace_all(
                    encoded.vectors,
                    kept,
                    fingerprint=bundle.fingerprint,
                    dim=bundle.dim,
                    kind=new_kind,
                    encoding=encoding_of(bundle),
                )
            else:
                with staging(out) as tmp:
                    _write_copy(tmp, bundle, new_kind, encoded.vectors, kept, writer.next_id)
    finally:
        source.close()
    if dropped:
        log.warning("dropped %d unreadable items", len(dropped))
    result = out or path
    log.info("rebuilt %s: %d items, bundle %s", result, len(kept), bundle.fingerprint[:12])
    return GalleryIndex.open(result, bundle.fingerprint, bundle.dim, use_gpu)


def _kept_rows(
    rows: list[Row], encoded: EncodeResult, drop_unreadable: bool
) -> tuple[list[Row], list[Row]]:
    """(rows re-encoded, with their sources' current sha256; rows whose source failed)."""
    kept_set = set(encoded.kept)
    dropped = [r for n, r in enumerate(rows) if n not in kept_set]
    if dropped and not drop_unreadable:
        shown = "; ".join(f"{p}: {why}" for p, why in encoded.failures[:_SHOWN_FAILURES])
        raise IndexStoreError(
            f"{len(dropped)} of {len(rows)} source images could not be read ({shown}); "
            "nothing was changed (pass drop_unreadable / --drop-unreadable to drop them)"
        )
    kept = [rows[n] for n in encoded.kept]
    changed = sum(sha != r.item.sha256 for r, sha in zip(kept, encoded.sha256, strict=True))
    if changed:
        log.warning("%d source files changed since they were added", changed)
    return [
        Row(r.id, _with_sha(r.item, sha)) for r, sha in zip(kept, encoded.sha256, strict=True)
    ], dropped


def _write_copy(
    path: Path,
    bundle: Bundle,
    kind: str,
    vectors: np.ndarray,
    rows: Sequence[Row],
    next_id: int,
) -> None:
    """A new index at ``path`` holding ``rows``; ids stay below the source's ``next_id``."""
    target = GalleryIndex.create(
        path, bundle.fingerprint, bundle.dim, kind, "never", encoding=encoding_of(bundle)
    )
    try:
        target.replace_all(vectors, rows, next_id=next_id)
    finally:
        target.close()


def _with_sha(item: ItemMeta, sha: str) -> ItemMeta:
    """The item as re-encoded: its metadata kept, its sha256 that of the file read now."""
    return item if sha == item.sha256 else dataclasses.replace(item, sha256=sha)
