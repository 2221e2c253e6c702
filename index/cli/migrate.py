"""Copy a gallery from one store to a new one, and prove the copy answers like the original.

Why: moving a gallery from the local FAISS store to a shared Milvus collection (to serve many
replicas, or to outgrow one machine) must not re-encode a single image, and the way back
(Milvus → FAISS) is the backup. Any store to any store works, through the ``GalleryStore``
protocol only: items are read a page at a time, their stored vectors fetched by id, and both
written with ``add`` into a store created here (a destination that exists is refused).

Verification, after the copy: the counts agree; then ``verify`` stored items drawn at random
(reservoir sampling while copying, so memory stays flat) must have the same metadata and the
bit-identical vector on both sides, and, used as queries, the same top-10 from both stores —
ids in order, scores within 1e-5, where items whose scores tie may swap. When either side's
index is approximate (ivf, hnsw, gpu_cagra) two engines may legitimately return different
neighbours, so there a query disagrees only if its scores for the same ids differ or its first
hit does; the mean top-10 overlap is reported and must reach ``APPROX_MIN_OVERLAP``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from index.errors import IndexStoreError
from index.gallery_store import GalleryStore
from index.items import Hit, ItemMeta
from index.stores import create_store, open_store, store_kind

log = logging.getLogger(__name__)

TOP_K = 10
SCORE_TOLERANCE = 1e-5
APPROX_MIN_OVERLAP = 0.8
EXACT_KINDS = frozenset({"flat", "gpu_brute_force"})
# A Milvus GPU index has no FAISS-store counterpart: the nearest CPU kind.
FAISS_KIND_FOR = {"gpu_brute_force": "flat", "gpu_cagra": "hnsw"}
_SHOWN = 5  # disagreements spelled out in an error


class MigrationError(IndexStoreError):
    """The copy failed or does not answer like the original; the message says what differed."""


def destination_kind(source_kind: str, dst_spec: str | Path) -> str:
    """The source's index kind, or the nearest one the destination's engine has."""
    if store_kind(dst_spec) == "faiss":
        return FAISS_KIND_FOR.get(source_kind, source_kind)
    return source_kind


def migrate(
    src_spec: str | Path,
    dst_spec: str | Path,
    *,
    verify: int = 100,
    batch_size: int = 1000,
    kind: str | None = None,
    seed: int | None = None,
    images_root: Path | None = None,
) -> dict[str, Any]:
    """Copy every item (vector, id, metadata) of ``src_spec`` into a new store at
    ``dst_spec`` made for the same bundle fingerprint and dim, and of the source's index kind
    unless ``kind`` is given; then verify (see the module docstring). With ``images_root``
    (the source's image folder), image paths inside it are stored relative to it, so every
    host resolves them against its own image folder (TPS_IMAGE_DIR) wherever it mounts the
    images; paths outside it stay as they are. Returns a summary;
    raises :class:`MigrationError` when the copy does not answer like the source (the
    destination is then left as written, for inspection: remove it before trying again)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise IndexStoreError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(verify, bool) or not isinstance(verify, int) or verify < 0:
        raise IndexStoreError(f"verify must be a non-negative integer, got {verify!r}")
    started = time.perf_counter()
    src = open_store(src_spec, use_gpu="never")
    try:
        source_kind = str(src.stats()["kind"])
        dst_kind = kind or destination_kind(source_kind, dst_spec)
        dst = create_store(
            dst_spec, src.fingerprint, src.dim, dst_kind, use_gpu="never", encoding=src.encoding
        )
        try:
            rng = np.random.default_rng(seed)
            moved = PathMap(images_root)
            copied, sample = _copy(src, dst, batch_size, verify, rng, moved)
            copy_seconds = time.perf_counter() - started
            log.info("copied %d items in %.1f s; verifying", copied, copy_seconds)
            check = _verify(src, dst, sample, moved)
        except IndexStoreError as exc:
            raise MigrationError(
                f"{exc} ({dst.location} is left as written: remove it before migrating again)"
            ) from exc
        finally:
            dst.close()
    finally:
        src.close()
    if check["count"] != copied:
        raise MigrationError(
            f"copied {copied} items but the stores now hold {check['count']}: was the source "
            f"written to during the copy? {dst_spec} is left as written: remove it before "
            "migrating again"
        )
    summary = {
        "source": str(src_spec),
        "destination": str(dst_spec),
        "source_kind": source_kind,
        "kind": dst_kind,
        "copied": copied,
        "seconds": round(time.perf_counter() - started, 3),
        "copy_seconds": round(copy_seconds, 3),
    }
    summary.update(check)
    log.info("migrated %s → %s: %s", src_spec, dst_spec, summary)
    return summary


def verify_copy(
    src_spec: str | Path, dst_spec: str | Path, *, verify: int = 100, seed: int | None = None
) -> dict[str, Any]:
    """Verify an existing copy, as :func:`migrate` does after copying (raises
    :class:`MigrationError` on a difference)."""
    src = open_store(src_spec, use_gpu="never")
    try:
        dst = open_store(dst_spec, src.fingerprint, src.dim, use_gpu="never")
        try:
            rng = np.random.default_rng(seed)
            sample = _reservoir((i.image_id for i in src.items()), verify, rng)
            return _verify(src, dst, sample)
        finally:
            dst.close()
    finally:
        src.close()


# --- copy -----------------------------------------------------------------------------------


def _pages(store: GalleryStore, size: int) -> Iterator[list[ItemMeta]]:
    page: list[ItemMeta] = []
    for item in store.items():
        page.append(item)
        if len(page) == size:
            yield page
            page = []
    if page:
        yield page


class PathMap:
    """Image paths as the destination stores them: relative to ``root`` when inside it."""

    def __init__(self, root: Path | None) -> None:
        self.root = None if root is None else Path(root).resolve()

    def item(self, item: ItemMeta) -> ItemMeta:
        if self.root is None or not item.source_path:
            return item
        path = Path(item.source_path)
        if not path.is_absolute() or not path.resolve().is_relative_to(self.root):
            return item
        relative = path.resolve().relative_to(self.root).as_posix()
        return dataclasses.replace(item, source_path=relative)


def _copy(
    src: GalleryStore,
    dst: GalleryStore,
    batch_size: int,
    verify: int,
    rng: np.random.Generator,
    moved: PathMap,
) -> tuple[int, list[str]]:
    """Copy page by page; return (items copied, up to ``verify`` of their ids at random)."""
    copied = 0
    sample: list[str] = []
    for page in _pages(src, batch_size):
        found = src.vectors([i.image_id for i in page])
        if len(found) != len(page):
            gone = sorted({i.image_id for i in page} - set(found))
            raise MigrationError(
                f"items vanished from the source during the copy ({', '.join(gone[:_SHOWN])}); "
                "stop writers to the source and migrate again into a new destination"
            )
        vectors = np.stack([found[i.image_id] for i in page])
        result = dst.add(vectors, [moved.item(i) for i in page])
        if result.duplicates:
            pairs = [f"{new} = {old}" for new, old in sorted(result.duplicates.items())]
            raise MigrationError(
                "the source holds the same bytes under several ids, which the destination "
                f"refuses ({', '.join(pairs[:_SHOWN])}); remove one of each from the source"
            )
        for item in page:
            _offer(sample, item.image_id, copied, verify, rng)
            copied += 1
        log.debug("copied %d items", copied)
    return copied, sample


def _offer(sample: list[str], value: str, seen: int, size: int, rng: np.random.Generator) -> None:
    """Reservoir sampling: after ``seen`` earlier offers, keep ``value`` with p = size/(seen+1)."""
    if len(sample) < size:
        sample.append(value)
    elif size:
        j = int(rng.integers(0, seen + 1))
        if j < size:
            sample[j] = value


def _reservoir(values: Iterator[str], size: int, rng: np.random.Generator) -> list[str]:
    sample: list[str] = []
    for n, value in enumerate(values):
        _offer(sample, value, n, size, rng)
    return sample


# --- verification ---------------------------------------------------------------------------


def _verify(
    src: GalleryStore, dst: GalleryStore, sample: list[str], moved: PathMap | None = None
) -> dict[str, Any]:
    moved = moved or PathMap(None)
    problems: list[str] = []
    count, dst_count = src.count(), dst.count()
    if count != dst_count:
        problems.append(f"the source holds {count} items, the destination {dst_count}")
    src_vectors, dst_vectors = src.vectors(sample), dst.vectors(sample)
    for image_id in sample:
        theirs = dst_vectors.get(image_id)
        if theirs is None:
            problems.append(f"{image_id}: missing from the destination")
        elif not np.array_equal(src_vectors[image_id], theirs):
            problems.append(f"{image_id}: its vector differs")
        elif (a := _moved(moved, src.get(image_id))) != (b := dst.get(image_id)):
            problems.append(f"{image_id}: metadata {a} became {b}")
    exact = str(src.stats()["kind"]) in EXACT_KINDS and str(dst.stats()["kind"]) in EXACT_KINDS
    mismatches = 0
    overlaps: list[float] = []
    present = [i for i in sample if i in src_vectors]
    if present:
        queries = np.stack([src_vectors[i] for i in present])
        src_hits, dst_hits = src.search(queries, TOP_K), dst.search(queries, TOP_K)
        for image_id, a, b in zip(present, src_hits, dst_hits, strict=True):
            overlaps.append(len({h.image_id for h in a} & {h.image_id for h in b}) / max(len(a), 1))
            why = _disagreement(a, b) if exact else _approximate_disagreement(a, b)
            if why:
                mismatches += 1
                problems.append(f"query {image_id}: {why}")
    overlap = float(np.mean(overlaps)) if overlaps else 1.0
    if not exact and overlap < APPROX_MIN_OVERLAP:
        problems.append(
            f"the top-{TOP_K} lists overlap {overlap:.2f} on average "
            f"(at least {APPROX_MIN_OVERLAP} expected of approximate indexes)"
        )
    if problems:
        shown = "; ".join(problems[:_SHOWN])
        more = f" (and {len(problems) - _SHOWN} more)" if len(problems) > _SHOWN else ""
        raise MigrationError(
            f"verification failed, {dst.location} does not answer like {src.location}: "
            f"{shown}{more}"
        )
    return {
        "count": dst_count,
        "verified": len(present),
        "mismatches": mismatches,
        "exact": exact,
        "overlap": round(overlap, 4),
    }


def _moved(moved: PathMap, item: ItemMeta | None) -> ItemMeta | None:
    return None if item is None else moved.item(item)


def _disagreement(a: list[Hit], b: list[Hit]) -> str | None:
    """Why two exact top-k lists differ, or None: position by position the scores agree, and
    where the ids differ the two items tie (one may rank either side of the other)."""
    if len(a) != len(b):
        return f"{len(a)} hits from the source, {len(b)} from the destination"
    score_a = {h.image_id: h.score for h in a}
    last = a[-1].score if a else 0.0
    for rank, (x, y) in enumerate(zip(a, b, strict=True)):
        if abs(x.score - y.score) > SCORE_TOLERANCE:
            return f"rank {rank}: {x.image_id} {x.score:.6f} vs {y.image_id} {y.score:.6f}"
        if x.image_id != y.image_id:
            # y must tie with x: listed elsewhere by the source with the same score, or not
            # listed because it tied with the source's last hit.
            other = score_a.get(y.image_id, last)
            if abs(other - y.score) > SCORE_TOLERANCE:
                return f"rank {rank}: {x.image_id} vs {y.image_id} (no tie)"
    return None


def _approximate_disagreement(a: list[Hit], b: list[Hit]) -> str | None:
    """Approximate indexes may find other neighbours; the same id must score the same, and the
    first hit (the query's own item, or one tied with it) must agree."""
    if bool(a) != bool(b):
        return f"{len(a)} hits from the source, {len(b)} from the destination"
    if a and abs(a[0].score - b[0].score) > SCORE_TOLERANCE:
        return f"first hit {a[0].image_id} {a[0].score:.6f} vs {b[0].image_id} {b[0].score:.6f}"
    score_b = {h.image_id: h.score for h in b}
    for hit in a:
        other = score_b.get(hit.image_id)
        if other is not None and abs(other - hit.score) > SCORE_TOLERANCE:
            return f"{hit.image_id} scores {hit.score:.6f} vs {other:.6f}"
    return None
