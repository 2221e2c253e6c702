"""The SQLite manifest: one transaction per commit, generation compare-and-swap, lookups."""

from __future__ import annotations

from pathlib import Path

import pytest

from index.errors import IndexCorruptError, IndexStoreError
from index.faiss.manifest import Manifest, Row
from tests.index.conftest import fake_items

META = {
    "format": "f",
    "version": 1,
    "fingerprint": "x",
    "dim": 4,
    "kind": "flat",
    "generation": 0,
    "next_id": 0,
}


def _rows(names: list[str], first_id: int = 0) -> list[Row]:
    return [Row(first_id + n, item) for n, item in enumerate(fake_items(names))]


def test_commit_is_all_or_nothing(tmp_path: Path) -> None:
    manifest = Manifest.create(tmp_path / "m.sqlite", META)
    manifest.commit(0, {"generation": 1}, inserts=_rows(["a", "b"]))
    assert manifest.generation() == 1 and manifest.count() == 2
    with pytest.raises(IndexStoreError, match="constraint"):  # "a" again: UNIQUE(image_id)
        manifest.commit(1, {"generation": 2}, inserts=_rows(["c", "a"], first_id=2))
    assert manifest.generation() == 1 and manifest.get("c") is None
    with pytest.raises(IndexStoreError, match="during a write"):  # stale expected generation
        manifest.commit(0, {"generation": 2}, deletes=[0])
    assert manifest.count() == 2
    manifest.commit(1, {"generation": 2}, deletes=[0], sha_updates=[(1, "beef")])
    assert [r.item.image_id for r in manifest.rows()] == ["b"]
    assert manifest.get("b").sha256 == "beef"
    manifest.close()


def test_lookups_past_the_parameter_limit(tmp_path: Path) -> None:
    names = [f"n{i}" for i in range(1200)]
    manifest = Manifest.create(tmp_path / "m.sqlite", META)
    manifest.commit(0, {"generation": 1}, inserts=_rows(names))
    assert len(manifest.id_by_image_id([*names, "absent"])) == 1200
    shas = [r.item.sha256 for r in _rows(names)]
    assert manifest.image_id_by_sha(shas)[shas[1100]] == "n1100"
    assert [r.id for r in manifest.page(1000, 5)] == [1001, 1002, 1003, 1004, 1005]
    assert len(manifest.labels()) == 1200
    manifest.close()
    reopened = Manifest.open(tmp_path / "m.sqlite")
    assert reopened.meta()["generation"] == "1"
    reopened.close()


def test_not_a_manifest(tmp_path: Path) -> None:
    (tmp_path / "empty.sqlite").write_bytes(b"")
    with pytest.raises(IndexCorruptError, match="no such table"):
        Manifest.open(tmp_path / "empty.sqlite")
    (tmp_path / "text.sqlite").write_text("hello " * 1000)
    with pytest.raises(IndexCorruptError, match="not a database"):
        Manifest.open(tmp_path / "text.sqlite")
