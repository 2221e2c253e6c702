"""Checks on what callers hand the index, and the row changes a write makes, decided before
anything is written: a refused write must leave no trace, so every refusal happens here.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from index.errors import IndexMismatchError, IndexStoreError, ItemExistsError
from index.faiss.commit import RowChanges
from index.faiss.manifest import Manifest, Row
from index.items import ItemMeta

_NORM_TOLERANCE = 1e-2


def as_matrix(values: np.ndarray, dim: int, what: str) -> np.ndarray:
    """``values`` as a contiguous float32 (n, dim) matrix; a single vector is one row."""
    x = np.asarray(values, dtype=np.float32)
    if x.ndim == 1:
        x = x.reshape(1, -1)
    if x.ndim != 2 or (x.shape[1] != dim and x.size):
        raise IndexMismatchError(
            f"{what} have shape {tuple(np.shape(values))}; this index holds {dim}-dimensional "
            "vectors (is the bundle the one the index was built with?)"
        )
    if not np.isfinite(x).all():
        raise IndexStoreError(f"{what} contain NaN or infinite values")
    return np.ascontiguousarray(x.reshape(-1, dim))


def check_normalised(x: np.ndarray) -> None:
    norms = np.linalg.norm(x, axis=1)
    bad = np.flatnonzero(np.abs(norms - 1.0) > _NORM_TOLERANCE)
    if len(bad):
        raise IndexStoreError(
            f"vectors must be L2-normalised: row {bad[0]} has norm {norms[bad[0]]:.4f}"
        )


def checked_vectors(vectors: np.ndarray, items: Sequence[ItemMeta], dim: int) -> np.ndarray:
    """A write's vectors as a float32 matrix: one unit row per item, or IndexStoreError."""
    x = as_matrix(vectors, dim, "vectors")
    if len(x) != len(items):
        raise IndexStoreError(f"{len(x)} vectors for {len(items)} items")
    check_normalised(x)
    return x


def check_item(item: ItemMeta) -> None:
    if not isinstance(item, ItemMeta):
        raise IndexStoreError(f"items must be ItemMeta, got {type(item).__name__}")
    if not isinstance(item.image_id, str) or not item.image_id:
        raise IndexStoreError(f"image_id must be a non-empty string, got {item.image_id!r}")
    if not isinstance(item.sha256, str) or not item.sha256:
        raise IndexStoreError(f"item {item.image_id!r} has no sha256")
    for field in ("person_id", "camera_id"):
        if getattr(item, field) is not None and not isinstance(getattr(item, field), str):
            raise IndexStoreError(f"item {item.image_id!r}: {field} must be a string or None")
    captured = item.captured_at
    if captured is not None and (
        isinstance(captured, bool)
        or not isinstance(captured, int | float)
        or not math.isfinite(captured)
    ):
        raise IndexStoreError(
            f"item {item.image_id!r}: captured_at must be seconds since the epoch or None, "
            f"got {captured!r}"
        )
    tags = item.tags
    if isinstance(tags, str) or not isinstance(tags, tuple | list):
        raise IndexStoreError(f"item {item.image_id!r}: tags must be a tuple of strings")
    if not all(isinstance(t, str) and t for t in tags):
        raise IndexStoreError(f"item {item.image_id!r}: every tag must be a non-empty string")


def check_rows(rows: Sequence[Row]) -> None:
    """Rows of a whole generation: valid items under distinct non-negative integer ids."""
    seen: set[int] = set()
    for row in rows:
        if not isinstance(row, Row):
            raise IndexStoreError(f"rows must be Row, got {type(row).__name__}")
        if isinstance(row.id, bool) or not isinstance(row.id, int) or row.id < 0:
            raise IndexStoreError(f"row ids must be non-negative integers, got {row.id!r}")
        if row.id in seen:
            raise IndexStoreError(f"row id {row.id} is listed twice")
        seen.add(row.id)
        check_item(row.item)


def plan_add(manifest: Manifest, items: list[ItemMeta]) -> tuple[list[int], dict[str, str]]:
    """Which items to add, and which are duplicates of what (in the index or this batch)."""
    taken = manifest.sha_by_image_id([i.image_id for i in items])
    owners = manifest.image_id_by_sha([i.sha256 for i in items])
    keep: list[int] = []
    duplicates: dict[str, str] = {}
    batch: set[str] = set()
    for n, item in enumerate(items):
        if item.image_id in batch and taken[item.image_id] == item.sha256:
            continue  # listed twice in this batch: one copy is enough, nothing to report
        if item.image_id in taken:
            if taken[item.image_id] != item.sha256:
                raise ItemExistsError(
                    f"image_id {item.image_id!r} is already taken by different content; "
                    "remove it first or choose another id (nothing was added)"
                )
            duplicates[item.image_id] = item.image_id
        elif item.sha256 in owners:
            duplicates[item.image_id] = owners[item.sha256]
        else:
            keep.append(n)
            batch.add(item.image_id)
            taken[item.image_id] = item.sha256
            owners[item.sha256] = item.image_id
    return keep, duplicates


def plan_upsert(manifest: Manifest, items: list[ItemMeta]) -> tuple[list[int], dict[str, int]]:
    """(positions to write: the last of each image_id; image_id → faiss id of those present).

    The bytes of an image are in the index once: an item whose sha256 another image_id holds,
    and keeps after this write, raises :class:`ItemExistsError` (nothing is written).
    """
    last = {item.image_id: n for n, item in enumerate(items)}
    keep = sorted(last.values())
    ids = [items[n].image_id for n in keep]
    present = manifest.id_by_image_id(ids)
    writers: dict[str, str] = {}
    for n in keep:
        other = writers.setdefault(items[n].sha256, items[n].image_id)
        if other != items[n].image_id:
            raise ItemExistsError(
                f"images {other!r} and {items[n].image_id!r} have the same bytes; "
                "the index holds each file once (nothing was written)"
            )
    owners = manifest.image_id_by_sha(list(writers))
    for sha, image_id in writers.items():
        owner = owners.get(sha)
        if owner is not None and owner != image_id and owner not in last:
            raise ItemExistsError(
                f"the bytes of {image_id!r} are already in the index as {owner!r}; "
                "remove it first (nothing was written)"
            )
    return keep, present


def plan_replacement(current: Sequence[Row], new: Sequence[Row]) -> RowChanges:
    """The fewest row changes that turn ``current`` into ``new``, matched by id.

    A row whose item differs only in sha256 is updated in place; one that differs otherwise is
    deleted and inserted again; rows missing from ``new`` are deleted.
    """
    before = {row.id: row.item for row in current}
    after = {row.id for row in new}
    deletes = [i for i in sorted(before) if i not in after]
    sha_updates: list[tuple[int, str]] = []
    inserts: list[Row] = []
    for row in sorted(new, key=lambda r: r.id):
        old = before.get(row.id)
        if old == row.item:
            continue
        if old is not None and _same_but_sha(old, row.item):
            sha_updates.append((row.id, row.item.sha256))
            continue
        if old is not None:
            deletes.append(row.id)
        inserts.append(row)
    return RowChanges(deletes=sorted(deletes), sha_updates=sha_updates, inserts=inserts)


def _same_but_sha(a: ItemMeta, b: ItemMeta) -> bool:
    return dataclasses.replace(a, sha256=b.sha256) == b
