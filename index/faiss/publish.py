"""Putting a new index folder in place atomically: an empty one, or one built aside.

An index is assembled in a temp folder next to its destination and renamed over it only when
complete, so a crash never leaves a half-made index where one is expected: the destination is
either absent (or empty) or holds a whole, committed generation 0.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bundle.fsio import fsync_dir, temp_dir, write_json_atomic
from index.errors import IndexStoreError
from index.faiss import backend as faiss_backend
from index.faiss.layout import FORMAT, INFO_FILE, VERSION, info, vectors_file
from index.faiss.manifest import MANIFEST_FILE, Manifest

log = logging.getLogger(__name__)


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


def create_empty(
    path: Path, fingerprint: str, dim: int, kind: str, extra_meta: dict[str, str] | None = None
) -> None:
    """Write an empty generation-0 index at ``path`` (absent or an empty folder); ``extra_meta``
    joins its manifest meta (the encoding record, index/encoding.py)."""
    if not isinstance(fingerprint, str) or not fingerprint:
        raise IndexStoreError("an index needs the bundle fingerprint it is built for")
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise IndexStoreError(f"dimension must be a positive integer, got {dim!r}")
    check_new_location(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_dir(path.parent, f".{path.name}.creating-")
    try:
        _write_empty(tmp, fingerprint, dim, kind, extra_meta or {})
        try:
            os.replace(tmp, path)  # Linux renames over an empty folder, never a full one
        except OSError as err:
            raise IndexStoreError(f"cannot create an index at {path}: {err}") from None
        fsync_dir(path.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.debug("created %s index at %s (dim %d, bundle %s)", kind, path, dim, fingerprint[:12])


def _write_empty(
    folder: Path, fingerprint: str, dim: int, kind: str, extra_meta: dict[str, str]
) -> None:
    size = faiss_backend.write(faiss_backend.new_index(kind, dim), folder / vectors_file(0))
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
        **extra_meta,
    }
    Manifest.create(folder / MANIFEST_FILE, meta).close()
    content = info(fingerprint=fingerprint, dim=dim, kind=kind, count=0, generation=0)
    write_json_atomic(folder / INFO_FILE, content)
    fsync_dir(folder)
