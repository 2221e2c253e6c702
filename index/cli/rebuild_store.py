"""Re-encode a gallery store into a new store with another bundle, whichever engines they are.

A FAISS folder rebuilt in place or into another folder goes through ``rebuild.py`` (ids kept,
one atomic generation). When Milvus is on either side the result is always a new store: every
item is read through the :class:`GalleryStore` API, its source file encoded again, and the
items written with their metadata. A new FAISS folder is assembled aside and put in place only
when complete; a new Milvus collection is filled in one ``upsert``.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np

from bundle.encoders import Bundle
from index.encoding import encoding_of
from index.errors import IndexStoreError
from index.faiss.gallery import GalleryIndex
from index.faiss.publish import staging
from index.gallery_store import GalleryStore
from index.ingest.encode import encode_images
from index.items import ItemMeta
from index.source_files import source_files
from index.stores import create_store, open_store, store_kind

log = logging.getLogger(__name__)

_SHOWN_FAILURES = 3


def rebuild_into(
    source_spec: str,
    bundle: Bundle,
    out_spec: str,
    *,
    kind: str | None,
    batch_size: int,
    workers: int,
    progress: bool,
    drop_unreadable: bool,
    images_root: Path | None = None,
) -> GalleryStore:
    """Encode every item of ``source_spec`` with ``bundle`` into the new store ``out_spec``."""
    source = open_store(source_spec, use_gpu="never")
    try:
        kind = kind or str(source.stats()["kind"])
        items = list(source.items())
    finally:
        source.close()
    log.info("re-encoding %d images of %s with bundle %s", len(items), source_spec, bundle.path)
    files = source_files(items, images_root)
    encoded = encode_images(bundle, files, batch_size, workers, progress)
    failed = len(items) - len(encoded.kept)
    if failed and not drop_unreadable:
        shown = "; ".join(f"{p}: {why}" for p, why in encoded.failures[:_SHOWN_FAILURES])
        raise IndexStoreError(
            f"{failed} of {len(items)} source images could not be read ({shown}); nothing was "
            "written (pass drop_unreadable / --drop-unreadable to drop them)"
        )
    kept = [
        dataclasses.replace(items[n], sha256=sha)
        for n, sha in zip(encoded.kept, encoded.sha256, strict=True)
    ]
    if failed:
        log.warning("dropped %d unreadable items", failed)
    if store_kind(out_spec) == "faiss":
        return _new_folder(Path(out_spec), bundle, kind, encoded.vectors, kept)
    encoding = encoding_of(bundle)  # how the new vectors were encoded
    target = create_store(
        out_spec, bundle.fingerprint, bundle.dim, kind, "never", encoding=encoding
    )
    try:
        target.upsert(encoded.vectors, kept)
    except BaseException:
        target.close()
        raise
    return target


def _new_folder(
    path: Path, bundle: Bundle, kind: str, vectors: np.ndarray, items: list[ItemMeta]
) -> GalleryIndex:
    with (
        staging(path) as tmp,
        GalleryIndex.create(
            tmp, bundle.fingerprint, bundle.dim, kind, "never", encoding=encoding_of(bundle)
        ) as target,
    ):
        target.upsert(vectors, items)
    return GalleryIndex.open(path, bundle.fingerprint, bundle.dim, "never")
