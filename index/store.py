"""The gallery index: a FAISS CPU master, its SQLite manifest and ``index.json`` in one folder.

    manifest.sqlite      items (faiss id ↔ image_id, person_id, source path, sha256, added time)
                         and meta (format, version, fingerprint, dim, kind, generation, ...)
    vectors.<gen>.faiss  the CPU master of the committed generation
    index.json           a readable summary; the manifest wins when they disagree
    .lock                held (flock) by the one process writing at a time

Commit protocol; a crash at any point leaves the old or the new state, never a mix:
    1. build the new master in memory (copy-on-write) and, when searching on GPU, its GPU copy;
    2. write ``vectors.<gen+1>.faiss`` durably (temp file, fsync, rename, fsync folder);
    3. one SQLite transaction writes the rows and ``generation = gen+1``: the commit point;
    4. swap the in-memory snapshot, rewrite index.json, delete the older faiss files.
A reader loads the generation the manifest names inside one read transaction; a file that has
vanished by then means a newer commit, so it retries. A file of an uncommitted generation (a
writer died between 2 and 3) is deleted by the next process that takes the lock.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import faiss
import numpy as np

from bundle.fsio import fsync_dir, temp_dir, write_json_atomic
from index import faiss_backend
from index.errors import IndexCorruptError, IndexMismatchError, IndexStoreError, ItemExistsError
from index.items import AddResult, Hit, ItemMeta
from index.manifest import MANIFEST_FILE, Manifest, Row

if TYPE_CHECKING:
    from bundle.encoders import Bundle

__all__ = [
    "AddResult",
    "GalleryIndex",
    "Hit",
    "IndexCorruptError",
    "IndexMismatchError",
    "IndexStoreError",
    "ItemExistsError",
    "ItemMeta",
    "rebuild",
    "staging",
]

log = logging.getLogger(__name__)

FORMAT = "tps-gallery-index"
VERSION = 1
INFO_FILE = "index.json"
LOCK_FILE = ".lock"
_VECTORS = re.compile(r"^vectors\.(\d+)\.faiss$")
_TEMP = re.compile(r"^\.(vectors\.\d+\.faiss|index\.json)\..*\.tmp$")
_LOAD_ATTEMPTS = 20
_NORM_TOLERANCE = 1e-2
_PAGE = 1000


def vectors_file(generation: int) -> str:
    return f"vectors.{generation}.faiss"


@dataclass(frozen=True)
class _Snapshot:
    """One committed generation, immutable: searches keep using it while a write swaps in the
    next one."""

    generation: int
    fingerprint: str
    dim: int
    kind: str
    next_id: int
    master: faiss.Index
    searcher: faiss.Index  # the GPU copy, or the master itself
    on_gpu: bool
    labels: dict[int, tuple[str, str | None]]  # faiss id -> (image_id, person_id)


def _short(fingerprint: str) -> str:
    return fingerprint[:12]


class GalleryIndex:
    """A persisted gallery index; thread-safe, and safe against writers in other processes."""

    def __init__(
        self,
        path: Path,
        manifest: Manifest,
        use_gpu: str,
        fingerprint: str | None,
        dim: int | None,
        gpu_fp16: bool,
    ) -> None:
        self.path = path
        self._manifest = manifest
        self._use_gpu = use_gpu
        self._expected = (fingerprint, dim)
        self._gpu_fp16 = gpu_fp16
        self._gpu: faiss_backend.GpuCopier | None = None
        self._write_lock = threading.Lock()
        self._swap_lock = threading.Lock()
        self._gpu_lock = threading.Lock()  # GPU resources are not safe for concurrent searches
        self._lock_fd: int | None = None
        self._snap: _Snapshot | None = None
        self._warned_k = False

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
    ) -> GalleryIndex:
        """A new, empty index at ``path`` (absent or an empty folder)."""
        path = Path(path)
        faiss_backend.check_kind(kind)
        faiss_backend.resolve_use_gpu(use_gpu, kind)
        if not isinstance(fingerprint, str) or not fingerprint:
            raise IndexStoreError("an index needs the bundle fingerprint it is built for")
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise IndexStoreError(f"dimension must be a positive integer, got {dim!r}")
        check_new_location(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_dir(path.parent, f".{path.name}.creating-")
        try:
            size = faiss_backend.write(faiss_backend.new_index(kind, dim), tmp / vectors_file(0))
            meta = {
                "format": FORMAT,
                "version": VERSION,
                "fingerprint": fingerprint,
                "dim": dim,
                "kind": kind,
                "generation": 0,
                "next_id": 0,
                "faiss_bytes": size,
                "count": 0,
                "created_at": time.time(),
            }
            Manifest.create(tmp / MANIFEST_FILE, meta).close()
            write_json_atomic(tmp / INFO_FILE, _info(meta))
            fsync_dir(tmp)
            try:
                os.replace(tmp, path)  # Linux renames over an empty folder, never a full one
            except OSError as err:
                raise IndexStoreError(f"cannot create an index at {path}: {err}") from None
            fsync_dir(path.parent)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log.debug(
            "created %s index at %s (dim %d, bundle %s)", kind, path, dim, _short(fingerprint)
        )
        return cls.open(path, fingerprint, dim, use_gpu, gpu_fp16=gpu_fp16)

    @classmethod
    def open(
        cls,
        path: Path,
        fingerprint: str | None = None,
        dim: int | None = None,
        use_gpu: str = "auto",
        *,
        gpu_fp16: bool = False,
    ) -> GalleryIndex:
        """Open an index; a ``fingerprint`` or ``dim`` given must match what it was built with."""
        path = Path(path)
        if not path.is_dir():
            raise IndexStoreError(f"{path} is not a gallery index: no such folder")
        manifest = Manifest.open(path / MANIFEST_FILE)
        index = cls(path, manifest, use_gpu, fingerprint, dim, gpu_fp16)
        try:
            index._check_meta(manifest.meta())
            faiss_backend.resolve_use_gpu(use_gpu, manifest.meta()["kind"])
            index._install(index._load())
            index._tidy_if_idle()
        except BaseException:
            index.close()
            raise
        return index

    def close(self) -> None:
        """Release files and GPU memory; searches already running finish on their snapshot."""
        with self._swap_lock:
            self._snap = None
        self._manifest.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        self._gpu = None

    def __enter__(self) -> GalleryIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- reads ------------------------------------------------------------------------------

    def search(self, queries: np.ndarray, k: int) -> list[list[Hit]]:
        """Top-k hits per query, best first, from one consistent committed generation."""
        snap = self._current()
        if isinstance(k, bool) or int(k) < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        q = self._as_matrix(queries, snap.dim, "queries")
        if len(q) == 0:
            return []
        if snap.master.ntotal == 0:
            return [[] for _ in range(len(q))]
        k = min(int(k), snap.master.ntotal)
        if snap.on_gpu:
            if k > faiss_backend.GPU_MAX_K:
                if not self._warned_k:
                    log.warning(
                        "k=%d is above the GPU limit; returning the top %d",
                        k,
                        faiss_backend.GPU_MAX_K,
                    )
                    self._warned_k = True
                k = faiss_backend.GPU_MAX_K
            with self._gpu_lock:
                scores, ids = snap.searcher.search(q, k)
        else:
            scores, ids = snap.searcher.search(q, k)
        labels = snap.labels
        return [
            [Hit(*labels[int(i)], float(s)) for s, i in zip(srow, irow, strict=True) if i >= 0]
            for srow, irow in zip(scores, ids, strict=True)
        ]

    def get(self, image_id: str) -> ItemMeta | None:
        """The manifest row for ``image_id`` (the latest commit, even from another process)."""
        self._current()
        return self._manifest.get(image_id)

    def items(self) -> Iterator[ItemMeta]:
        """Every item in faiss-id order, read a page at a time."""
        self._current()
        after = -1
        while page := self._manifest.page(after, _PAGE):
            for row in page:
                yield row.item
            after = page[-1].id

    def stats(self) -> dict[str, Any]:
        snap = self._current()
        return {
            "path": str(self.path),
            "count": int(snap.master.ntotal),
            "dim": snap.dim,
            "fingerprint": snap.fingerprint,
            "kind": snap.kind,
            "format": FORMAT,
            "version": VERSION,
            "generation": snap.generation,
            "gpu": snap.on_gpu,
        }

    def refresh(self) -> bool:
        """Load a generation another process committed; return whether anything changed."""
        snap = self._current()
        if self._manifest.generation() == snap.generation:
            return False
        return self._install(self._load())

    # --- writes -----------------------------------------------------------------------------

    def add(self, vectors: np.ndarray, items: Sequence[ItemMeta]) -> AddResult:
        """Add items atomically and durably; files already present (same sha256) are skipped.

        An image_id already taken by different bytes raises :class:`ItemExistsError` and nothing
        is written.
        """
        items = list(items)
        for item in items:
            _check_item(item)
        with self._writing() as snap:
            x = self._as_matrix(vectors, snap.dim, "vectors")
            if len(x) != len(items):
                raise IndexStoreError(f"{len(x)} vectors for {len(items)} items")
            _check_normalised(x)
            keep, duplicates = self._plan_add(items)
            if not keep:
                return AddResult([], duplicates)
            ids = np.arange(snap.next_id, snap.next_id + len(keep), dtype=np.int64)
            master = faiss_backend.with_added(snap.master, snap.kind, x[keep], ids)
            rows = [Row(int(i), items[j]) for i, j in zip(ids, keep, strict=True)]
            labels = dict(snap.labels)
            labels.update({r.id: (r.item.image_id, r.item.person_id) for r in rows})
            self._commit(snap, master, labels, inserts=rows, meta={"next_id": int(ids[-1]) + 1})
        log.info("added %d items (%d duplicates) to %s", len(keep), len(duplicates), self.path)
        return AddResult([items[j].image_id for j in keep], duplicates)

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
            self._commit(snap, master, labels, deletes=sorted(gone))
        log.info("removed %d items from %s", len(found), self.path)
        return [i for i in wanted if i in found]

    # --- internals --------------------------------------------------------------------------

    def _current(self) -> _Snapshot:
        snap = self._snap
        if snap is None:
            raise IndexStoreError(f"index {self.path} is closed")
        return snap

    def _check_meta(self, meta: dict[str, str]) -> None:
        if meta.get("format") != FORMAT:
            raise IndexCorruptError(
                f"{self.path}: not a gallery index (format {meta.get('format')!r})"
            )
        if meta.get("version") != str(VERSION):
            raise IndexStoreError(
                f"{self.path}: index format version {meta.get('version')}, this code reads "
                f"version {VERSION}; rebuild the index"
            )
        fingerprint, dim = self._expected
        if fingerprint is not None and meta["fingerprint"] != fingerprint:
            raise IndexMismatchError(
                f"{self.path} was built with bundle {_short(meta['fingerprint'])}, not "
                f"{_short(fingerprint)}: search it with that bundle, or re-encode the gallery "
                "with `python -m index rebuild`"
            )
        if dim is not None and int(meta["dim"]) != dim:
            raise IndexMismatchError(
                f"{self.path} holds {meta['dim']}-dimensional vectors, the bundle makes {dim}"
            )

    def _load(self) -> _Snapshot:
        """Read the committed generation: manifest rows and faiss file that belong together."""
        for _ in range(_LOAD_ATTEMPTS):
            with self._manifest.snapshot():
                meta = self._manifest.meta()
                generation = int(meta["generation"])
                name = vectors_file(generation)
                try:
                    handle = open(self.path / name, "rb")  # noqa: SIM115 - closed below
                except FileNotFoundError:
                    handle = None
                else:
                    labels = self._manifest.labels()
            if handle is None:
                if self._manifest.generation() == generation:
                    raise IndexCorruptError(
                        f"{self.path / name} is missing but the manifest's committed generation "
                        f"{generation} needs it; restore it from a backup or rebuild the index"
                    )
                continue  # a newer commit deleted it: read the manifest again
            with handle:
                self._check_meta(meta)
                size, recorded = os.fstat(handle.fileno()).st_size, int(meta.get("faiss_bytes", -1))
                if size != recorded:
                    raise IndexCorruptError(
                        f"{self.path / name} is {size} bytes but the manifest recorded "
                        f"{recorded}: the file is truncated or was replaced"
                    )
                master = faiss_backend.read(handle, name, meta["kind"], int(meta["dim"]))
            _check_consistent(master, labels, self.path / name)
            return self._snapshot(meta, generation, master, labels)
        raise IndexStoreError(f"{self.path} kept changing while it was being read; retry")

    def _snapshot(
        self,
        meta: dict[str, Any],
        generation: int,
        master: faiss.Index,
        labels: dict[int, tuple[str, str | None]],
    ) -> _Snapshot:
        kind = str(meta["kind"])
        on_gpu = faiss_backend.resolve_use_gpu(self._use_gpu, kind)
        searcher = master
        if on_gpu:
            if self._gpu is None:
                self._gpu = faiss_backend.GpuCopier(fp16=self._gpu_fp16)
            searcher = self._gpu.copy(master)
        return _Snapshot(
            generation=generation,
            fingerprint=str(meta["fingerprint"]),
            dim=int(meta["dim"]),
            kind=kind,
            next_id=int(meta["next_id"]),
            master=master,
            searcher=searcher,
            on_gpu=on_gpu,
            labels=labels,
        )

    def _install(self, snap: _Snapshot) -> bool:
        """Swap in ``snap`` unless a newer generation is already in place."""
        with self._swap_lock:
            if self._snap is not None and snap.generation <= self._snap.generation:
                return False
            self._snap = snap
            return True

    def _lock_file(self) -> int:
        if self._lock_fd is None:
            try:
                self._lock_fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as err:
                raise IndexStoreError(f"{self.path} cannot be written: {err}") from None
        return self._lock_fd

    @contextmanager
    def _writing(self) -> Iterator[_Snapshot]:
        """Be the one writer (threads and processes) and start from the latest commit."""
        self._current()
        with self._write_lock:
            fd = self._lock_file()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                snap = self._current()
                if self._manifest.generation() != snap.generation:
                    self._install(self._load())
                    snap = self._current()
                self._sweep(snap.generation)
                yield snap
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _tidy_if_idle(self) -> None:
        """On open: if no writer is busy, remove leftovers of crashed writes, fix index.json."""
        try:
            fd = self._lock_file()
        except IndexStoreError:
            return  # read-only location: nothing to tidy
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return
        try:
            snap = self._current()
            if self._manifest.generation() == snap.generation:
                self._sweep(snap.generation)
                self._write_info_if_stale(snap)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def _sweep(self, generation: int) -> None:
        """Delete faiss files of other generations and temp files. Only under the write lock."""
        removed = False
        for entry in self.path.iterdir():
            match = _VECTORS.match(entry.name)
            stale = (match is not None and int(match.group(1)) != generation) or bool(
                _TEMP.match(entry.name)
            )
            if stale:
                entry.unlink(missing_ok=True)
                removed = True
        if removed:
            fsync_dir(self.path)

    def _commit(
        self,
        snap: _Snapshot,
        master: faiss.Index,
        labels: dict[int, tuple[str, str | None]],
        *,
        inserts: Sequence[Row] = (),
        deletes: Sequence[int] = (),
        sha_updates: Sequence[tuple[int, str]] = (),
        meta: dict[str, Any] | None = None,
    ) -> _Snapshot:
        """Write the next generation (see the module docstring for the protocol)."""
        generation = snap.generation + 1
        values: dict[str, Any] = {
            "fingerprint": snap.fingerprint,
            "dim": snap.dim,
            "kind": snap.kind,
            "next_id": snap.next_id,
            **(meta or {}),
            "generation": generation,
            "count": int(master.ntotal),
        }
        # Built before anything is written, so a failing GPU copy leaves the index untouched.
        new = self._snapshot(values, generation, master, labels)
        target = self.path / vectors_file(generation)
        values["faiss_bytes"] = faiss_backend.write(master, target)
        try:
            self._manifest.commit(snap.generation, values, inserts, deletes, sha_updates)
        except BaseException:
            try:
                committed = self._manifest.generation() == generation
            except IndexStoreError:
                committed = True  # cannot tell: keep the file, the next writer sweeps it if stale
            if not committed:
                target.unlink(missing_ok=True)
            raise
        self._install(new)
        self._write_info_if_stale(new)
        self._sweep(generation)
        return new

    def _write_info_if_stale(self, snap: _Snapshot) -> None:
        info = _info(
            {
                "fingerprint": snap.fingerprint,
                "dim": snap.dim,
                "kind": snap.kind,
                "count": int(snap.master.ntotal),
                "generation": snap.generation,
            }
        )
        path = self.path / INFO_FILE
        try:
            if path.is_file() and _read_json(path) == info:
                return
            write_json_atomic(path, info)
        except OSError as err:
            # Informational only: the commit already happened, so this must not fail the write.
            log.warning("could not update %s: %s", path, err)

    def _plan_add(self, items: list[ItemMeta]) -> tuple[list[int], dict[str, str]]:
        """Which items to add, and which are duplicates of what (in the index or this batch)."""
        taken = self._manifest.sha_by_image_id([i.image_id for i in items])
        owners = self._manifest.image_id_by_sha([i.sha256 for i in items])
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

    @staticmethod
    def _as_matrix(values: np.ndarray, dim: int, what: str) -> np.ndarray:
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


# --- helpers ----------------------------------------------------------------------------------


def _info(meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "fingerprint": str(meta["fingerprint"]),
        "dim": int(meta["dim"]),
        "kind": str(meta["kind"]),
        "count": int(meta["count"]),
        "generation": int(meta["generation"]),
        "vectors_file": vectors_file(int(meta["generation"])),
    }


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except ValueError:
        return None


def _check_item(item: ItemMeta) -> None:
    if not isinstance(item, ItemMeta):
        raise IndexStoreError(f"items must be ItemMeta, got {type(item).__name__}")
    if not isinstance(item.image_id, str) or not item.image_id:
        raise IndexStoreError(f"image_id must be a non-empty string, got {item.image_id!r}")
    if not isinstance(item.sha256, str) or not item.sha256:
        raise IndexStoreError(f"item {item.image_id!r} has no sha256")
    if item.person_id is not None and not isinstance(item.person_id, str):
        raise IndexStoreError(f"item {item.image_id!r}: person_id must be a string or None")


def _check_normalised(x: np.ndarray) -> None:
    norms = np.linalg.norm(x, axis=1)
    bad = np.flatnonzero(np.abs(norms - 1.0) > _NORM_TOLERANCE)
    if len(bad):
        raise IndexStoreError(
            f"vectors must be L2-normalised: row {bad[0]} has norm {norms[bad[0]]:.4f}"
        )


def _check_consistent(
    master: faiss.Index, labels: dict[int, tuple[str, str | None]], path: Path
) -> None:
    ids = np.sort(faiss_backend.ids_of(master))
    expected = np.sort(np.fromiter(labels.keys(), dtype=np.int64, count=len(labels)))
    if len(ids) != master.ntotal or not np.array_equal(ids, expected):
        raise IndexCorruptError(
            f"{path} holds {master.ntotal} vectors but the manifest lists {len(labels)} items "
            "with other ids: the files do not belong together; rebuild the index"
        )


def check_new_location(path: Path) -> None:
    """An index may be created where nothing is, or in an empty folder."""
    if (path / MANIFEST_FILE).exists():
        raise IndexStoreError(f"{path} already holds an index")
    if path.is_dir() and any(path.iterdir()):
        raise IndexStoreError(f"{path} exists and is not empty")
    if path.exists() and not path.is_dir():
        raise IndexStoreError(f"{path} exists and is not a folder")


@contextmanager
def staging(path: Path) -> Iterator[Path]:
    """A private location whose index becomes ``path`` only when the block succeeds."""
    path = Path(path)
    check_new_location(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_dir(path.parent, f".{path.name}.staging-")
    try:
        yield tmp / "index"
        check_new_location(path)
        try:
            os.replace(tmp / "index", path)
        except OSError as err:
            raise IndexStoreError(f"cannot publish the index at {path}: {err}") from None
        fsync_dir(path.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def rebuild(
    path: Path,
    bundle: Bundle,
    out: Path | None = None,
    *,
    kind: str | None = None,
    batch_size: int = 64,
    workers: int = 2,
    progress: bool = True,
    drop_unreadable: bool = False,
    use_gpu: str = "auto",
) -> GalleryIndex:
    """Re-encode every manifest source path with ``bundle`` and swap the result in atomically.

    In place (``out=None``) the new vectors, fingerprint and dimension are one new generation:
    readers see the old index or the new one. With ``out`` the original is left untouched.
    Items keep their ids. Unreadable sources fail the rebuild unless ``drop_unreadable``.
    """
    from index.rebuild import rebuild_index  # encoding needs torch; searching does not

    return rebuild_index(
        Path(path),
        bundle,
        None if out is None else Path(out),
        kind=kind,
        batch_size=batch_size,
        workers=workers,
        progress=progress,
        drop_unreadable=drop_unreadable,
        use_gpu=use_gpu,
    )
