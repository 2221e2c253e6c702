"""GalleryIndex: search against numpy, add/remove round-trips, dedupe, refusals, damage."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from index.faiss import backend as faiss_backend
from index.store import (
    GalleryIndex,
    IndexCorruptError,
    IndexMismatchError,
    IndexStoreError,
    ItemExistsError,
    ItemMeta,
)
from tests.index.conftest import Gallery, assert_matches_brute_force, fake_items, random_unit

DIM = 16
FP = "f" * 64


def _index_with(
    path: Path, n: int, kind: str = "flat", seed: int = 0
) -> tuple[GalleryIndex, np.ndarray, list[str]]:
    names = [f"img{i:04d}" for i in range(n)]
    vectors = random_unit(n, DIM, seed)
    index = GalleryIndex.create(path, FP, DIM, kind=kind)
    index.add(vectors, fake_items(names))
    return index, vectors, names


def test_text_search_equals_brute_force(tmp_path: Path, gallery: Gallery, bundle) -> None:
    index = GalleryIndex.create(tmp_path / "idx", bundle.fingerprint, bundle.dim)
    result = index.add(gallery.vectors, gallery.items)
    assert len(result.added) == len(gallery.items) and not result.duplicates
    queries = bundle.encode_text(
        ["a woman in a red coat carrying a white bag", "a man in jeans", "short black hair"]
    )
    names = [i.image_id for i in gallery.items]
    for k in (1, 10, len(names), len(names) + 5):
        for query, hits in zip(queries, index.search(queries, k), strict=True):
            assert_matches_brute_force(hits, gallery.vectors, names, query, k)
    hit = index.search(queries[:1], 1)[0][0]
    assert hit.person_id == index.get(hit.image_id).person_id
    index.close()


def test_persisted_and_reopened(tmp_path: Path) -> None:
    index, vectors, _names = _index_with(tmp_path / "idx", 50)
    before = index.search(vectors[:5], 7)
    index.close()
    with GalleryIndex.open(tmp_path / "idx", FP, DIM) as again:
        assert again.search(vectors[:5], 7) == before
        stats = again.stats()
    assert stats["count"] == 50 and stats["dim"] == DIM and stats["fingerprint"] == FP
    assert stats["kind"] == "flat" and stats["generation"] == 1
    # use_gpu="auto": on a GPU copy exactly when faiss has GPU support and sees a device.
    assert stats["gpu"] is (faiss_backend.gpu_count() > 0)
    info = json.loads((tmp_path / "idx" / "index.json").read_text())
    assert info["count"] == 50 and info["fingerprint"] == FP and info["dim"] == DIM
    assert sorted(p.name for p in (tmp_path / "idx").glob("vectors.*")) == ["vectors.1.faiss"]


def test_add_remove_round_trip(tmp_path: Path) -> None:
    index, vectors, names = _index_with(tmp_path / "idx", 30)
    more = random_unit(5, DIM, 1)
    index.add(more, fake_items([f"new{i}" for i in range(5)], person="7"))
    assert index.stats()["count"] == 35
    assert index.search(more[2], 1)[0][0].image_id == "new2"
    assert index.get("new2").person_id == "7"

    assert index.remove(["img0003", "nope", "new2", "img0003"]) == ["img0003", "new2"]
    assert index.remove(["nope"]) == []
    assert index.get("img0003") is None
    left = [n for n in names if n != "img0003"] + ["new0", "new1", "new3", "new4"]
    assert [i.image_id for i in index.items()] == left
    all_vectors = np.concatenate([np.delete(vectors, 3, axis=0), np.delete(more, 2, axis=0)])
    for q in random_unit(4, DIM, 2):
        assert_matches_brute_force(index.search(q, 10)[0], all_vectors, left, q, 10)
    # Removed ids are never reused: faiss ids only grow.
    index.add(random_unit(1, DIM, 3), fake_items(["img0003"]))
    assert index.search(random_unit(1, DIM, 3), 1)[0][0].image_id == "img0003"
    index.close()


def test_dedupe_by_content(tmp_path: Path) -> None:
    index, _vectors, _names = _index_with(tmp_path / "idx", 10)
    copy = ItemMeta(
        "copy_of_img0001", None, "/elsewhere.jpg", fake_items(["img0001"])[0].sha256, 2.0
    )
    twice = fake_items(["fresh", "fresh"])
    result = index.add(random_unit(4, DIM, 5), [copy, fake_items(["img0002"])[0], *twice])
    assert result.added == ["fresh"]
    assert result.duplicates == {"copy_of_img0001": "img0001", "img0002": "img0002"}
    # Same bytes under two new names in one batch: the second points at the first.
    same = ItemMeta("b", None, "/b.jpg", "beef" * 16, 1.0)
    result = index.add(
        random_unit(2, DIM, 6), [ItemMeta("a", None, "/a.jpg", "beef" * 16, 1.0), same]
    )
    assert result.added == ["a"] and result.duplicates == {"b": "a"}
    assert index.stats()["count"] == 12
    index.close()


def test_image_id_taken_by_other_bytes_writes_nothing(tmp_path: Path) -> None:
    index, _vectors, _names = _index_with(tmp_path / "idx", 10)
    clash = ItemMeta("img0004", None, "/other.jpg", "0" * 64, 1.0)
    with pytest.raises(ItemExistsError, match="img0004"):
        index.add(random_unit(2, DIM, 7), [*fake_items(["innocent"]), clash])
    assert index.get("innocent") is None and index.stats()["generation"] == 1
    index.close()


def test_bad_vectors_are_refused(tmp_path: Path) -> None:
    index = GalleryIndex.create(tmp_path / "idx", FP, DIM)
    with pytest.raises(IndexMismatchError, match="16-dimensional"):
        index.add(random_unit(1, DIM + 1, 0), fake_items(["a"]))
    with pytest.raises(IndexStoreError, match="normalised"):
        index.add(2 * random_unit(1, DIM, 0), fake_items(["a"]))
    with pytest.raises(IndexStoreError, match="2 vectors for 1 items"):
        index.add(random_unit(2, DIM, 0), fake_items(["a"]))
    with pytest.raises(IndexMismatchError):
        index.search(random_unit(1, 8, 0), 3)
    with pytest.raises(ValueError, match="k must be"):
        index.search(random_unit(1, DIM, 0), 0)
    assert index.search(random_unit(2, DIM, 0), 5) == [[], []]
    assert index.stats()["count"] == 0
    index.close()
    with pytest.raises(IndexStoreError, match="closed"):
        index.search(random_unit(1, DIM, 0), 1)


def test_create_refuses_existing_and_bad_arguments(tmp_path: Path) -> None:
    _index_with(tmp_path / "idx", 3)[0].close()
    with pytest.raises(IndexStoreError, match="already holds an index"):
        GalleryIndex.create(tmp_path / "idx", FP, DIM)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(IndexStoreError, match="not empty"):
        GalleryIndex.create(tmp_path / "full", FP, DIM)
    with pytest.raises(IndexStoreError, match="unknown index kind"):
        GalleryIndex.create(tmp_path / "k", FP, DIM, kind="pq")
    if faiss_backend.gpu_count() == 0:
        with pytest.raises(IndexStoreError, match="always"):
            GalleryIndex.create(tmp_path / "g", FP, DIM, use_gpu="always")
    else:
        with GalleryIndex.create(tmp_path / "g", FP, DIM, use_gpu="always") as on_gpu:
            assert on_gpu.stats()["gpu"] is True
    (tmp_path / "empty").mkdir()
    GalleryIndex.create(tmp_path / "empty", FP, DIM).close()  # an empty folder is fine
    with pytest.raises(IndexStoreError, match="not a gallery index"):
        GalleryIndex.open(tmp_path / "missing")
    with pytest.raises(IndexStoreError, match=r"manifest\.sqlite is missing"):
        GalleryIndex.open(tmp_path / "full")


def test_fingerprint_or_dim_mismatch_refused(tmp_path: Path) -> None:
    _index_with(tmp_path / "idx", 3)[0].close()
    with pytest.raises(IndexMismatchError, match="rebuild"):
        GalleryIndex.open(tmp_path / "idx", fingerprint="0" * 64)
    with pytest.raises(IndexMismatchError, match="16-dimensional"):
        GalleryIndex.open(tmp_path / "idx", fingerprint=FP, dim=32)
    GalleryIndex.open(tmp_path / "idx", fingerprint=FP, dim=DIM).close()


def _current_faiss(path: Path) -> Path:
    (file,) = path.glob("vectors.*.faiss")
    return file


def test_truncated_faiss_file(tmp_path: Path) -> None:
    _index_with(tmp_path / "idx", 20)[0].close()
    file = _current_faiss(tmp_path / "idx")
    file.write_bytes(file.read_bytes()[:-100])
    with pytest.raises(IndexCorruptError, match="truncated"):
        GalleryIndex.open(tmp_path / "idx")


@pytest.mark.parametrize("where", ["header", "tail"])
def test_corrupt_faiss_file(tmp_path: Path, where: str) -> None:
    _index_with(tmp_path / "idx", 20)[0].close()
    file = _current_faiss(tmp_path / "idx")
    data = bytearray(file.read_bytes())
    if where == "header":
        data[:4] = b"JUNK"  # same size, so only FAISS's own parser can notice
        message = "not a readable FAISS index"
    else:
        data[-8:] = (999).to_bytes(8, "little")  # the last stored id no longer matches
        message = "do not belong together"
    file.write_bytes(bytes(data))
    with pytest.raises(IndexCorruptError, match=message) as caught:
        GalleryIndex.open(tmp_path / "idx")
    assert "index_read.cpp" not in str(caught.value)


def test_missing_faiss_file(tmp_path: Path) -> None:
    _index_with(tmp_path / "idx", 5)[0].close()
    _current_faiss(tmp_path / "idx").unlink()
    with pytest.raises(IndexCorruptError, match="missing"):
        GalleryIndex.open(tmp_path / "idx")


def test_garbage_manifest(tmp_path: Path) -> None:
    _index_with(tmp_path / "idx", 5)[0].close()
    (tmp_path / "idx" / "manifest.sqlite").write_bytes(os.urandom(8192))
    with pytest.raises(IndexCorruptError, match="manifest"):
        GalleryIndex.open(tmp_path / "idx")


def test_manifest_and_faiss_from_different_indexes(tmp_path: Path) -> None:
    _index_with(tmp_path / "a", 5)[0].close()
    _index_with(tmp_path / "b", 6, seed=1)[0].close()
    (tmp_path / "a" / "vectors.1.faiss").write_bytes(
        (tmp_path / "b" / "vectors.1.faiss").read_bytes()
    )
    with sqlite3.connect(tmp_path / "a" / "manifest.sqlite") as db:
        size = (tmp_path / "a" / "vectors.1.faiss").stat().st_size
        db.execute("UPDATE meta SET value = ? WHERE key = 'faiss_bytes'", (str(size),))
    with pytest.raises(IndexCorruptError, match="do not belong together"):
        GalleryIndex.open(tmp_path / "a")


def test_leftovers_of_a_crashed_write_are_swept(tmp_path: Path) -> None:
    index, _vectors, _names = _index_with(tmp_path / "idx", 8)
    index.close()
    root = tmp_path / "idx"
    (root / "vectors.2.faiss").write_bytes(b"uncommitted")
    (root / "vectors.0.faiss").write_bytes(b"old")
    (root / ".vectors.2.faiss.abc.tmp").write_bytes(b"partial")
    (root / "index.json").unlink()
    with GalleryIndex.open(root, FP, DIM) as again:
        assert again.stats()["count"] == 8
        again.add(random_unit(1, DIM, 9), fake_items(["after"]))
    assert sorted(p.name for p in root.iterdir() if "faiss" in p.name) == ["vectors.2.faiss"]
    assert json.loads((root / "index.json").read_text())["count"] == 9


def test_refresh_sees_other_writers(tmp_path: Path) -> None:
    writer, _vectors, _names = _index_with(tmp_path / "idx", 10)
    reader = GalleryIndex.open(tmp_path / "idx", FP, DIM)
    assert reader.refresh() is False
    writer.add(random_unit(1, DIM, 11), fake_items(["late"]))
    assert reader.stats()["count"] == 10
    assert reader.refresh() is True
    assert reader.stats()["count"] == 11
    assert reader.search(random_unit(1, DIM, 11), 1)[0][0].image_id == "late"
    # A reader that writes starts from the latest commit, not from its stale snapshot.
    writer.remove(["img0000"])
    reader.add(random_unit(1, DIM, 12), fake_items(["from_reader"]))
    assert {i.image_id for i in writer.items()} == {i.image_id for i in reader.items()}
    assert writer.refresh() is True and writer.stats()["count"] == 11
    writer.close()
    reader.close()


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_kinds(tmp_path: Path, kind: str) -> None:
    index, vectors, names = _index_with(tmp_path / "idx", 200, kind=kind)
    top = index.search(vectors[:20], 1)
    assert sum(h[0].image_id == names[n] for n, h in enumerate(top)) >= 19
    more = random_unit(400, DIM, 13)  # IVF outgrows its lists and is retrained
    index.add(more, fake_items([f"more{i}" for i in range(400)]))
    assert index.remove(["img0001", "more5"]) == ["img0001", "more5"]
    index.close()
    with GalleryIndex.open(tmp_path / "idx", FP, DIM) as again:
        assert again.stats()["count"] == 598 and again.stats()["kind"] == kind
        hits = again.search(more[10:30], 1)
        assert sum(h[0].image_id == f"more{10 + n}" for n, h in enumerate(hits)) >= 19
        assert all(h[0].image_id != "more5" for h in again.search(more[5], 3))
