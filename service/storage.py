"""Uploaded image files on disk, named by their SHA-256 (never by anything a client sent).

A write puts the files on disk first and commits the gallery store's rows after; a delete
commits first and removes the file after. A process killed in between leaves a file that no
gallery item names (an orphan: never served, since only files the store lists are).

Every writer holds an exclusive ``flock`` on the folder from its first file to its commit (a
delete: from its commit to the file's removal). Several service replicas may share the folder
(one Milvus-backed gallery), so this lock does two jobs:

- writes of all replicas are serialized, which makes the store's check-then-add (dedupe by
  content, image_id conflicts) atomic across replicas, and keeps one replica from deleting a
  file whose bytes another is just committing under a new id;
- :meth:`ImageStore.sweep`, run at start-up, decides under the same lock, taken without waiting
  (it skips if anyone writes): a file the store does not name while no write is in progress is
  one no write can still name. The long part, asking the store about every file, runs before
  the lock, so other replicas' uploads wait only for the re-check of the few files that looked
  unnamed.

``flock`` reaches every process on one host (a compose project's containers share the kernel)
and NFSv4 clients; where replicas on several hosts share a folder over a filesystem whose locks
do not reach across hosts, the sweep's grace period is the guard: only files older than it are
touched (the default for a Milvus server is 15 minutes, far longer than any write holds a file
before its commit).

Files and folders get the modes the index's own get (bundle/fsio.py): 0o666 and 0o777 less the
process umask, which the service sets at start-up from TPS_FILE_MODE (service/app.py): owner
only by default, so no other local user reads the footage.
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from bundle.fsio import fsync_dir

_SHARD = re.compile(r"^[0-9a-f]{2}$")
_STORED = re.compile(r"^([0-9a-f]{64})\.[a-z]+$")
_PARTIAL = re.compile(r"^\.upload-.*\.part$")
SWEEP_PAGE = 500  # SHA-256s per question to the store

Named = Callable[[Sequence[str]], set[str]]  # of these SHA-256s, those a gallery item names


class ImageStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self._lock_fd: int | None = None

    def _lock(self) -> int:
        if self._lock_fd is None:
            self.root.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        return self._lock_fd

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Held (exclusively, across processes) over one write: from its first file to its
        store commit, or from a delete's store commit to the file's removal. Threads of one
        process share the lock (it belongs to the open folder), so callers serialize their own
        writes (the runtime's write lock)."""
        fd = self._lock()
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def sweep(self, named: Named, grace_s: float = 0.0) -> list[Path] | None:
        """Delete partial writes, and stored files whose SHA-256 no gallery item names, of those
        last modified more than ``grace_s`` seconds ago.

        ``named(shas)`` answers which of the given SHA-256s the gallery holds. The folder is
        listed and the store asked about every file without the lock (a large gallery may take
        a while, and every replica's uploads wait for the lock); then, holding the exclusive
        lock, the store is asked again about the files that looked unnamed, so a commit that
        landed in between saves its file. Returns the deleted paths, or None (nothing touched)
        when another process is writing right now. Files of other names are never touched.
        """
        stored, partial = self._listing()
        cutoff = time.time() - grace_s
        if grace_s > 0:
            stored = {sha: _older_than(paths, cutoff) for sha, paths in stored.items()}
            stored = {sha: paths for sha, paths in stored.items() if paths}
        unnamed = _unnamed(named, stored)
        fd = self._lock()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None
        try:
            still = _unnamed(named, unnamed)  # the decision, under the lock
            doomed = partial + [path for paths in still.values() for path in paths]
            # A write may have reused a file (making it young) before we took the lock.
            doomed = _older_than(doomed, cutoff) if grace_s > 0 else doomed
            for path in doomed:
                path.unlink(missing_ok=True)
            for shard in {path.parent for path in doomed}:
                fsync_dir(shard)
            return doomed
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def _listing(self) -> tuple[dict[str, list[Path]], list[Path]]:
        """(SHA-256 → stored files, partial writes) in the folder."""
        stored: dict[str, list[Path]] = {}
        partial: list[Path] = []
        for shard in self.root.iterdir():
            if not (_SHARD.match(shard.name) and shard.is_dir()):
                continue
            for entry in shard.iterdir():
                if _PARTIAL.match(entry.name):
                    partial.append(entry)
                elif (m := _STORED.match(entry.name)) and m.group(1).startswith(shard.name):
                    stored.setdefault(m.group(1), []).append(entry)
        return stored, partial

    def path_for(self, sha256: str, suffix: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a SHA-256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / f"{sha256}{suffix}"

    def write(self, sha256: str, suffix: str, data: bytes) -> tuple[Path, bool]:
        """Write atomically and durably; returns (path, created). Same bytes, same name: an
        existing file is left as it is."""
        path = self.path_for(sha256, suffix)
        if path.is_file() and _touch(path):
            return path, False
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _new_partial(path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(path.parent)
        return path, True

    def relative(self, path: Path) -> str:
        """``path`` (a file of this folder) as the gallery stores it: relative to the folder."""
        return Path(path).relative_to(self.root).as_posix()

    def owns(self, path: Path) -> bool:
        """Whether ``path`` is a file this store wrote (files elsewhere are never deleted)."""
        try:
            return Path(path).resolve().is_relative_to(self.root)
        except OSError:
            return False

    def delete(self, path: Path) -> bool:
        if not self.owns(path):
            return False
        try:
            Path(path).unlink()
        except FileNotFoundError:
            return False
        return True


def _touch(path: Path) -> bool:
    """Mark an existing file as used now (the sweep's grace period counts from the last write
    that used it); False when it is gone."""
    try:
        os.utime(path)
    except FileNotFoundError:
        return False
    except OSError:  # another user's file: still there, only its time stays
        pass
    return True


def _unnamed(named: Named, stored: dict[str, list[Path]]) -> dict[str, list[Path]]:
    """The entries of ``stored`` whose SHA-256 the gallery does not name, asked in pages."""
    shas = sorted(stored)
    known: set[str] = set()
    for start in range(0, len(shas), SWEEP_PAGE):
        known |= named(shas[start : start + SWEEP_PAGE])
    return {sha: paths for sha, paths in stored.items() if sha not in known}


def _older_than(paths: list[Path], cutoff: float) -> list[Path]:
    old = []
    for path in paths:
        try:
            if path.stat().st_mtime < cutoff:
                old.append(path)
        except FileNotFoundError:
            continue
    return old


def _new_partial(folder: Path) -> tuple[int, Path]:
    """A fresh ``.upload-*.part`` file (the name the sweep knows), opened for writing, with the
    mode bundle.fsio.temp_sibling gives the index's files (the umask decides, TPS_FILE_MODE), where
    ``mkstemp`` would always give 0600."""
    for _ in range(100):
        tmp = folder / f".upload-{secrets.token_hex(8)}.part"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name in {folder}")
