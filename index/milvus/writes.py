"""The write path of a Milvus gallery: add with dedupe on sha256, upsert, remove, and what
happens when replicas write at once. The caller holds the store's write lock.

Concurrency. Writes of one ``MilvusStore`` are serialised by a lock; different processes
(replicas) are not: Milvus has neither transactions nor unique constraints. What ``add`` does:

- The rows go in with ``upsert``, never ``insert``: Milvus does not enforce primary-key
  uniqueness on insert, so two replicas adding the same new image_id at once would otherwise
  leave two rows under one id. With upsert the later write wins: same bytes → one row; other
  bytes → the later bytes, silently (the ItemExistsError check ran before either wrote).
- Two replicas adding the same bytes under different new ids may both pass the sha256 check.
  After writing, ``add`` looks again: when another image_id with a smaller name holds the same
  sha256, it removes its own row and reports it as a duplicate of that one. The replica whose
  id sorts first keeps its row, so a race ends with one copy unless the two re-checks both run
  before the second write lands; then both copies stay (same bytes, so the same vector: they
  tie in a search, and later adds of the bytes name the smaller id).

On milvus-lite (a file, or ``milvus-lite server`` behind milvus://, told apart by the server
version) every write is followed by a flush: that engine searches rows still in its in-memory
table row by row in Python (~30 ms per 1,000 rows and query) and flushed segments with
numpy/FAISS. A Milvus server seals and indexes segments itself; nothing is flushed there.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from index.inputs import plan_add, plan_upsert
from index.items import AddResult, ItemMeta
from index.milvus.claims import Claims
from index.milvus.connection import MilvusCollection
from index.milvus.paging import PAGE, chunks, query_in, rows_by_id
from index.milvus.quoting import in_list
from index.milvus.rows import to_row

# The store's one logger name, as before it was split into modules (service logs show it).
log = logging.getLogger("index.milvus_store")

REQUEST_BYTES = 16 << 20  # one write request at most (Milvus accepts 64 MiB by default)


def rows_per_request(dim: int) -> int:
    return max(1, REQUEST_BYTES // (4 * dim + 8192))


def holders(col: MilvusCollection, shas: Sequence[str]) -> dict[str, list[str]]:
    """sha256 → the image_ids holding those bytes, sorted."""
    found: dict[str, list[str]] = {}
    for row in query_in(col, "sha256", shas, ["image_id", "sha256"]):
        found.setdefault(row["sha256"], []).append(row["image_id"])
    return {sha: sorted(ids) for sha, ids in found.items()}


class Lookups:
    """What :func:`index.inputs.plan_add` asks of a manifest, answered by the collection."""

    def __init__(self, col: MilvusCollection) -> None:
        self._col = col

    def sha_by_image_id(self, image_ids: Sequence[str]) -> dict[str, str]:
        rows = rows_by_id(self._col, image_ids, ["image_id", "sha256"])
        return {r["image_id"]: r["sha256"] for r in rows}

    def image_id_by_sha(self, shas: Sequence[str]) -> dict[str, str]:
        return {sha: ids[0] for sha, ids in holders(self._col, shas).items()}

    def id_by_image_id(self, image_ids: Sequence[str]) -> dict[str, int]:
        """The ids present (a manifest maps them to FAISS ids; a collection has none: 0)."""
        return {r["image_id"]: 0 for r in rows_by_id(self._col, image_ids, ["image_id"])}


def plan(col: MilvusCollection, items: list[ItemMeta]) -> tuple[list[int], dict[str, str]]:
    """The rule of :func:`index.inputs.plan_add` (which it runs) over what the collection
    holds."""
    return plan_add(Lookups(col), items)  # type: ignore[arg-type]


def add_new(
    col: MilvusCollection,
    dim: int,
    x: np.ndarray,
    items: list[ItemMeta],
    claims: Claims | None = None,
) -> AddResult:
    """Add the items whose bytes are new (``x``: their checked vectors); see the module
    docstring for concurrent writers, and :mod:`index.milvus.claims` for how ``claims`` keeps
    writers on other hosts from overwriting each other's new ids.

    An image_id taken by other bytes raises :class:`ItemExistsError` and nothing is
    written. Within one request the write is atomic; a batch larger than one request
    (~16 MiB) is written in several and the earlier ones are removed if a later one fails.
    """
    keep, duplicates = plan(col, items)
    if not keep:
        return AddResult([], duplicates)
    if claims is None:
        return _write_new(col, dim, x, items, keep, duplicates)
    tokens = claims.claim([items[j] for j in keep])
    try:
        keep, duplicates = plan(col, items)  # again: a writer may have finished meanwhile
        return _write_new(col, dim, x, items, keep, duplicates)
    finally:
        try:
            claims.release(tokens)
        except Exception as err:  # it expires (CLAIM_TTL_S); the write itself is settled
            log.warning("could not release %d id claims: %s", len(tokens), err)


def _write_new(
    col: MilvusCollection,
    dim: int,
    x: np.ndarray,
    items: list[ItemMeta],
    keep: list[int],
    duplicates: dict[str, str],
) -> AddResult:
    if not keep:
        return AddResult([], duplicates)
    new = [items[j] for j in keep]
    written: list[str] = []
    try:
        for chunk in chunks(list(zip(keep, new, strict=True)), rows_per_request(dim)):
            rows = [to_row(x[j], item, col.nullable) for j, item in chunk]
            col.call("add", lambda c, rows=rows: c.upsert(col.name, rows))
            written.extend(item.image_id for _, item in chunk)
    except BaseException:
        if written:
            log.warning("add failed part-way; removing the %d rows written", len(written))
            delete(col, written)
        raise
    lost = settle_races(col, new)
    flush_if_lite(col)
    duplicates.update(lost)
    added = [item.image_id for item in new if item.image_id not in lost]
    log.info("added %d items (%d duplicates) to %s", len(added), len(duplicates), col.location)
    return AddResult(added, duplicates)


def upsert_all(col: MilvusCollection, dim: int, x: np.ndarray, items: list[ItemMeta]) -> None:
    """Add, or replace the vector and metadata of an image_id that exists; the rule of
    :func:`index.inputs.plan_upsert` (an id listed twice takes its last entry; bytes that
    another image_id keeps raise :class:`ItemExistsError` and nothing is written). A batch
    written in several requests (~16 MiB each) is not rolled back if a later one fails."""
    keep, _ = plan_upsert(Lookups(col), items)  # type: ignore[arg-type]
    for chunk in chunks(keep, rows_per_request(dim)):
        rows = [to_row(x[j], items[j], col.nullable) for j in chunk]
        col.call("upsert", lambda c, rows=rows: c.upsert(col.name, rows))
    flush_if_lite(col)
    log.info("upserted %d items into %s", len(keep), col.location)


def remove_present(col: MilvusCollection, image_ids: Sequence[str]) -> list[str]:
    """Remove items; return the ids that were present (unknown ids are ignored)."""
    wanted = list(dict.fromkeys(image_ids))
    present = {r["image_id"] for r in rows_by_id(col, wanted, ["image_id"])}
    if not present:
        return []
    delete(col, sorted(present))
    flush_if_lite(col)
    log.info("removed %d items from %s", len(present), col.location)
    return [i for i in wanted if i in present]


def settle_races(col: MilvusCollection, added: list[ItemMeta]) -> dict[str, str]:
    """Remove our new rows whose bytes another writer added meanwhile under a smaller id."""
    found = holders(col, [item.sha256 for item in added])
    lost = {
        item.image_id: found[item.sha256][0]
        for item in added
        if found.get(item.sha256, [item.image_id])[0] != item.image_id
    }
    if lost:
        pairs = [f"{mine} (→ {theirs})" for mine, theirs in sorted(lost.items())]
        log.warning(
            "another writer added the same bytes meanwhile; keeping theirs for %d items: %s%s",
            len(pairs),
            ", ".join(pairs[:10]),
            ", ..." if len(pairs) > 10 else "",
        )
        delete(col, sorted(lost))
    return lost


def delete(col: MilvusCollection, image_ids: list[str]) -> None:
    for chunk in chunks(image_ids, PAGE):
        expr = in_list("image_id", chunk)
        col.call("remove", lambda c, expr=expr: c.delete(col.name, filter=expr))


def flush_if_lite(col: MilvusCollection) -> None:
    if col.lite:
        col.call("flush", lambda c: c.flush(col.name))
