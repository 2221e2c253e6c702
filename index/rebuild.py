"""Re-encode an index's gallery with another bundle: same items and ids, new vectors."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from bundle.encoders import Bundle
from index import faiss_backend
from index.encode import encode_images
from index.errors import IndexStoreError
from index.items import ItemMeta
from index.manifest import Row
from index.store import GalleryIndex, staging

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
) -> GalleryIndex:
    """See :func:`index.store.rebuild`. Writers wait for the whole re-encode; readers do not."""
    source = GalleryIndex.open(path, use_gpu="never")
    try:
        with source._writing() as snap:
            new_kind = faiss_backend.check_kind(kind or snap.kind)
            rows = source._manifest.rows()
            log.info("re-encoding %d images of %s with bundle %s", len(rows), path, bundle.path)
            encoded = encode_images(
                bundle, [Path(r.item.source_path) for r in rows], batch_size, workers, progress
            )
            kept_set = set(encoded.kept)
            dropped = [r for n, r in enumerate(rows) if n not in kept_set]
            if dropped and not drop_unreadable:
                shown = "; ".join(f"{p}: {why}" for p, why in encoded.failures[:_SHOWN_FAILURES])
                raise IndexStoreError(
                    f"{len(dropped)} of {len(rows)} source images could not be read ({shown}); "
                    "nothing was changed (pass drop_unreadable / --drop-unreadable to drop them)"
                )
            kept = [rows[n] for n in encoded.kept]
            changed = [
                (r.id, sha)
                for r, sha in zip(kept, encoded.sha256, strict=True)
                if sha != r.item.sha256
            ]
            if changed:
                log.warning("%d source files changed since they were added", len(changed))
            ids = np.array([r.id for r in kept], dtype=np.int64)
            master = faiss_backend.build(new_kind, bundle.dim, encoded.vectors, ids)
            labels = {r.id: (r.item.image_id, r.item.person_id) for r in kept}
            meta = {"fingerprint": bundle.fingerprint, "dim": bundle.dim, "kind": new_kind}
            if out is None:
                source._commit(
                    snap,
                    master,
                    labels,
                    deletes=[r.id for r in dropped],
                    sha_updates=changed,
                    meta=meta,
                )
            else:
                new_sha = dict(changed)
                copies = [Row(r.id, _with_sha(r.item, new_sha.get(r.id))) for r in kept]
                with staging(out) as tmp:
                    target = GalleryIndex.create(
                        tmp, bundle.fingerprint, bundle.dim, new_kind, "never"
                    )
                    try:
                        with target._writing() as empty:
                            target._commit(
                                empty,
                                master,
                                labels,
                                inserts=copies,
                                meta={"next_id": snap.next_id},
                            )
                    finally:
                        target.close()
    finally:
        source.close()
    if dropped:
        log.warning("dropped %d unreadable items", len(dropped))
    result = out or path
    log.info("rebuilt %s: %d items, bundle %s", result, len(ids), bundle.fingerprint[:12])
    return GalleryIndex.open(result, bundle.fingerprint, bundle.dim, use_gpu)


def _with_sha(item: ItemMeta, sha: str | None) -> ItemMeta:
    if sha is None:
        return item
    return ItemMeta(item.image_id, item.person_id, item.source_path, sha, item.added_at)
