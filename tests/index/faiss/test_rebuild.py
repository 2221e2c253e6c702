"""rebuild: every source re-encoded with a new bundle, ids kept, swapped in atomically."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bundle.encoders import Bundle
from index.faiss import backend as faiss_backend
from index.store import GalleryIndex, IndexMismatchError, IndexStoreError, ItemMeta, rebuild
from tests.index.conftest import Gallery, assert_matches_brute_force


@pytest.fixture(scope="module")
def new_bundle(second_bundle: Path) -> Bundle:
    return Bundle(second_bundle, device="cpu")


def _vectors_by_name(index: GalleryIndex) -> dict[str, np.ndarray]:
    snap = index._current()
    ids, vectors = faiss_backend.extract(snap.master)
    return {snap.labels[int(i)][0]: v for i, v in zip(ids, vectors, strict=True)}


def _with_metadata(items: list[ItemMeta]) -> list[ItemMeta]:
    return [
        dataclasses.replace(i, camera_id=str(n % 3), captured_at=1e9 + n, tags=("t", str(n % 2)))
        for n, i in enumerate(items)
    ]


def test_rebuild_in_place(tmp_path: Path, bundle, new_bundle: Bundle, gallery: Gallery) -> None:
    path = tmp_path / "idx"
    with GalleryIndex.create(path, bundle.fingerprint, bundle.dim) as index:
        index.add(gallery.vectors, _with_metadata(gallery.items))
        index.remove([gallery.items[0].image_id])
    old_reader = GalleryIndex.open(path, bundle.fingerprint, bundle.dim)
    before = {i.image_id: i for i in old_reader.items()}

    with rebuild(path, new_bundle, progress=False, workers=0) as rebuilt:
        assert rebuilt.stats()["fingerprint"] == new_bundle.fingerprint != bundle.fingerprint
        # ids, persons, paths, hashes, cameras, capture times, tags
        assert {i.image_id: i for i in rebuilt.items()} == before
        by_name = _vectors_by_name(rebuilt)
        names = list(before)
        vectors = np.stack([by_name[n] for n in names])
        position = {i.image_id: n for n, i in enumerate(gallery.items)}
        images = [Image.open(gallery.paths[position[n]]).convert("RGB") for n in names[:3]]
        direct = new_bundle.encode_images(torch.stack([new_bundle.preprocess(i) for i in images]))
        np.testing.assert_allclose(vectors[:3], direct, atol=1e-5)
        query = new_bundle.encode_text(["a man in a blue jacket"])
        assert_matches_brute_force(rebuilt.search(query, 10)[0], vectors, names, query[0], 10)

    # The old bundle is refused from now on; a reader still holding it keeps its snapshot.
    with pytest.raises(IndexMismatchError):
        GalleryIndex.open(path, bundle.fingerprint, bundle.dim)
    with pytest.raises(IndexMismatchError):
        old_reader.refresh()
    assert old_reader.stats()["fingerprint"] == bundle.fingerprint
    assert len(old_reader.search(gallery.vectors[1], 5)[0]) == 5
    old_reader.close()
    assert sorted(p.name for p in path.glob("vectors.*")) == ["vectors.3.faiss"]


def _copied_gallery(tmp_path: Path, gallery: Gallery, n: int) -> list[ItemMeta]:
    (tmp_path / "imgs").mkdir()
    items = []
    for item, src in zip(gallery.items[:n], gallery.paths[:n], strict=True):
        dst = tmp_path / "imgs" / Path(item.image_id).name
        shutil.copy(src, dst)
        items.append(ItemMeta(item.image_id, item.person_id, str(dst), item.sha256, item.added_at))
    return items


def test_rebuild_to_new_location_and_kind(
    tmp_path: Path, bundle, new_bundle: Bundle, gallery: Gallery
) -> None:
    items = _copied_gallery(tmp_path, gallery, 8)
    with GalleryIndex.create(tmp_path / "idx", bundle.fingerprint, bundle.dim) as index:
        index.add(gallery.vectors[:8], items)
    with rebuild(tmp_path / "idx", new_bundle, tmp_path / "new", kind="hnsw", workers=0) as new:
        assert new.stats()["kind"] == "hnsw" and new.stats()["count"] == 8
        assert new.stats()["fingerprint"] == new_bundle.fingerprint
        assert [i.image_id for i in new.items()] == [i.image_id for i in items]
    with GalleryIndex.open(tmp_path / "idx", bundle.fingerprint) as old:  # untouched
        assert old.stats()["count"] == 8 and old.stats()["kind"] == "flat"
    with pytest.raises(IndexStoreError, match="already holds an index"):
        rebuild(tmp_path / "idx", new_bundle, tmp_path / "new", workers=0)


def test_rebuild_into_another_store(
    tmp_path: Path, bundle, new_bundle: Bundle, gallery: Gallery
) -> None:
    """The path taken when Milvus is on either side, here from one FAISS folder to another:
    every item read through the store API, encoded again, written with its metadata."""
    from index.cli.rebuild_store import rebuild_into

    items = _with_metadata(_copied_gallery(tmp_path, gallery, 8))
    with GalleryIndex.create(tmp_path / "idx", bundle.fingerprint, bundle.dim, "ivf") as index:
        index.add(gallery.vectors[:8], items)
    Path(items[0].source_path).unlink()
    options = {"kind": None, "batch_size": 4, "workers": 0, "progress": False}
    with pytest.raises(IndexStoreError, match="1 of 8 source images could not be read"):
        rebuild_into(str(tmp_path / "idx"), new_bundle, str(tmp_path / "new"), **options,
                     drop_unreadable=False)  # fmt: skip
    assert not (tmp_path / "new").exists()
    new = rebuild_into(
        str(tmp_path / "idx"), new_bundle, str(tmp_path / "new"), **options, drop_unreadable=True
    )
    with new:
        assert new.stats()["kind"] == "ivf" and new.fingerprint == new_bundle.fingerprint
        assert list(new.items()) == items[1:]


def test_unreadable_sources(tmp_path: Path, bundle, new_bundle: Bundle, gallery: Gallery) -> None:
    items = _copied_gallery(tmp_path, gallery, 6)
    with GalleryIndex.create(tmp_path / "idx", bundle.fingerprint, bundle.dim) as index:
        index.add(gallery.vectors[:6], items)
    Path(items[2].source_path).unlink()
    with pytest.raises(IndexStoreError, match="1 of 6 source images could not be read"):
        rebuild(tmp_path / "idx", new_bundle, workers=0, progress=False)
    with GalleryIndex.open(tmp_path / "idx", bundle.fingerprint) as unchanged:
        assert unchanged.stats()["count"] == 6 and unchanged.stats()["generation"] == 1
    with rebuild(tmp_path / "idx", new_bundle, workers=0, drop_unreadable=True) as rebuilt:
        assert rebuilt.stats()["count"] == 5 and rebuilt.get(items[2].image_id) is None
