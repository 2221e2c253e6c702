"""ingest: encode + add, with already-indexed files settled before encoding."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from index.ingest.add import ingest
from index.ingest.sources import from_folder
from index.store import GalleryIndex, ItemExistsError
from tests.index.conftest import Gallery


def test_reingest_and_content_checks(tmp_path: Path, bundle, gallery: Gallery) -> None:
    folder = tmp_path / "cam"
    folder.mkdir()
    for src in gallery.paths[:4]:
        shutil.copy(src, folder / src.name)
    (folder / "broken.jpg").write_bytes(b"nope")
    with GalleryIndex.create(tmp_path / "idx", bundle.fingerprint, bundle.dim) as index:
        first = ingest(index, bundle, from_folder(folder), workers=0, progress=False)
        assert len(first.added) == 4 and not first.duplicates
        assert [Path(p).name for p, _ in first.failures] == ["broken.jpg"]
        assert index.get(first.added[0]).source_path == str((folder / first.added[0]).resolve())

        shutil.copy(gallery.paths[0], folder / "again.jpg")  # same bytes, new name
        second = ingest(index, bundle, from_folder(folder), workers=0, progress=False)
        assert second.added == []
        assert second.duplicates["again.jpg"] == gallery.paths[0].name
        assert all(second.duplicates[n] == n for n in first.added)

        shutil.copy(gallery.paths[5], folder / gallery.paths[1].name)  # same name, new bytes
        with pytest.raises(ItemExistsError, match=gallery.paths[1].name):
            ingest(index, bundle, from_folder(folder), workers=0, progress=False)
        assert index.stats()["count"] == 4
