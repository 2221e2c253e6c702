"""Store migration: FAISS → milvus-lite → FAISS keeps every id, vector and metadata field, and
the verification catches a destination that does not answer like its source."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pytest
from pymilvus import MilvusClient

from index.cli.migrate import (
    MigrationError,
    _approximate_disagreement,
    _disagreement,
    destination_kind,
    migrate,
    verify_copy,
)
from index.errors import IndexStoreError
from index.gallery_store import GalleryStore
from index.items import Hit, ItemMeta
from index.milvus.store import _row
from index.stores import create_store, open_store
from tests.index.conftest import random_unit

FP = "9" * 64
DIM = 16
T0 = 1_700_000_000.0


def rich_items(n: int) -> list[ItemMeta]:
    return [
        ItemMeta(
            f"img-{j:04d}" if j % 10 else f'ünï "{j}"',  # ids that need quoting, too
            None if j % 7 == 0 else f"person {j % 23}",
            f"/data/cam{j % 5}/{j}.jpg",
            hashlib.sha256(f"bytes {j}".encode()).hexdigest(),
            T0 + j * 0.25,
            camera_id=None if j % 6 == 0 else f"cam{j % 5}",
            captured_at=None if j % 8 == 0 else T0 - j * 60.5,
            tags=tuple(t for n, t in enumerate(("red", "bag", "hat")) if (j >> n) & 1),
        )
        for j in range(n)
    ]


def everything(store: GalleryStore) -> tuple[list[ItemMeta], dict[str, np.ndarray]]:
    items = sorted(store.items(), key=lambda i: i.image_id)
    return items, store.vectors([i.image_id for i in items])


def make_source(path: Path, n: int, kind: str = "flat") -> tuple[list[ItemMeta], np.ndarray]:
    items, vectors = rich_items(n), random_unit(n, DIM, 11)
    with create_store(path, FP, DIM, kind, use_gpu="never") as store:
        store.add(vectors[: n // 2], items[: n // 2])
        store.add(vectors[n // 2 :], items[n // 2 :])
    return items, vectors


def test_faiss_to_milvus_and_back_keeps_everything(tmp_path: Path) -> None:
    items, vectors = make_source(tmp_path / "faiss", 230)
    there = migrate(tmp_path / "faiss", tmp_path / "copy.db", verify=230, batch_size=64, seed=0)
    assert there["copied"] == 230 and there["verified"] == 230 and there["mismatches"] == 0
    assert there["exact"] is True and there["kind"] == "flat" and there["seconds"] > 0
    back = migrate(tmp_path / "copy.db", tmp_path / "back", verify=50, batch_size=100, seed=1)
    assert back["copied"] == 230 and back["verified"] == 50 and back["mismatches"] == 0

    expected = sorted(items, key=lambda i: i.image_id)
    by_id = {it.image_id: vectors[n] for n, it in enumerate(items)}
    for spec in (tmp_path / "faiss", tmp_path / "copy.db", tmp_path / "back"):
        with open_store(spec, FP, DIM, use_gpu="never") as store:
            got_items, got_vectors = everything(store)
            assert got_items == expected, spec
            for image_id, row in by_id.items():
                np.testing.assert_array_equal(got_vectors[image_id], row)
            assert store.stats()["kind"] == "flat"


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_the_index_kind_travels(tmp_path: Path, kind: str) -> None:
    make_source(tmp_path / "faiss", 300, kind)
    summary = migrate(tmp_path / "faiss", tmp_path / "m.db", verify=60, seed=2)
    assert summary["kind"] == kind and summary["exact"] is False
    assert summary["overlap"] >= 0.8 and summary["mismatches"] == 0
    with open_store(tmp_path / "m.db") as store:
        assert store.stats()["kind"] == kind


def test_gpu_kinds_map_to_the_nearest_faiss_kind(tmp_path: Path) -> None:
    assert destination_kind("gpu_brute_force", tmp_path / "f") == "flat"
    assert destination_kind("gpu_cagra", tmp_path / "f") == "hnsw"
    assert destination_kind("gpu_cagra", "milvus://h:1/c") == "gpu_cagra"
    assert destination_kind("ivf", tmp_path / "x.db") == "ivf"


def test_an_empty_gallery_migrates(tmp_path: Path) -> None:
    create_store(tmp_path / "empty.db", FP, DIM).close()
    summary = migrate(tmp_path / "empty.db", tmp_path / "faiss")
    assert (summary["copied"], summary["verified"], summary["mismatches"]) == (0, 0, 0)


def test_the_destination_must_be_new(tmp_path: Path) -> None:
    make_source(tmp_path / "faiss", 20)
    create_store(tmp_path / "taken.db", FP, DIM).close()
    with pytest.raises(IndexStoreError, match="already exists"):
        migrate(tmp_path / "faiss", tmp_path / "taken.db")
    with pytest.raises(IndexStoreError):
        migrate(tmp_path / "faiss", tmp_path / "faiss")


def _tamper(spec: Path, change: str, items: list[ItemMeta], vectors: np.ndarray) -> str:
    """Change one copied item the way ``change`` says; return its id."""
    victim, row = items[17], vectors[17]
    with open_store(spec, FP, DIM) as store:
        if change == "vector":
            other = random_unit(1, DIM, 99)[0]
            store.upsert(other[None, :], [victim])
        elif change == "metadata":
            store.upsert(row[None, :], [dataclasses.replace(victim, camera_id="elsewhere")])
        elif change == "missing":
            store.remove([victim.image_id])
    return victim.image_id


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ("vector", "its vector differs"),
        ("metadata", "metadata"),
        ("missing", "the destination 39"),
    ],
)
def test_verification_catches_a_tampered_destination(
    tmp_path: Path, change: str, says: str
) -> None:
    items, vectors = make_source(tmp_path / "faiss", 40)
    migrate(tmp_path / "faiss", tmp_path / "copy.db", verify=40)
    assert verify_copy(tmp_path / "faiss", tmp_path / "copy.db", verify=40)["mismatches"] == 0
    victim = _tamper(tmp_path / "copy.db", change, items, vectors)
    with pytest.raises(MigrationError, match=says) as caught:
        verify_copy(tmp_path / "faiss", tmp_path / "copy.db", verify=40)
    assert "verification failed" in str(caught.value)
    if change != "missing":
        assert victim in str(caught.value)


def _hits(*pairs: tuple[str, float]) -> list[Hit]:
    return [Hit(image_id, None, score) for image_id, score in pairs]


def test_how_rankings_are_compared() -> None:
    a = _hits(("x", 0.9), ("y", 0.8), ("z", 0.8), ("w", 0.5))
    assert _disagreement(a, a) is None
    assert _disagreement(a, _hits(("x", 0.9), ("z", 0.8), ("y", 0.8), ("w", 0.5))) is None
    assert _disagreement(a, _hits(("x", 0.9), ("y", 0.8), ("z", 0.8), ("v", 0.5))) is None
    assert "no tie" in _disagreement(a, _hits(("q", 0.9), ("y", 0.8), ("z", 0.8), ("w", 0.5)))
    assert "rank 1" in _disagreement(a, _hits(("x", 0.9), ("y", 0.7), ("z", 0.8), ("w", 0.5)))
    assert "hits" in _disagreement(a, a[:3])
    # Approximate: other neighbours are fine, other scores for the same id are not.
    assert _approximate_disagreement(a, _hits(("x", 0.9), ("v", 0.6))) is None
    assert "first hit" in _approximate_disagreement(a, _hits(("v", 0.95), ("x", 0.9)))
    assert "scores" in _approximate_disagreement(a, _hits(("x", 0.9), ("w", 0.6)))


def test_a_source_holding_the_same_bytes_twice_is_refused(tmp_path: Path) -> None:
    """A Milvus gallery can hold one file under two ids (two replicas raced); the FAISS store
    refuses that, so the migration stops and names them."""
    vectors = random_unit(2, DIM, 5)
    first = ItemMeta("a", None, "/a.jpg", "same", 1.0)
    create_store(tmp_path / "raced.db", FP, DIM).close()
    client = MilvusClient(str(tmp_path / "raced.db"))
    try:
        client.upsert(
            "gallery",
            [_row(vectors[0], first), _row(vectors[1], dataclasses.replace(first, image_id="b"))],
        )
    finally:
        client.close()
    with pytest.raises(MigrationError, match="same bytes"):
        migrate(tmp_path / "raced.db", tmp_path / "faiss")
