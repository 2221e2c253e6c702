"""Uploaded image files get the permissions the index's own files get, whatever the umask."""

from __future__ import annotations

import hashlib
import os
import stat
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
