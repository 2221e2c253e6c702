"""upsert and vectors on the FAISS store: new ids added, present ids replaced (vector and
metadata, same faiss id), one new generation, all or nothing."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pytest

from index.errors import IndexStoreError, ItemExistsError
from index.faiss import backend as faiss_backend
from index.faiss.gallery import GalleryIndex
from index.items import ItemMeta
from tests.index.conftest import fake_items, random_unit

FP = "e" * 64
DIM = 8


def _item(name: str, **meta: object) -> ItemMeta:
    sha = hashlib.sha256(name.encode()).hexdigest()
    return ItemMeta(name, None, f"/x/{name}.jpg", sha, 1.0, **meta)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", faiss_backend.KINDS)
def test_upsert_adds_and_replaces(tmp_path: Path, kind: str) -> None:
    names = [f"a{i}" for i in range(60)]
    vectors = random_unit(60, DIM, 0)
    path = tmp_path / "idx"
    with GalleryIndex.create(path, FP, DIM, kind, "never") as index:
        index.add(vectors, fake_items(names))
        generation = index.stats()["generation"]
        ids_before = index._manifest.id_by_image_id(names)
        new_vectors = random_unit(3, DIM, 1)
        changed = [
            _item("a5", camera_id="7", captured_at=12.5, tags=("red", "bag")),
            _item("a9", camera_id="3"),
            _item("fresh", tags=("hat",)),
        ]
        index.upsert(new_vectors, changed)
        assert index.stats()["generation"] == generation + 1
        assert index.count() == 61
        got = index.vectors(["a5", "a9", "fresh", "a0", "absent"])
        assert list(got) == ["a5", "a9", "fresh", "a0"]
        for name, row in zip(["a5", "a9", "fresh"], new_vectors, strict=True):
            np.testing.assert_allclose(got[name], row, atol=1e-6)
        np.testing.assert_allclose(got["a0"], vectors[0], atol=1e-6)
        assert index.get("a5") == changed[0] and index.get("fresh") == changed[2]
        ids_after = index._manifest.id_by_image_id(names)
        assert ids_after == ids_before  # replaced items keep their faiss ids
        assert index.search(new_vectors[0], 1)[0][0].image_id == "a5"
    with GalleryIndex.open(path, FP, DIM) as again:
        assert again.get("a5") == changed[0]
        np.testing.assert_allclose(again.vectors(["a9"])["a9"], new_vectors[1], atol=1e-6)
        assert again.count() == 61 and again.vectors([]) == {}


def test_upsert_rules(tmp_path: Path) -> None:
    with GalleryIndex.create(tmp_path / "idx", FP, DIM, "flat", "never") as index:
        index.add(random_unit(2, DIM, 0), [_item("a"), _item("b")])
        generation = index.stats()["generation"]
        index.upsert(np.zeros((0, DIM), np.float32), [])
        assert index.stats()["generation"] == generation  # nothing to write: no new generation
        # Listed twice: the last entry wins.
        twice = random_unit(2, DIM, 1)
        index.upsert(twice, [_item("c", camera_id="1"), _item("c", camera_id="2")])
        assert index.get("c").camera_id == "2"
        np.testing.assert_allclose(index.vectors(["c"])["c"], twice[1], atol=1e-6)
        # Two images swapping their bytes in one write is fine.
        a, b = index.get("a"), index.get("b")
        swapped = [dataclasses.replace(a, sha256=b.sha256), dataclasses.replace(b, sha256=a.sha256)]
        index.upsert(random_unit(2, DIM, 2), swapped)
        assert index.get("a").sha256 == b.sha256
        generation = index.stats()["generation"]
        # Bytes another image keeps, or two images of the same bytes: refused, nothing written.
        with pytest.raises(ItemExistsError, match="already in the index as 'a'"):
            taken = ItemMeta("d", None, "/d.jpg", index.get("a").sha256, 1.0)
            index.upsert(random_unit(1, DIM, 3), [taken])
        with pytest.raises(ItemExistsError, match="same bytes"):
            same = _item("e")
            index.upsert(random_unit(2, DIM, 4), [same, dataclasses.replace(same, image_id="f")])
        with pytest.raises(IndexStoreError, match="tags"):
            index.upsert(random_unit(1, DIM, 5), [_item("g", tags="red")])
        with pytest.raises(IndexStoreError, match="captured_at"):
            index.upsert(random_unit(1, DIM, 5), [_item("g", captured_at=float("nan"))])
        with pytest.raises(IndexStoreError, match="camera_id"):
            index.upsert(random_unit(1, DIM, 5), [_item("g", camera_id=3)])
        with pytest.raises(IndexStoreError, match="2 vectors for 1 items"):
            index.upsert(random_unit(2, DIM, 5), [_item("g")])
        assert index.stats()["generation"] == generation and index.get("d") is None
        assert index.count() == 3


def test_add_keeps_metadata_and_replace_all_sees_it_change(tmp_path: Path) -> None:
    with GalleryIndex.create(tmp_path / "idx", FP, DIM, "flat", "never") as index:
        tagged = _item("t", camera_id="4", captured_at=100.0, tags=("a", "b"))
        index.add(random_unit(1, DIM, 0), [tagged])
        assert index.get("t") == tagged and list(index.items()) == [tagged]
        with index.exclusive() as writer:
            rows = writer.rows()
            assert rows[0].item == tagged
            moved = dataclasses.replace(rows[0], item=dataclasses.replace(tagged, camera_id="5"))
            writer.replace_all(random_unit(1, DIM, 0), [moved])
        assert index.get("t").camera_id == "5" and index.get("t").tags == ("a", "b")
