"""An index made before per-image metadata (no camera_id, captured_at, tags columns) opens and
works: readers see the metadata as missing, the first writer adds the columns under its lock in
one transaction, and a reader that opened before the upgrade carries on."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from index.faiss.gallery import GalleryIndex
from index.faiss.manifest import MANIFEST_FILE
from index.filters import GalleryFilter
from index.items import ItemMeta
from tests.index.conftest import fake_items, random_unit

FP = "d" * 64
DIM = 8
OLD_ITEMS = """CREATE TABLE items (
    id INTEGER PRIMARY KEY,
    image_id TEXT NOT NULL UNIQUE,
    person_id TEXT,
    source_path TEXT NOT NULL,
    sha256 TEXT NOT NULL UNIQUE,
    added_at REAL NOT NULL
)"""
OLD_COLUMNS = "id, image_id, person_id, source_path, sha256, added_at"


def _columns(path: Path) -> set[str]:
    with sqlite3.connect(path / MANIFEST_FILE) as conn:
        return {row[1] for row in conn.execute("PRAGMA table_info(items)")}


@pytest.fixture
def old_index(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """Ten items under the previous version's schema: the items table rebuilt by hand."""
    path = tmp_path / "old"
    vectors = random_unit(10, DIM, 0)
    with GalleryIndex.create(path, FP, DIM, "flat", "never") as index:
        index.add(vectors, fake_items([f"o{i}" for i in range(10)], person="p1"))
    conn = sqlite3.connect(path / MANIFEST_FILE, isolation_level=None)
    conn.executescript(
        f"""BEGIN;
        CREATE TABLE old_items {OLD_ITEMS.removeprefix("CREATE TABLE items")};
        INSERT INTO old_items SELECT {OLD_COLUMNS} FROM items;
        DROP TABLE items;
        ALTER TABLE old_items RENAME TO items;
        COMMIT;"""
    )
    conn.close()
    assert _columns(path) == set(OLD_COLUMNS.split(", "))
    return path, vectors


def test_old_index_reads_with_missing_metadata(old_index: tuple[Path, np.ndarray]) -> None:
    path, vectors = old_index
    with GalleryIndex.open(path, FP, DIM, "never") as index:
        item = index.get("o3")
        assert item is not None and item.person_id == "p1"
        assert (item.camera_id, item.captured_at, item.tags) == (None, None, ())
        assert len(list(index.items())) == 10 and index.search(vectors[3], 1)[0][0].image_id == "o3"
        assert index.search(vectors[:1], 5, GalleryFilter(camera_ids=("1",))) == [[]]
        assert len(index.search(vectors[:1], 5, GalleryFilter(person_ids=("p1",)))[0]) == 5
        np.testing.assert_allclose(index.vectors(["o3"])["o3"], vectors[3], atol=1e-6)
    assert _columns(path) == set(OLD_COLUMNS.split(", "))  # reading changes nothing


def test_first_write_upgrades_and_earlier_readers_carry_on(
    old_index: tuple[Path, np.ndarray],
) -> None:
    path, vectors = old_index
    reader = GalleryIndex.open(path, FP, DIM, "never")  # opened before the upgrade
    with GalleryIndex.open(path, FP, DIM, "never") as writer:
        tagged = ItemMeta("new", "p2", "/new.jpg", "a" * 64, 2.0, "cam1", 50.0, ("red",))
        writer.add(random_unit(1, DIM, 1), [tagged])
        assert {"camera_id", "captured_at", "tags"} <= _columns(path)
        assert writer.get("new") == tagged and writer.get("o1").camera_id is None
        on_cam1 = GalleryFilter(camera_ids=("cam1",), tags=("red",), captured_after=49.0)
        assert [h.image_id for h in writer.search(vectors[:1], 5, on_cam1)[0]] == ["new"]
    # The earlier reader sees the new columns on its next read, and the commit on refresh.
    assert reader.get("new") == tagged and reader.get("o2").tags == ()
    assert reader.refresh() is True
    assert [h.image_id for h in reader.search(vectors[:1], 5, on_cam1)[0]] == ["new"]
    reader.close()
    # Code of the previous version selects only the columns it knows: those still read.
    with sqlite3.connect(path / MANIFEST_FILE) as conn:
        rows = conn.execute(f"SELECT {OLD_COLUMNS} FROM items ORDER BY id").fetchall()
    assert len(rows) == 11 and rows[-1][1] == "new"


def test_upgrade_is_one_transaction(
    old_index: tuple[Path, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure part-way through the upgrade leaves the old schema whole."""
    from index.faiss import manifest_schema

    path, _ = old_index
    real = manifest_schema.add_metadata_columns

    def fail_after_altering(conn: sqlite3.Connection) -> bool:
        real(conn)
        raise RuntimeError("power cut")

    with GalleryIndex.open(path, FP, DIM, "never") as index:
        monkeypatch.setattr(manifest_schema, "add_metadata_columns", fail_after_altering)
        with pytest.raises(RuntimeError, match="power cut"):
            index.add(random_unit(1, DIM, 1), fake_items(["x"]))
        assert _columns(path) == set(OLD_COLUMNS.split(", "))
        assert index.get("o1").camera_id is None and index.get("x") is None
        monkeypatch.setattr(manifest_schema, "add_metadata_columns", real)
        index.add(random_unit(1, DIM, 1), fake_items(["x"]))
        assert index.get("x") is not None and "tags" in _columns(path)
