"""Filtered search on the FAISS store: the top k among the items that pass, never a post-filtered
top k that comes back short. The reference is :meth:`GalleryFilter.matches` and a float64 numpy
ranking over exactly the items it passes."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pytest

from index.faiss import backend as faiss_backend
from index.faiss import filtered_search
from index.faiss.gallery import GalleryIndex
from index.filters import GalleryFilter
from index.gallery_store import GalleryStore
from index.items import ItemMeta
from tests.index.conftest import assert_matches_brute_force, random_unit
from tests.index.faiss.test_gpu_copies import CloneCopier

FP = "f" * 64
DIM = 16
T0 = 1_700_000_000.0

FILTERS = {
    "cameras": GalleryFilter(camera_ids=("3", "7")),
    "window": GalleryFilter(captured_after=T0 + 14 * 3600, captured_before=T0 + 15.5 * 3600),
    "after only": GalleryFilter(captured_after=T0 + 20 * 3600),
    "before only": GalleryFilter(captured_before=T0 + 2 * 3600),
    "cameras in a window": GalleryFilter(
        camera_ids=("3", "7"), captured_after=T0 + 6 * 3600, captured_before=T0 + 18 * 3600
    ),
    "one tag": GalleryFilter(tags=("red",)),
    "all of two tags": GalleryFilter(tags=("red", "bag")),
    "persons": GalleryFilter(person_ids=("p1", "p2", "p40")),
    "person on a camera": GalleryFilter(person_ids=("p5",), camera_ids=("5",)),
    "no tags asked": GalleryFilter(tags=()),
    "an exact instant": GalleryFilter(captured_after=T0 + 3600, captured_before=T0 + 3600),
}


def metadata_items(n: int, seed: int = 0) -> list[ItemMeta]:
    """Items with varied metadata; some lack a camera, a capture time, tags or a person."""
    rng = np.random.default_rng(seed)
    items = []
    for j in range(n):
        cameras, hours = rng.integers(0, 10), rng.uniform(0, 24)
        tags = tuple(t for t in ("red", "bag", "hat") if rng.random() < 0.3)
        items.append(
            ItemMeta(
                f"img{j:06d}",
                None if j % 17 == 0 else f"p{j % 50}",
                f"/cam/{j}.jpg",
                hashlib.sha256(f"{seed}-{j}".encode()).hexdigest(),
                1.0,
                camera_id=None if j % 11 == 0 else str(cameras),
                captured_at=None if j % 13 == 0 else T0 + round(hours * 3600),
                tags=tags,
            )
        )
    # An exact instant at a bound: both bounds are inclusive.
    items[1] = dataclasses.replace(items[1], captured_at=T0 + 3600)
    return items


def check_filtered(
    index: GalleryIndex,
    vectors: np.ndarray,
    items: list[ItemMeta],
    queries: np.ndarray,
    k: int,
    where: GalleryFilter,
) -> None:
    passing = [n for n, item in enumerate(items) if where.matches(item)]
    names = [items[n].image_id for n in passing]
    results = index.search(queries, k, where)
    assert len(results) == len(queries)
    for hits, query in zip(results, queries, strict=True):
        if not passing:
            assert hits == []
            continue
        assert_matches_brute_force(hits, vectors[passing], names, query, k)
        by_id = {item.image_id: item for item in items}
        assert all(h.person_id == by_id[h.image_id].person_id for h in hits)


@pytest.fixture(scope="module")
def small() -> tuple[np.ndarray, list[ItemMeta], np.ndarray]:
    return random_unit(900, DIM, 1), metadata_items(900), random_unit(4, DIM, 2)


@pytest.mark.parametrize("kind", faiss_backend.KINDS)
@pytest.mark.parametrize("name", FILTERS)
def test_filtered_ranking_is_the_brute_force_ranking_of_what_passes(
    tmp_path: Path, small: tuple, kind: str, name: str
) -> None:
    vectors, items, queries = small
    with GalleryIndex.create(tmp_path / "idx", FP, DIM, kind, "never") as index:
        index.add(vectors, items)
        for k in (1, 10, 2000):
            check_filtered(index, vectors, items, queries, k, FILTERS[name])


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_kinds_never_come_back_short(
    tmp_path: Path, small: tuple, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the exhaustive limit IVF and HNSW search with a selector; a row that would come
    back short is ranked again exhaustively."""
    monkeypatch.setattr(filtered_search, "EXHAUSTIVE_MAX", 0)
    vectors, items, queries = small
    with GalleryIndex.create(tmp_path / "idx", FP, DIM, kind, "never") as index:
        index.add(vectors, items)
        for where in FILTERS.values():
            passing = {item.image_id for item in items if where.matches(item)}
            for hits in index.search(queries, 50, where):
                assert len(hits) == min(50, len(passing))
                assert {h.image_id for h in hits} <= passing


def test_twenty_thousand_random_vectors(tmp_path: Path) -> None:
    n = 20_000
    vectors, items = random_unit(n, DIM, 3), metadata_items(n, seed=3)
    queries = random_unit(3, DIM, 4)
    with GalleryIndex.create(tmp_path / "idx", FP, DIM, "flat", "never") as index:
        index.add(vectors, items)
        for where in FILTERS.values():
            check_filtered(index, vectors, items, queries, 25, where)
        # A filter passing most of the gallery, and one passing nearly nothing.
        check_filtered(
            index, vectors, items, queries, 25, GalleryFilter(camera_ids=tuple("012345678"))
        )
        check_filtered(
            index,
            vectors,
            items,
            queries,
            25,
            GalleryFilter(person_ids=("p7",), tags=("red", "bag", "hat")),
        )


def test_nothing_passes_and_empty_filters(tmp_path: Path, small: tuple) -> None:
    vectors, items, queries = small
    with GalleryIndex.create(tmp_path / "idx", FP, DIM, "flat", "never") as index:
        assert index.search(queries, 5, GalleryFilter(camera_ids=("3",))) == [[]] * 4
        index.add(vectors, items)
        for where in (
            GalleryFilter(camera_ids=("no such camera",)),
            GalleryFilter(camera_ids=()),
            GalleryFilter(captured_after=T0 + 10**9),
            GalleryFilter(tags=("red", "nope")),
        ):
            assert index.search(queries, 5, where) == [[]] * 4
        unfiltered = index.search(queries, 7)
        assert index.search(queries, 7, GalleryFilter()) == unfiltered
        assert index.search(queries, 7, None) == unfiltered
        with pytest.raises(Exception, match="GalleryFilter"):
            index.search(queries, 7, {"camera_ids": ["3"]})  # type: ignore[arg-type]


def test_filters_follow_writes(tmp_path: Path, small: tuple) -> None:
    """Upserts change what passes; removed items never come back; other processes' commits
    are seen after refresh()."""
    vectors, items, queries = small
    path = tmp_path / "idx"
    with GalleryIndex.create(path, FP, DIM, "flat", "never") as index:
        index.add(vectors, items)
        reader = GalleryIndex.open(path, use_gpu="never")
        on_9 = GalleryFilter(camera_ids=("9",))
        before = {h.image_id for h in index.search(queries[0], 900, on_9)[0]}
        moved = [i for i in items if i.camera_id == "3"][:5]
        index.upsert(vectors[[items.index(i) for i in moved]], [_on(i, "9") for i in moved])
        after = {h.image_id for h in index.search(queries[0], 900, on_9)[0]}
        assert after == before | {i.image_id for i in moved}
        index.remove([moved[0].image_id])
        assert moved[0].image_id not in {h.image_id for h in index.search(queries[0], 900, on_9)[0]}
        # The reader still serves its own snapshot: only items it holds come back.
        stale = {h.image_id for h in reader.search(queries[0], 900, on_9)[0]}
        assert stale <= {i.image_id for i in items} and moved[0].image_id not in stale
        assert reader.refresh() is True
        assert {h.image_id for h in reader.search(queries[0], 900, on_9)[0]} == after - {
            moved[0].image_id
        }
        reader.close()


def test_filtered_search_runs_on_the_cpu_master(tmp_path: Path) -> None:
    """GPU indexes take no ID selector, and cap k: a filtered search ignores both."""
    n = faiss_backend.GPU_MAX_K + 600
    vectors, items = random_unit(n, DIM, 5), metadata_items(n, seed=5)
    with GalleryIndex.create(tmp_path / "idx", FP, DIM, use_gpu="never") as index:
        index.add(vectors, items)
    with GalleryIndex.open(tmp_path / "idx", use_gpu="always", gpu_copier=CloneCopier()) as gpu:
        stats = gpu.stats()
        assert stats["gpu"] is True and stats["filtered_search"] == "cpu"
        assert stats["store"] == "faiss"
        where = GalleryFilter(captured_after=T0)
        passing = sum(where.matches(i) for i in items)
        assert passing > faiss_backend.GPU_MAX_K
        check_filtered(gpu, vectors, items, vectors[:2], n, where)


def test_the_faiss_store_is_a_gallery_store(tmp_path: Path) -> None:
    with GalleryIndex.create(tmp_path / "idx", FP, DIM, "flat", "never") as index:
        assert isinstance(index, GalleryStore)
        assert index.location == str(tmp_path / "idx")
        assert (index.fingerprint, index.dim, index.count()) == (FP, DIM, 0)


def _on(item: ItemMeta, camera: str) -> ItemMeta:
    return dataclasses.replace(item, camera_id=camera)
