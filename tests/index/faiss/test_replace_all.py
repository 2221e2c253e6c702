"""replace_all / exclusive: a whole new generation from public API, atomic, refusals write
nothing, and other writers wait for an exclusive block."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from index.faiss.manifest import Row
from index.store import GalleryIndex, IndexMismatchError, IndexStoreError
from tests.index.conftest import fake_items, random_unit

DIM = 8
FP = "a" * 64


def _index(path: Path, n: int) -> GalleryIndex:
    index = GalleryIndex.create(path, FP, DIM, use_gpu="never")
    index.add(random_unit(n, DIM, 0), fake_items([f"img{i}" for i in range(n)]))
    return index


def _files(path: Path) -> dict[str, bytes]:
    """The faiss files and index.json (SQLite's own files change on every read)."""
    return {p.name: p.read_bytes() for p in path.iterdir() if p.suffix in {".faiss", ".json"}}


def test_replace_all_keeps_ids_and_swaps_vectors(tmp_path: Path) -> None:
    path = tmp_path / "idx"
    with _index(path, 6) as index:
        index.remove(["img5"])
        with index.exclusive() as writer:
            rows = writer.rows()
            assert [r.id for r in rows] == [0, 1, 2, 3, 4] and writer.next_id == 6
            keep = [rows[0], dataclasses.replace(rows[2], item=_resha(rows[2])), rows[4]]
            fresh = random_unit(3, 4, 1)
            writer.replace_all(fresh, keep, fingerprint="b" * 64, dim=4, kind="hnsw")
            assert writer.generation == 3 and [r.id for r in writer.rows()] == [0, 2, 4]
        stats = index.stats()
        assert (stats["count"], stats["dim"], stats["kind"]) == (3, 4, "hnsw")
        hits = index.search(fresh, 1)
        assert [h[0].image_id for h in hits] == ["img0", "img2", "img4"]
        assert index.get("img2").sha256 == "f" * 64 and index.get("img1") is None
    with pytest.raises(IndexMismatchError):
        GalleryIndex.open(path, FP, DIM)
    with GalleryIndex.open(path, "b" * 64, 4) as again:
        assert again.stats()["generation"] == 3
        with again.exclusive() as writer:
            assert writer.next_id == 6  # ids are never reused
    assert sorted(p.name for p in path.glob("*.faiss")) == ["vectors.3.faiss"]
    assert json.loads((path / "index.json").read_text())["count"] == 3


def _resha(row: Row):
    return dataclasses.replace(row.item, sha256="f" * 64)


@pytest.mark.parametrize(
    "bad",
    ["too_few_vectors", "not_normalised", "same_id_twice", "next_id_too_small", "same_sha"],
)
def test_refused_replacements_write_nothing(tmp_path: Path, bad: str) -> None:
    path = tmp_path / "idx"
    with _index(path, 4) as index:
        before = _files(path)
        with index.exclusive() as writer:
            rows = writer.rows()
        vectors, kwargs = random_unit(4, DIM, 2), {}
        if bad == "too_few_vectors":
            vectors = vectors[:3]
        elif bad == "not_normalised":
            vectors = 2 * vectors
        elif bad == "same_id_twice":
            rows[1] = Row(0, rows[1].item)
        elif bad == "next_id_too_small":
            kwargs = {"next_id": 2}
        else:  # caught by the manifest after the faiss file is written: that file goes again
            rows[1] = Row(1, dataclasses.replace(rows[1].item, sha256=rows[0].item.sha256))
        with pytest.raises(IndexStoreError):
            index.replace_all(vectors, rows, **kwargs)
        assert index.stats()["generation"] == 1
        assert _files(path) == before


def test_exclusive_makes_other_writers_wait(tmp_path: Path) -> None:
    order: list[str] = []
    with _index(tmp_path / "idx", 2) as index:

        def add() -> None:
            index.add(random_unit(1, DIM, 3), fake_items(["late"]))
            order.append("add")

        with index.exclusive() as writer:
            thread = threading.Thread(target=add)
            thread.start()
            time.sleep(0.2)
            assert index.search(random_unit(1, DIM, 4), 5)  # searches do not wait
            writer.replace_all(random_unit(1, DIM, 5), writer.rows()[:1])
            order.append("replace")
        thread.join(10)
        assert order == ["replace", "add"]
        assert sorted(i.image_id for i in index.items()) == ["img0", "late"]
        with pytest.raises(IndexStoreError, match="ended"):
            writer.rows()
        with pytest.raises(IndexStoreError, match="ended"):
            writer.replace_all(np.zeros((0, DIM)), [])
