"""Uploaded image files on disk, named by their SHA-256 (never by anything a client sent).

A write puts the files on disk first and commits the index rows after; a delete commits first
and removes the file after. A process killed in between leaves a file that no index item names
(an orphan: never served, since only files the index lists are). Writers hold a shared lock on
the store's folder from the first file to the commit, so :meth:`ImageStore.sweep`, run at
start-up under the exclusive lock, can tell such orphans from a write still in progress.

Files and folders get the modes the index's own get (bundle/fsio.py): 0o666 and 0o777 less the
process umask, so whoever may read the index may read its images too.
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from bundle.fsio import fsync_dir

_SHARD = re.compile(r"^[0-9a-f]{2}$")
_STORED = re.compile(r"^([0-9a-f]{64})\.[a-z]+$")
_PARTIAL = re.compile(r"^\.upload-.*\.part$")


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
        """Held (shared) across one write: from its first file to its index commit, or from a
        delete's index commit to the file's removal. The sweep runs only while no one holds it."""
        fd = self._lock()
        fcntl.flock(fd, fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def sweep(self, indexed_sha256: Callable[[], Iterable[str]]) -> list[Path] | None:
        """Delete partial writes and stored files whose SHA-256 no index item has.

        ``indexed_sha256`` is read only once the exclusive lock is held, so it sees every
        commit of every finished write. Returns the deleted paths, or None (nothing touched)
        when another process is writing right now. Files of other names are never touched.
        """
        fd = self._lock()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None
        try:
            stored: dict[str, list[Path]] = {}
            doomed: list[Path] = []
            for shard in self.root.iterdir():
                if not (_SHARD.match(shard.name) and shard.is_dir()):
                    continue
                for entry in shard.iterdir():
                    if _PARTIAL.match(entry.name):
                        doomed.append(entry)
                    elif (m := _STORED.match(entry.name)) and m.group(1).startswith(shard.name):
                        stored.setdefault(m.group(1), []).append(entry)
            for sha in indexed_sha256():
                stored.pop(sha, None)
            doomed += [path for paths in stored.values() for path in paths]
            for path in doomed:
                path.unlink(missing_ok=True)
            for shard in {path.parent for path in doomed}:
                fsync_dir(shard)
            return doomed
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def path_for(self, sha256: str, suffix: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a SHA-256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / f"{sha256}{suffix}"

    def write(self, sha256: str, suffix: str, data: bytes) -> tuple[Path, bool]:
        """Write atomically and durably; returns (path, created). Same bytes, same name: an
        existing file is left as it is."""
        path = self.path_for(sha256, suffix)
        if path.is_file():
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


def _new_partial(folder: Path) -> tuple[int, Path]:
    """A fresh ``.upload-*.part`` file (the name the sweep knows), opened for writing, with the
    mode bundle.fsio.temp_sibling gives the index's files: ``mkstemp``'s 0600 would hide the
    images from a reader the index's files are open to (a backup, a server run as another user)."""
    for _ in range(100):
        tmp = folder / f".upload-{secrets.token_hex(8)}.part"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name in {folder}")
