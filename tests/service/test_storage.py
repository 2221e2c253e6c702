"""The image folder: files get the permissions the index's own files get, whatever the umask;
writers of several processes take turns; the sweep's grace period spares young files."""

from __future__ import annotations

import hashlib
import os
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from index.store import INFO_FILE, GalleryIndex, vectors_file
from service.storage import ImageStore


@pytest.fixture(params=[0o022, 0o002, 0o027, 0o077], ids=lambda m: f"umask-{m:03o}")
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_images_and_their_folders_get_the_index_files_modes(tmp_path: Path, umask: int) -> None:
    index = GalleryIndex.create(tmp_path / "index", "f" * 64, 8, "flat", "never")
    index.close()
    data = b"not really a jpeg"
    store = ImageStore(tmp_path / "index" / "images")
    path, created = store.write(hashlib.sha256(data).hexdigest(), ".jpg", data)
    store.close()

    assert created and path.read_bytes() == data
    assert mode(path) == mode(index.path / INFO_FILE) == mode(index.path / vectors_file(0))
    assert mode(path) == 0o666 & ~umask
    assert mode(path.parent) == mode(store.root) == mode(index.path) == 0o777 & ~umask
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no partial left


def _stored(store: ImageStore, content: bytes) -> Path:
    path, created = store.write(hashlib.sha256(content).hexdigest(), ".jpg", content)
    assert created
    return path


def test_the_sweep_spares_orphans_younger_than_its_grace_period(tmp_path: Path) -> None:
    """Replicas on hosts whose locks do not reach each other: a file another replica is about
    to commit is young, so a sweep with a grace period leaves it."""
    store = ImageStore(tmp_path / "images")
    old, young = _stored(store, b"old orphan"), _stored(store, b"being committed elsewhere")
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    assert store.sweep(lambda shas: set(), grace_s=600) == [old]
    assert young.is_file() and not old.exists()
    assert store.sweep(lambda shas: set(), grace_s=0) == [young]


def test_writing_the_same_bytes_again_makes_the_file_young(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    path = _stored(store, b"reused")
    os.utime(path, (0, 0))
    again, created = store.write(hashlib.sha256(b"reused").hexdigest(), ".jpg", b"reused")
    assert again == path and not created
    assert time.time() - path.stat().st_mtime < 60
    assert store.sweep(lambda shas: set(), grace_s=600) == []


def test_writers_of_different_processes_take_turns(tmp_path: Path) -> None:
    """Two ImageStore objects hold separate open files, so their locks conflict as two
    replicas' would: a second writer waits for the first one's commit."""
    first, second = ImageStore(tmp_path / "images"), ImageStore(tmp_path / "images")
    order: list[str] = []
    entered = threading.Event()

    def other_replica() -> None:
        entered.set()
        with second.writing():
            order.append("second")

    with first.writing():
        thread = threading.Thread(target=other_replica)
        thread.start()
        assert entered.wait(5)
        time.sleep(0.2)  # the other writer is blocked on the lock by now
        order.append("first")
    thread.join(5)
    assert order == ["first", "second"]
