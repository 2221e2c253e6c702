"""The gallery index as callers see it: create or open a folder, then search, add and remove.

Each piece of the work lives in its own module (``layout``, ``publish``, ``loading``,
``commit``, ``gpu_copies``, ``inputs``, ``exclusive``, ``filtered_search``); this class wires
them together for one open index. It is thread-safe, and safe against writers in other
processes: searches use an immutable snapshot of the last committed generation, writes go
through the commit protocol. It is the FAISS + SQLite :class:`GalleryStore`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from index.encoding import Encoding
from index.errors import IndexStoreError
from index.faiss import backend as faiss_backend
from index.faiss.commit import Committer, RowChanges, WriterLock
from index.faiss.exclusive import ExclusiveWriter
from index.faiss.filtered_search import search_among
from index.faiss.gpu_copies import Copier, GpuCopies
from index.faiss.layout import FORMAT, VERSION, sweep, write_info_if_stale
from index.faiss.loading import Expected, check_meta, load_committed
from index.faiss.manifest import MANIFEST_FILE, Manifest, Row
from index.faiss.publish import create_empty
from index.faiss.snapshot import Labels, Snapshot, SnapshotSlot
from index.filters import GalleryFilter
from index.inputs import as_matrix, check_item, checked_vectors, plan_add, plan_upsert
from index.items import AddResult, Hit, ItemMeta
from index.search.engine_policy import DEFAULT_POLICY, DETECTED, EnginePolicy
from index.search.exact_search import ExactSearch

log = logging.getLogger(__name__)

_PAGE = 1000
STORE = "faiss"


class GalleryIndex:
    """A persisted gallery index; thread-safe, and safe against writers in other processes."""

    def __init__(
        self,
        path: Path,
        manifest: Manifest,
        gpu: GpuCopies,
        expected: Expected,
        engine_policy: EnginePolicy = DEFAULT_POLICY,
    ) -> None:
        self.path = path
        self._manifest = manifest
        self._expected = expected
        self._gpu = gpu
        self._policy = engine_policy
        # A replaced (or refused) snapshot's GPU copy is freed under the GPU lock at once.
        self._slot = SnapshotSlot(path, retire=gpu.free)
        self._lock = WriterLock(path)
        self._committer = Committer(path, manifest, self._slot, self._snapshot, gpu.free)

    # --- create / open / close --------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: Path,
        fingerprint: str,
        dim: int,
        kind: str = "flat",
        use_gpu: str = "auto",
        *,
        gpu_fp16: bool = False,
        engine_policy: EnginePolicy = DEFAULT_POLICY,
        encoding: Encoding | None = None,
        gpu_device: int = 0,
        gpu_shards: bool = False,
        gpu_copier: Copier | None = None,
    ) -> GalleryIndex:
        """A new, empty index at ``path`` (absent or an empty folder) for vectors encoded as
        ``encoding`` says (default fp32, global)."""
        path = Path(path)
        encoding = encoding or Encoding()
        faiss_backend.check_kind(kind)
        faiss_backend.resolve_use_gpu(use_gpu, kind)
        create_empty(path, fingerprint, dim, kind, encoding.to_meta())  # written aside, renamed
        return cls.open(
            path,
            fingerprint,
            dim,
            use_gpu,
            gpu_fp16=gpu_fp16,
            engine_policy=engine_policy,
            encoding=encoding,
            gpu_device=gpu_device,
            gpu_shards=gpu_shards,
            gpu_copier=gpu_copier,
        )

    @classmethod
    def open(
        cls,
        path: Path,
        fingerprint: str | None = None,
        dim: int | None = None,
        use_gpu: str = "auto",
        *,
        gpu_fp16: bool = False,
        engine_policy: EnginePolicy = DEFAULT_POLICY,
        encoding: Encoding | None = None,
        gpu_device: int = 0,
        gpu_shards: bool = False,
        gpu_copier: Copier | None = None,
    ) -> GalleryIndex:
        """Open an index; a ``fingerprint``, ``dim`` or ``encoding`` given must match what it
        was built with. ``engine_policy`` picks the exact-search engine of a flat index on the
        CPU. The GPU copy (``use_gpu``) goes to GPU ``gpu_device`` (the encoder's), or is
        sharded over every visible GPU with ``gpu_shards``; ``gpu_copier`` stands in for
        FAISS's GPU cloner (tests run the same locking with a CPU copier)."""
        path = Path(path)
        if not path.is_dir():
            raise IndexStoreError(f"{path} is not a gallery index: no such folder")
        manifest = Manifest.open(path / MANIFEST_FILE)
        gpu = GpuCopies(use_gpu, gpu_fp16, gpu_device, gpu_shards, gpu_copier)
        expected = Expected(fingerprint, dim, encoding)
        index = cls(path, manifest, gpu, expected, engine_policy)
        try:
            check_meta(path, manifest.meta(), index._expected)
            index._gpu.check(manifest.meta()["kind"])
            index._slot.install(index._load())
            index._tidy_if_idle()
        except BaseException:
            index.close()
            raise
        return index

    def close(self) -> None:
        """Release files and GPU memory; searches already running finish on their snapshot."""
        self._slot.clear()
        self._manifest.close()
        self._lock.close()
        self._gpu.release()

    def __enter__(self) -> GalleryIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- reads ------------------------------------------------------------------------------

    @property
    def location(self) -> str:
        return str(self.path)

    @property
    def fingerprint(self) -> str:
        return self._current().fingerprint

    @property
    def dim(self) -> int:
        return self._current().dim

    @property
    def encoding(self) -> Encoding:
        """How the gallery's vectors were encoded (index/encoding.py)."""
        return self._current().encoding

    def search(
        self, queries: np.ndarray, k: int, where: GalleryFilter | None = None
    ) -> list[list[Hit]]:
        """Top-k hits per query, best first, from one consistent committed generation; with
        ``where``, the top k among the items that pass it."""
        snap = self._current()
        if isinstance(k, bool) or int(k) < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if where is not None and not isinstance(where, GalleryFilter):
            raise IndexStoreError(f"where must be a GalleryFilter, got {type(where).__name__}")
        q = as_matrix(queries, snap.dim, "queries")
        if len(q) == 0:
            return []
        if snap.master.ntotal == 0:
            return [[] for _ in range(len(q))]
        if where is not None and not where.is_empty:
            return self._search_where(snap, q, int(k), where)
        k = min(int(k), snap.master.ntotal)
        if snap.exact is not None:  # the whole batch in one engine call
            scores, ids = snap.exact.search(q, k)
        else:
            scores, ids = self._gpu.search(snap, q, k)
        return _hits(snap.labels, scores, ids)

    def _search_where(
        self, snap: Snapshot, q: np.ndarray, k: int, where: GalleryFilter
    ) -> list[list[Hit]]:
        generation, allowed = self._manifest.ids_where(where)
        if generation != snap.generation:
            # Another process committed after this snapshot (refresh() catches up): judge by
            # the newer metadata, among the items this snapshot holds.
            held = np.fromiter(snap.labels, dtype=np.int64, count=len(snap.labels))
            allowed = allowed[np.isin(allowed, held)]
        if not len(allowed):
            return [[] for _ in range(len(q))]
        # On the CPU master even when a GPU copy exists: FAISS GPU indexes take no ID selector.
        scores, ids = search_among(snap.master, snap.kind, q, min(k, len(allowed)), allowed)
        return _hits(snap.labels, scores, ids)

    def get(self, image_id: str) -> ItemMeta | None:
        """The manifest row for ``image_id`` (the latest commit, even from another process)."""
        self._current()
        return self._manifest.get(image_id)

    def get_many(self, image_ids: Sequence[str]) -> dict[str, ItemMeta]:
        """The manifest rows of the ids present, in one batched read."""
        self._current()
        return self._manifest.get_many(image_ids)

    def items(self) -> Iterator[ItemMeta]:
        """Every item in faiss-id order, read a page at a time."""
        self._current()
        after = -1
        while page := self._manifest.page(after, _PAGE):
            for row in page:
                yield row.item
            after = page[-1].id

    def vectors(self, image_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """The stored vectors of the ids that exist, read back from the CPU master."""
        snap = self._current()
        found = self._manifest.id_by_image_id(list(image_ids))
        # Only ids this snapshot holds under the same image (the manifest may be newer).
        pairs = [
            (image_id, found[image_id])
            for image_id in dict.fromkeys(image_ids)
            if image_id in found and snap.labels.get(found[image_id], ("",))[0] == image_id
        ]
        rows = faiss_backend.reconstruct(snap.master, np.array([i for _, i in pairs], np.int64))
        return {image_id: rows[n] for n, (image_id, _) in enumerate(pairs)}

    def count(self) -> int:
        return int(self._current().master.ntotal)

    def stats(self) -> dict[str, Any]:
        snap = self._current()
        return {
            "store": STORE,
            "path": str(self.path),
            "count": int(snap.master.ntotal),
            "dim": snap.dim,
            "fingerprint": snap.fingerprint,
            "kind": snap.kind,
            "format": FORMAT,
            "version": VERSION,
            "generation": snap.generation,
            "encoding": {"precision": snap.encoding.precision, "layout": snap.encoding.layout},
            "gpu": snap.on_gpu,
            "filtered_search": "cpu",  # FAISS GPU indexes take no ID selector
            "search_engine": _engine_stats(snap),
        }

    def refresh(self) -> bool:
        """Load a generation another process committed; return whether anything changed."""
        snap = self._current()
        if self._manifest.generation() == snap.generation:
            return False
        return self._slot.install(self._load())

    # --- writes -----------------------------------------------------------------------------

    def plan_add(self, items: Sequence[ItemMeta]) -> tuple[list[int], dict[str, str]]:
        """What :meth:`add` would do with ``items`` now, without encoding or writing anything:
        (positions it would add, image_id → the item it duplicates). Lets a caller skip the
        encoder for bytes the index already holds; :meth:`add` applies the same rule again
        under its write lock, so a race between the two only costs an encode."""
        for item in items:
            check_item(item)
        return plan_add(self._manifest, list(items))

    def add(self, vectors: np.ndarray, items: Sequence[ItemMeta]) -> AddResult:
        """Add items atomically and durably; files already present (same sha256) are skipped.

        An image_id already taken by different bytes raises :class:`ItemExistsError` and nothing
        is written.
        """
        items = list(items)
        for item in items:
            check_item(item)
        with self._writing() as snap:
            x = checked_vectors(vectors, items, snap.dim)
            keep, duplicates = plan_add(self._manifest, items)
            if not keep:
                return AddResult([], duplicates)
            ids = np.arange(snap.next_id, snap.next_id + len(keep), dtype=np.int64)
            master = faiss_backend.with_added(snap.master, snap.kind, x[keep], ids)
            rows = [Row(int(i), items[j]) for i, j in zip(ids, keep, strict=True)]
            labels = dict(snap.labels)
            labels.update({r.id: (r.item.image_id, r.item.person_id) for r in rows})
            meta = {"next_id": int(ids[-1]) + 1}
            self._committer.commit(snap, master, labels, RowChanges(inserts=rows), meta)
        log.info("added %d items (%d duplicates) to %s", len(keep), len(duplicates), self.path)
        return AddResult([items[j].image_id for j in keep], duplicates)

    def upsert(self, vectors: np.ndarray, items: Sequence[ItemMeta]) -> None:
        """Add items, or replace the vector and metadata of image_ids already present (they keep
        their faiss ids); atomic and durable, one new generation. An image_id listed twice
        takes its last entry; bytes another image_id keeps raise :class:`ItemExistsError`."""
        items = list(items)
        for item in items:
            check_item(item)
        with self._writing() as snap:
            x = checked_vectors(vectors, items, snap.dim)
            if not items:
                return
            keep, present = plan_upsert(self._manifest, items)
            fresh = iter(range(snap.next_id, snap.next_id + len(keep)))
            ids = [present.get(items[j].image_id) for j in keep]
            ids = [next(fresh) if i is None else i for i in ids]
            replaced = np.array(sorted(present.values()), dtype=np.int64)
            master = faiss_backend.with_replaced(
                snap.master, snap.kind, x[keep], np.array(ids, np.int64), replaced
            )
            rows = [Row(i, items[j]) for i, j in zip(ids, keep, strict=True)]
            labels = dict(snap.labels)
            labels.update({r.id: (r.item.image_id, r.item.person_id) for r in rows})
            meta = {"next_id": max(snap.next_id, max(ids) + 1)}
            changes = RowChanges(deletes=replaced.tolist(), inserts=rows)
            self._committer.commit(snap, master, labels, changes, meta)
        log.info("upserted %d items (%d replaced) in %s", len(keep), len(present), self.path)

    def remove(self, image_ids: Sequence[str]) -> list[str]:
        """Remove items atomically; return the ids that were present (unknown ids are ignored)."""
        wanted = list(dict.fromkeys(image_ids))
        with self._writing() as snap:
            found = self._manifest.id_by_image_id(wanted)
            if not found:
                return []
            gone = set(found.values())
            master = faiss_backend.with_removed(snap.master, snap.kind, np.array(sorted(gone)))
            labels = {i: v for i, v in snap.labels.items() if i not in gone}
            self._committer.commit(snap, master, labels, RowChanges(deletes=sorted(gone)))
            self._manifest.forget_removed()
        log.info("removed %d items from %s", len(found), self.path)
        return [i for i in wanted if i in found]

    @contextmanager
    def exclusive(self) -> Iterator[ExclusiveWriter]:
        """Be the one writer for the block, starting from the latest commit.

        Other writers (threads and processes) wait until the block ends; searches go on. Read
        the committed rows and commit their replacement through the writer it yields.
        """
        with self._writing() as snap:
            writer = ExclusiveWriter(self._manifest, self._committer, snap)
            try:
                yield writer
            finally:
                writer.close()

    def replace_all(
        self,
        vectors: np.ndarray,
        rows: Sequence[Row],
        *,
        fingerprint: str | None = None,
        dim: int | None = None,
        kind: str | None = None,
        next_id: int | None = None,
        encoding: Encoding | None = None,
    ) -> None:
        """Commit a new generation holding exactly ``rows``; see
        :meth:`ExclusiveWriter.replace_all`."""
        with self.exclusive() as writer:
            writer.replace_all(
                vectors,
                rows,
                fingerprint=fingerprint,
                dim=dim,
                kind=kind,
                next_id=next_id,
                encoding=encoding,
            )

    # --- internals --------------------------------------------------------------------------

    def _current(self) -> Snapshot:
        return self._slot.current()

    def _load(self) -> Snapshot:
        committed = load_committed(self.path, self._manifest, self._expected)
        return self._snapshot(
            committed.meta, committed.generation, committed.master, committed.labels
        )

    def _snapshot(
        self, meta: Mapping[str, Any], generation: int, master: faiss.Index, labels: Labels
    ) -> Snapshot:
        """The searchable form of a generation (with its GPU copy when searching on GPU)."""
        kind = str(meta["kind"])
        encoding = Encoding.from_meta(meta)
        gpu = self._gpu.copy(master, kind)  # IndexStoreError if the GPU cannot take it
        exact = ExactSearch(master, self._policy) if kind == "flat" and gpu is None else None
        return Snapshot(
            generation=generation,
            fingerprint=str(meta["fingerprint"]),
            dim=int(meta["dim"]),
            kind=kind,
            next_id=int(meta["next_id"]),
            master=master,
            gpu=gpu,
            labels=labels,
            exact=exact,
            encoding=encoding,
        )

    @contextmanager
    def _writing(self) -> Iterator[Snapshot]:
        """Be the one writer (threads and processes) and start from the latest commit."""
        self._current()
        with self._lock.hold():
            self._manifest.upgrade()  # an index made before per-image metadata gets its columns
            snap = self._current()
            if self._manifest.generation() != snap.generation:
                self._slot.install(self._load())
                snap = self._current()
            sweep(self.path, snap.generation)
            yield snap

    def _tidy_if_idle(self) -> None:
        """On open: if no writer is busy, remove leftovers of crashed writes, fix index.json."""
        with self._lock.hold_if_free() as held:
            if not held:
                return
            snap = self._current()
            if self._manifest.generation() == snap.generation:
                sweep(self.path, snap.generation)
                write_info_if_stale(self.path, snap.info())


def _engine_stats(snap: Snapshot) -> dict[str, Any]:
    """Which engine answers unfiltered searches of this snapshot (filtered ones: FAISS, CPU)."""
    if snap.exact is not None:
        return snap.exact.describe()
    name = "faiss-gpu" if snap.on_gpu else "faiss-cpu"
    engine = f"{name}-{snap.kind}"
    why = "a GPU copy of the index" if snap.on_gpu else f"an approximate ({snap.kind}) index"
    return {"engine": {"batch_1": engine, "batch_64": engine}, "reason": f"{DETECTED}: {why}"}


def _hits(labels: Labels, scores: np.ndarray, ids: np.ndarray) -> list[list[Hit]]:
    return [
        [Hit(*labels[int(i)], float(s)) for s, i in zip(srow, irow, strict=True) if i >= 0]
        for srow, irow in zip(scores, ids, strict=True)
    ]
