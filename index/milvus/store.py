"""The gallery kept in Milvus: one collection shared by every service replica.

Why: the FAISS store lives on one machine's disk and each process holds the whole index in
memory; a Milvus server (or cluster) keeps a gallery larger than one machine, serves many
replicas at once and filters on metadata inside the vector search. ``FILE.db`` runs the same
API on milvus-lite, the embedded engine, for one process (tests, laptops, backups).

The collection is the store. :class:`MilvusStore` here is the facade the service and the CLI
see (:class:`index.gallery_store.GalleryStore`); each of its jobs has a module:

- :mod:`index.milvus.schema`: the collection's schema (its fields table), what the gallery is
  in the collection's ``tps.*`` properties, strong consistency;
- :mod:`index.milvus.indexes`: the index kinds, their build and search parameters;
- :mod:`index.milvus.connection`: clients, milvus-lite's shared server, Milvus errors;
- :mod:`index.milvus.quoting`: string literals and id lists in expressions;
- :mod:`index.milvus.rows`: items as rows and back, with the schema's limits;
- :mod:`index.milvus.paging`: reads by id lists and every item, in pages;
- :mod:`index.milvus.writes`: add with dedupe, upsert, remove, concurrent replicas, flushes;
- :mod:`index.milvus.search`: vector search with the filter inside.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pymilvus import MilvusClient, MilvusException

from index.encoding import Encoding, check
from index.errors import IndexMismatchError, IndexStoreError
from index.filters import GalleryFilter
from index.inputs import checked_vectors
from index.items import AddResult, Hit, ItemMeta
from index.milvus.claims import Claims, claims_name, ensure_claims
from index.milvus.connection import (
    MilvusCollection,
    connect,
    disconnect,
    engine,
    errors,
    is_lite,
    location,
    nullable_fields,
)
from index.milvus.indexes import (
    EXACT_KINDS,
    GPU_KINDS,
    INDEX_TYPES,
    KINDS,
    build_indexes,
    check_kind,
    refuse_gpu_on_lite,
)
from index.milvus.paging import iter_items, rows_by_id
from index.milvus.rows import check_fields, to_item
from index.milvus.rows import to_row as _row
from index.milvus.schema import (
    FORMAT,
    META_FIELDS,
    SEARCH_CONSISTENCY,
    STORE,
    STRONG,
    VERSION,
    collection_schema,
    creator_of,
    properties,
    read_meta,
)
from index.milvus.search import MAX_K, search
from index.milvus.writes import (
    add_new,
    plan,
    remove_present,
    settle_races,
    upsert_all,
)

# What other code imports from here (the store's names from before the split included).
__all__ = [
    "EXACT_KINDS",
    "FORMAT",
    "GPU_KINDS",
    "INDEX_TYPES",
    "KINDS",
    "MAX_K",
    "STORE",
    "VERSION",
    "MilvusStore",
    "_row",
    "check_kind",
    "is_lite",
]

log = logging.getLogger(__name__)


class MilvusStore:
    """A gallery in one Milvus collection; thread-safe. See the module docstring."""

    def __init__(
        self,
        client: MilvusClient,
        uri: str,
        collection: str,
        meta: dict[str, Any],
        search_consistency: str = "Strong",
    ) -> None:
        if search_consistency not in SEARCH_CONSISTENCY:
            raise IndexStoreError(
                f"search consistency must be one of {', '.join(SEARCH_CONSISTENCY)}, "
                f"got {search_consistency!r}"
            )
        self._search_consistency = search_consistency
        self._col = MilvusCollection(client, uri, collection)
        self._fingerprint = str(meta["fingerprint"])
        self._dim = int(meta["dim"])
        self._kind = str(meta["kind"])
        self._version = int(meta["version"])
        self._encoding: Encoding = meta["encoding"]
        # Serialises this store's writes (and close); other processes are not: see
        # index.milvus.writes.
        self._write_lock = threading.RLock()
        self._claims = Claims(self._col.sibling(claims_name(collection)))

    # --- create / open / close --------------------------------------------------------------

    @classmethod
    def create(
        cls,
        uri: str,
        collection: str,
        *,
        fingerprint: str,
        dim: int,
        kind: str = "flat",
        encoding: Encoding | None = None,
        search_consistency: str = "Strong",
    ) -> MilvusStore:
        """A new, empty gallery collection for vectors encoded as ``encoding`` says (default
        fp32, global); refuses one that exists."""
        check_kind(kind)
        if not isinstance(fingerprint, str) or not fingerprint:
            raise IndexStoreError("a gallery needs the fingerprint of its bundle")
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise IndexStoreError(f"dim must be a positive integer, got {dim!r}")
        if is_lite(uri):
            refuse_gpu_on_lite(kind, uri)
            Path(uri).parent.mkdir(parents=True, exist_ok=True)
        client = connect(uri, must_exist=False)
        where = location(uri, collection)
        encoding = encoding or Encoding()
        meta = {"version": VERSION, "fingerprint": fingerprint, "dim": dim, "kind": kind}
        try:
            if engine(client) == "milvus-lite":  # `milvus-lite server` behind milvus://
                refuse_gpu_on_lite(kind, where)
            # Whoever created the collection marks it: a Milvus server answers a second create
            # of the same name and schema with success, so two replicas starting together
            # would both go on to build (and on failure drop) one collection.
            token = uuid.uuid4().hex
            with errors(f"create {where}"):
                if client.has_collection(collection):
                    raise IndexStoreError(
                        f"{where} already exists: open it, or choose another collection"
                    )
                client.create_collection(
                    collection,
                    schema=collection_schema(dim, nullable_fields(client)),
                    properties=properties(meta | encoding.to_meta() | {"creator": token}),
                    **STRONG,
                )
                if creator_of(client.describe_collection(collection)) != token:
                    raise IndexStoreError(
                        f"{where} was created meanwhile by another process: open it"
                    )
            try:
                build_indexes(client, uri, collection, kind)
            except IndexStoreError:
                _drop_if_created_by(client, collection, token)
                raise
            with errors(f"create the id claims of {where}"):
                ensure_claims(client, collection)
            store = cls(client, uri, collection, meta | {"encoding": encoding}, search_consistency)
        except BaseException:
            disconnect(client, uri)
            raise
        log.info("created %s (%s, dim %d, %s)", where, kind, dim, fingerprint[:12])
        return store

    @classmethod
    def open(
        cls,
        uri: str,
        collection: str,
        *,
        fingerprint: str | None = None,
        dim: int | None = None,
        encoding: Encoding | None = None,
        search_consistency: str = "Strong",
    ) -> MilvusStore:
        """An existing gallery; a ``fingerprint``, ``dim`` or ``encoding`` given must match what
        it holds."""
        where = location(uri, collection)
        client = connect(uri, must_exist=True)
        try:
            with errors(f"open {where}"):
                if not client.has_collection(collection):
                    raise IndexStoreError(f"{where} is not a gallery: no such collection")
                described = client.describe_collection(collection)
            meta = read_meta(described, where)
            if fingerprint is not None and meta["fingerprint"] != fingerprint:
                raise IndexMismatchError(
                    f"{where} was built with bundle {meta['fingerprint'][:12]}, not "
                    f"{fingerprint[:12]}: search it with that bundle, or re-encode the gallery "
                    "into a new store"
                )
            # The encoding before the width: "holds global vectors, the bundle is used in parts
            # mode" says what to change; a width mismatch would only follow from it.
            check(meta["encoding"], encoding, where)
            if dim is not None and meta["dim"] != dim:
                raise IndexMismatchError(
                    f"{where} holds {meta['dim']}-dimensional vectors, the bundle makes {dim}"
                )
            with errors(f"load {where}"):
                client.load_collection(collection)
                ensure_claims(client, collection)  # a gallery made before claims gets them
            return cls(client, uri, collection, meta, search_consistency)
        except BaseException:
            disconnect(client, uri)
            raise

    def close(self) -> None:
        """Disconnect; with milvus-lite the last store of the file stops its engine."""
        with self._write_lock:
            client = self._col.detach()
        if client is not None:
            disconnect(client, self._col.uri)

    def __enter__(self) -> MilvusStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- what it is -------------------------------------------------------------------------

    @property
    def location(self) -> str:
        return self._col.location

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def kind(self) -> str:
        return self._kind

    @property
    def encoding(self) -> Encoding:
        """How the gallery's vectors were encoded (index/encoding.py)."""
        return self._encoding

    def stats(self) -> dict[str, Any]:
        return {
            "store": STORE,
            "engine": self._col.engine,
            "location": self.location,
            "collection": self._col.name,
            "count": self.count(),
            "dim": self._dim,
            "fingerprint": self._fingerprint,
            "kind": self._kind,
            "encoding": {"precision": self._encoding.precision, "layout": self._encoding.layout},
            "index_type": INDEX_TYPES[self._kind],
            "metric": "IP",
            "format": FORMAT,
            "version": self._version,
        }

    def refresh(self) -> bool:
        """Nothing to pick up: the server is the source of truth and every read is strong."""
        self._col.live()
        return False

    # --- reads ------------------------------------------------------------------------------

    def count(self) -> int:
        rows = self._col.call(
            "count", lambda c: c.query(self._col.name, "", ["count(*)"], **STRONG)
        )
        return int(rows[0]["count(*)"])

    def get(self, image_id: str) -> ItemMeta | None:
        rows = rows_by_id(self._col, [image_id], META_FIELDS)
        return to_item(rows[0]) if rows else None

    def get_many(self, image_ids: Sequence[str]) -> dict[str, ItemMeta]:
        """The items of the ids present: one query per 1,000 ids."""
        rows = rows_by_id(self._col, list(image_ids), META_FIELDS)
        return {r["image_id"]: to_item(r) for r in rows}

    def vectors(self, image_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """The stored vectors (float32) of the ids that exist, in the order asked."""
        wanted = list(dict.fromkeys(image_ids))
        rows = {
            r["image_id"]: r["vector"]
            for r in rows_by_id(self._col, wanted, ["image_id", "vector"])
        }
        return {i: np.asarray(rows[i], dtype=np.float32) for i in wanted if i in rows}

    def items(self) -> Iterator[ItemMeta]:
        """Every item in image_id order, a page per request (see
        :func:`index.milvus.paging.iter_items` for how it pages)."""
        return iter_items(self._col)

    def search(
        self, queries: np.ndarray, k: int, where: GalleryFilter | None = None
    ) -> list[list[Hit]]:
        """Top k by inner product per query among the items passing ``where`` (the filter runs
        inside the vector search: a true top k of the passing items, not a filtered top k)."""
        return search(self._col, self._kind, self._dim, queries, k, where, self._search_consistency)

    # --- writes (see index.milvus.writes) ---------------------------------------------------

    def plan_add(self, items: Sequence[ItemMeta]) -> tuple[list[int], dict[str, str]]:
        """What :meth:`add` would do now: the rule of :func:`index.inputs.plan_add` (which it
        runs) over what the collection holds."""
        items = list(items)
        for item in items:
            check_fields(item)
        return plan(self._col, items)

    def add(self, vectors: np.ndarray, items: Sequence[ItemMeta]) -> AddResult:
        """Add items whose bytes are new; see :mod:`index.milvus.writes` for concurrent writers.

        An image_id taken by other bytes raises :class:`ItemExistsError` and nothing is
        written. Within one request the write is atomic; a batch larger than one request
        (~16 MiB) is written in several and the earlier ones are removed if a later one fails.
        """
        items = list(items)
        for item in items:
            check_fields(item)
        x = checked_vectors(vectors, items, self._dim)
        with self._write_lock:
            return add_new(self._col, self._dim, x, items, self._claims)

    def upsert(self, vectors: np.ndarray, items: Sequence[ItemMeta]) -> None:
        """Add, or replace the vector and metadata of an image_id that exists; the rule of
        :func:`index.inputs.plan_upsert` (an id listed twice takes its last entry; bytes that
        another image_id keeps raise :class:`ItemExistsError` and nothing is written). A batch
        written in several requests (~16 MiB each) is not rolled back if a later one fails."""
        items = list(items)
        for item in items:
            check_fields(item)
        x = checked_vectors(vectors, items, self._dim)
        if not items:
            return
        with self._write_lock:
            upsert_all(self._col, self._dim, x, items)

    def remove(self, image_ids: Sequence[str]) -> list[str]:
        """Remove items; return the ids that were present (unknown ids are ignored)."""
        with self._write_lock:
            return remove_present(self._col, image_ids)

    # --- internals --------------------------------------------------------------------------

    def _settle_races(self, added: list[ItemMeta]) -> dict[str, str]:
        """Remove our new rows whose bytes another writer added meanwhile under a smaller id
        (what :meth:`add` does after writing; see :mod:`index.milvus.writes`)."""
        return settle_races(self._col, added)


def _drop_if_created_by(client: MilvusClient, collection: str, token: str) -> None:
    """Drop a collection this process created and could not finish; never another's."""
    try:
        if creator_of(client.describe_collection(collection)) == token:
            client.drop_collection(collection)
    except MilvusException:
        log.warning("could not drop %s after a failed index build", collection)
