"""The commit protocol: how one writer turns the current generation into the next.

A crash at any point leaves the old or the new state, never a mix:
    1. build the new master in memory (copy-on-write) and, when searching on GPU, its GPU copy;
    2. write ``vectors.<gen+1>.faiss`` durably (temp file, fsync, rename, fsync folder);
    3. one SQLite transaction writes the rows and ``generation = gen+1``: the commit point;
    4. swap the in-memory snapshot, rewrite index.json, delete the older faiss files.
A file of an uncommitted generation (a writer died between 2 and 3) is deleted by the next
process that takes the lock. Writers are one at a time, across threads and processes.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss

from index.errors import IndexStoreError
from index.faiss import backend as faiss_backend
from index.faiss.layout import LOCK_FILE, sweep, vectors_file, write_info_if_stale
from index.faiss.manifest import Manifest, Row
from index.faiss.snapshot import Labels, Snapshot, SnapshotSlot

# Makes the searchable snapshot of a generation: (meta, generation, master, labels) -> Snapshot.
SnapshotBuilder = Callable[[Mapping[str, Any], int, faiss.Index, Labels], Snapshot]


class WriterLock:
    """One writer at a time: a thread lock inside the process, ``flock`` on ``.lock`` across."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._threads = threading.Lock()
        self._fd: int | None = None

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Wait for the lock and hold it for the block."""
        with self._threads:
            fd = self._file()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    @contextmanager
    def hold_if_free(self) -> Iterator[bool]:
        """Hold the lock for the block if nobody does and it can be taken at all (read-only
        folders cannot); yield whether it is held."""
        fd = self._file_if_writable()
        if fd is None or not _try_flock(fd):
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _file(self) -> int:
        if self._fd is None:
            try:
                self._fd = os.open(self._folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as err:
                raise IndexStoreError(f"{self._folder} cannot be written: {err}") from None
        return self._fd

    def _file_if_writable(self) -> int | None:
        try:
            return self._file()
        except IndexStoreError:
            return None


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@dataclass(frozen=True)
class RowChanges:
    """The manifest rows a commit changes, applied in this order in one transaction."""

    deletes: Sequence[int] = ()
    sha_updates: Sequence[tuple[int, str]] = ()
    inserts: Sequence[Row] = ()


class Committer:
    """Commits new generations of one index folder; call only while holding its WriterLock."""

    def __init__(
        self,
        folder: Path,
        manifest: Manifest,
        slot: SnapshotSlot,
        build: SnapshotBuilder,
        discard: Callable[[Snapshot], None] = lambda s: None,
    ) -> None:
        self._folder = folder
        self._manifest = manifest
        self._slot = slot
        self._build = build
        self._discard = discard  # frees a built snapshot that is never installed (GPU copy)

    def commit(
        self,
        base: Snapshot,
        master: faiss.Index,
        labels: Labels,
        changes: RowChanges,
        meta: Mapping[str, Any] | None = None,
    ) -> Snapshot:
        """Write the generation after ``base`` (see the module docstring for the protocol)."""
        generation = base.generation + 1
        values = _next_meta(base, master, generation, meta or {})
        # Built before anything is written, so a failing GPU copy leaves the index untouched.
        new = self._build(values, generation, master, labels)
        target = self._folder / vectors_file(generation)
        try:
            values["faiss_bytes"] = faiss_backend.write(master, target)
            try:
                self._manifest.commit(
                    base.generation, values, changes.inserts, changes.deletes, changes.sha_updates
                )
            except BaseException:
                self._discard_if_uncommitted(target, generation)
                raise
        except BaseException:
            self._discard(new)
            raise
        self._slot.install(new)
        write_info_if_stale(self._folder, new.info())
        sweep(self._folder, generation)
        return new

    def _discard_if_uncommitted(self, target: Path, generation: int) -> None:
        try:
            committed = self._manifest.generation() == generation
        except IndexStoreError:
            committed = True  # cannot tell: keep the file, the next writer sweeps it if stale
        if not committed:
            target.unlink(missing_ok=True)


def _next_meta(
    base: Snapshot, master: faiss.Index, generation: int, meta: Mapping[str, Any]
) -> dict[str, Any]:
    """The manifest meta of the next generation: ``base``'s, overridden by ``meta``."""
    return {
        "fingerprint": base.fingerprint,
        "dim": base.dim,
        "kind": base.kind,
        "next_id": base.next_id,
        **base.encoding.to_meta(),
        **meta,
        "generation": generation,
        "count": int(master.ntotal),
    }
