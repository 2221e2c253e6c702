"""One contract, every gallery store: the FAISS + SQLite folder, Milvus on a milvus-lite file,
and the real Milvus standalone server (2.3: no null values, older scalar indexes).

The service and the CLI see only :class:`index.gallery_store.GalleryStore`; whatever store a
setting picks must behave the same. Each case runs on a fresh store made by
:func:`index.stores.create_store` from a tmp folder, a tmp ``x.db`` file or a new collection on
one server started for the session. References: a float64 numpy ranking for search,
:meth:`GalleryFilter.matches` for filters.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from index.errors import IndexMismatchError, ItemExistsError
from index.filters import GalleryFilter
from index.gallery_store import GalleryStore
from index.items import AddResult, ItemMeta
from index.stores import create_store, open_store, store_kind
from support.milvus import MilvusStandaloneServer
from tests.index.conftest import assert_matches_brute_force, random_unit

FP = "c" * 64
DIM = 16
T0 = 1_700_000_000.0
STORES = {"faiss": "gallery", "milvus-lite": "x.db", "milvus": None}
_collections = itertools.count()


def spec_for(request: pytest.FixtureRequest, root: Path, store: str) -> Path | str:
    """A folder, a file, or a new collection on the session's Milvus server."""
    if store == "milvus":
        server: MilvusStandaloneServer = request.getfixturevalue("milvus_server")
        return server.store(f"contract_{next(_collections)}")
    return root / STORES[store]  # type: ignore[operator]


def name_of(spec: Path | str) -> str:
    return spec.name if isinstance(spec, Path) else spec.rsplit("/", 1)[1]


@pytest.fixture(params=list(STORES))
def spec(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    return spec_for(request, tmp_path, request.param)


@pytest.fixture
def store(spec: Path | str) -> Iterator[GalleryStore]:
    made = create_store(spec, FP, DIM, use_gpu="never")
    try:
        yield made
    finally:
        made.close()


def item(name: str, content: str | None = None, **meta: object) -> ItemMeta:
    """An item whose sha256 derives from ``content`` (default: its name)."""
    sha = hashlib.sha256((content or name).encode()).hexdigest()
    return ItemMeta(name, meta.pop("person_id", None), f"/x/{name}.jpg", sha, 1.5, **meta)  # type: ignore[arg-type]


def metadata_items(n: int, seed: int = 0) -> list[ItemMeta]:
    """Items with varied metadata; some lack a person, a camera, a capture time or tags, and
    some camera names need quoting in a filter expression."""
    rng = np.random.default_rng(seed)
    cameras = ["0", "1", "2", "3", "cam-é", 'door "B"', "back\\slash", "7", "8", "9"]
    items = []
    for j in range(n):
        items.append(
            ItemMeta(
                f"img{j:05d}",
                None if j % 17 == 0 else f"p{j % 40}",
                f"/cam/{j}.jpg",
                hashlib.sha256(f"{seed}-{j}".encode()).hexdigest(),
                float(j),
                camera_id=None if j % 11 == 0 else cameras[int(rng.integers(0, 10))],
                captured_at=None if j % 13 == 0 else T0 + round(rng.uniform(0, 24) * 3600),
                tags=tuple(t for t in ("red", "bag", "hat") if rng.random() < 0.35),
            )
        )
    items[1] = dataclasses.replace(items[1], captured_at=T0 + 3600)  # exactly on a bound
    return items


# --- writes and reads -----------------------------------------------------------------------


def test_add_then_read_everything_back(store: GalleryStore, spec: Path | str) -> None:
    items = metadata_items(40)
    vectors = random_unit(40, DIM, 1)
    assert store.plan_add(items) == (list(range(40)), {})
    result = store.add(vectors, items)
    assert result == AddResult([i.image_id for i in items], {})
    assert store.count() == 40
    for it in items:
        assert store.get(it.image_id) == it
    assert store.get("absent") is None
    wanted = [it.image_id for it in items] + ["absent"]
    assert store.get_many(wanted) == {it.image_id: it for it in items}
    assert sorted(store.items(), key=lambda i: i.image_id) == items
    got = store.vectors(["img00003", "absent", "img00000"])
    assert list(got) == ["img00003", "img00000"]
    np.testing.assert_array_equal(got["img00003"], vectors[3])
    assert got["img00000"].dtype == np.float32
    stats = store.stats()
    assert (stats["count"], stats["dim"], stats["fingerprint"], stats["kind"]) == (
        40,
        DIM,
        FP,
        "flat",
    )
    assert stats["store"] == ("faiss" if store_kind(spec) == "faiss" else "milvus")
    assert (store.fingerprint, store.dim) == (FP, DIM)
    assert name_of(spec) in store.location


def test_add_dedupes_by_sha256(store: GalleryStore) -> None:
    store.add(random_unit(2, DIM, 0), [item("a"), item("b")])
    batch = [
        item("a"),  # re-added unchanged: a duplicate of itself
        item("a-copy", content="a"),  # same bytes, new id: a duplicate of "a"
        item("c"),
        item("c"),  # listed twice in the batch: one copy, nothing reported
        item("d"),
        item("d-copy", content="d"),  # same bytes as an earlier item of this batch
    ]
    vectors = random_unit(len(batch), DIM, 1)
    planned = store.plan_add(batch)
    assert planned == ([2, 4], {"a": "a", "a-copy": "a", "d-copy": "d"})
    assert store.count() == 2  # planning writes nothing
    result = store.add(vectors, batch)
    assert result == AddResult(["c", "d"], {"a": "a", "a-copy": "a", "d-copy": "d"})
    assert store.count() == 4 and store.get("a-copy") is None
    np.testing.assert_array_equal(store.vectors(["c"])["c"], vectors[2])


def test_an_id_taken_by_other_bytes_adds_nothing(store: GalleryStore) -> None:
    store.add(random_unit(1, DIM, 0), [item("a")])
    with pytest.raises(ItemExistsError):
        store.add(random_unit(2, DIM, 1), [item("new"), item("a", content="other bytes")])
    with pytest.raises(ItemExistsError):
        store.plan_add([item("a", content="other bytes")])
    assert store.count() == 1 and store.get("new") is None


def test_upsert_adds_and_replaces(store: GalleryStore) -> None:
    vectors = random_unit(3, DIM, 0)
    store.add(vectors, [item("a"), item("b"), item("c")])
    fresh = random_unit(3, DIM, 1)
    changed = [
        item("a", content="a2", camera_id="cam-é", captured_at=T0, tags=("red", "bag")),
        item("new", person_id="p9"),
        item("b", camera_id="3"),
    ]
    store.upsert(fresh, changed)
    assert store.count() == 4
    for it in changed:
        assert store.get(it.image_id) == it
    got = store.vectors(["a", "new", "b", "c"])
    for name, row in zip(["a", "new", "b"], fresh, strict=True):
        np.testing.assert_array_equal(got[name], row)
    np.testing.assert_array_equal(got["c"], vectors[2])
    top = store.search(fresh[0], 1)[0][0]
    assert top.image_id == "a" and abs(top.score - 1.0) < 1e-5
    # The last entry of an id listed twice wins.
    twice = random_unit(2, DIM, 2)
    store.upsert(twice, [item("c", tags=("x",)), item("c", tags=("y",))])
    assert store.get("c").tags == ("y",)
    np.testing.assert_array_equal(store.vectors(["c"])["c"], twice[1])


def test_upsert_refuses_bytes_another_id_keeps(store: GalleryStore) -> None:
    store.add(random_unit(2, DIM, 0), [item("a"), item("b")])
    with pytest.raises(ItemExistsError):
        store.upsert(random_unit(2, DIM, 1), [item("z"), item("b2", content="a")])
    assert store.count() == 2 and store.get("z") is None


def test_remove_returns_the_ids_present(store: GalleryStore) -> None:
    vectors = random_unit(5, DIM, 0)
    store.add(vectors, [item(n) for n in "abcde"])
    assert store.remove(["d", "zz", "b", "d"]) == ["d", "b"]
    assert store.remove(["zz"]) == [] and store.remove([]) == []
    assert store.count() == 3
    assert store.get("b") is None and store.vectors(["b", "d"]) == {}
    assert sorted(i.image_id for i in store.items()) == ["a", "c", "e"]
    hits = store.search(vectors, 5)
    assert all(h.image_id in {"a", "c", "e"} for row in hits for h in row)
    # Removed bytes may come back, under any id.
    assert store.add(vectors[1:2], [item("b-again", content="b")]).added == ["b-again"]


def test_items_pages_through_a_large_gallery(store: GalleryStore) -> None:
    n = 2600  # more than two pages of 1000
    items = [item(f"i{j:05d}", person_id=f"p{j % 7}") for j in range(n)]
    store.add(random_unit(n, DIM, 3), items)
    listed = list(store.items())
    assert len(listed) == n and sorted(listed, key=lambda i: i.image_id) == items


def test_writes_are_seen_by_the_next_read(store: GalleryStore) -> None:
    vectors = random_unit(30, DIM, 4)
    for j in range(30):  # one write per item, each read straight after
        store.add(vectors[j : j + 1], [item(f"w{j}")])
        assert store.count() == j + 1
        assert store.search(vectors[j], 1)[0][0].image_id == f"w{j}"
        assert store.get(f"w{j}") is not None
    store.upsert(vectors[0:1], [item("w5", camera_id="9")])
    assert store.search(vectors[0], 2, GalleryFilter(camera_ids=("9",)))[0][0].image_id == "w5"
    store.remove(["w0"])
    assert store.search(vectors[0], 1)[0][0].image_id == "w5"
    assert store.refresh() is False  # nothing new from elsewhere


def test_empty_store_and_empty_inputs(store: GalleryStore) -> None:
    q = random_unit(2, DIM, 0)
    assert store.search(q, 5) == [[], []]
    assert store.search(q, 5, GalleryFilter(camera_ids=("1",))) == [[], []]
    assert store.search(np.zeros((0, DIM), np.float32), 5) == []
    assert store.count() == 0 and list(store.items()) == [] and store.vectors([]) == {}
    assert store.add(np.zeros((0, DIM), np.float32), []) == AddResult([], {})


def test_bad_vectors_are_refused(store: GalleryStore) -> None:
    with pytest.raises(IndexMismatchError):
        store.add(random_unit(1, DIM + 1, 0), [item("a")])
    with pytest.raises(Exception, match="normalised"):
        store.add(random_unit(1, DIM, 0) * 2, [item("a")])
    bad = random_unit(1, DIM, 0)
    bad[0, 0] = np.nan
    with pytest.raises(Exception, match="NaN"):
        store.add(bad, [item("a")])
    with pytest.raises(IndexMismatchError):
        store.search(random_unit(1, DIM + 1, 0), 3)
    with pytest.raises(ValueError):
        store.search(random_unit(1, DIM, 0), 0)
    assert store.count() == 0


# --- opening ---------------------------------------------------------------------------------


def test_open_checks_fingerprint_and_dim(spec: Path | str) -> None:
    with_items = create_store(spec, FP, DIM, use_gpu="never")
    vectors = random_unit(3, DIM, 0)
    with_items.add(vectors, [item("a"), item("b", camera_id="1"), item("c")])
    with_items.close()
    with pytest.raises(IndexMismatchError, match="bundle"):
        open_store(spec, "d" * 64, DIM, use_gpu="never")
    with pytest.raises(IndexMismatchError, match="dimensional"):
        open_store(spec, FP, DIM * 2, use_gpu="never")
    again = open_store(spec, FP, DIM, use_gpu="never")
    try:
        assert again.count() == 3 and again.get("b") == item("b", camera_id="1")
        assert again.search(vectors[1], 1)[0][0].image_id == "b"
    finally:
        again.close()
    anyone = open_store(spec, use_gpu="never")  # no expectations: opens whatever it holds
    try:
        assert (anyone.fingerprint, anyone.dim) == (FP, DIM)
    finally:
        anyone.close()


def test_create_refuses_an_existing_store(spec: Path | str) -> None:
    create_store(spec, FP, DIM, use_gpu="never").close()
    with pytest.raises(Exception, match=r"exist|not empty|already holds"):
        create_store(spec, FP, DIM, use_gpu="never")


# --- search ---------------------------------------------------------------------------------


def test_search_equals_a_numpy_ranking(store: GalleryStore) -> None:
    n = 300
    vectors = random_unit(n, DIM, 5)
    items = [item(f"s{j:04d}", person_id=f"p{j % 9}") for j in range(n)]
    store.add(vectors, items)
    names = [i.image_id for i in items]
    queries = random_unit(6, DIM, 6)
    for k in (1, 10, 50):
        for hits, query in zip(store.search(queries, k), queries, strict=True):
            assert_matches_brute_force(hits, vectors, names, query, k)
            assert all(h.person_id == f"p{int(h.image_id[1:]) % 9}" for h in hits)
    # More than the gallery: everything, ranked.
    assert_matches_brute_force(store.search(queries[0], n + 5)[0], vectors, names, queries[0], n)


FILTERS = {
    "cameras": GalleryFilter(camera_ids=("3", "7")),
    "cameras needing quotes": GalleryFilter(camera_ids=("cam-é", 'door "B"', "back\\slash")),
    "window": GalleryFilter(captured_after=T0 + 14 * 3600, captured_before=T0 + 16 * 3600),
    "after only": GalleryFilter(captured_after=T0 + 20 * 3600),
    "before only": GalleryFilter(captured_before=T0 + 2 * 3600),
    "an exact instant": GalleryFilter(captured_after=T0 + 3600, captured_before=T0 + 3600),
    "persons": GalleryFilter(person_ids=("p1", "p2", "p39")),
    "one tag": GalleryFilter(tags=("red",)),
    "all of two tags": GalleryFilter(tags=("red", "bag")),
    "no tags asked": GalleryFilter(tags=()),
    "nothing asked": GalleryFilter(),
    "cameras in a window": GalleryFilter(
        camera_ids=("1", "2", "cam-é"), captured_after=T0 + 6 * 3600, captured_before=T0 + 18 * 3600
    ),
    "everything at once": GalleryFilter(
        camera_ids=("0", "1", "2", "3", "7"),
        person_ids=tuple(f"p{j}" for j in range(0, 40, 2)),
        captured_after=T0 + 3 * 3600,
        captured_before=T0 + 21 * 3600,
        tags=("red",),
    ),
    "an unknown camera": GalleryFilter(camera_ids=("nowhere",)),
    "no cameras listed": GalleryFilter(camera_ids=()),
    "no persons listed": GalleryFilter(person_ids=()),
    "an empty window": GalleryFilter(captured_after=T0 + 30 * 3600),
}


@pytest.fixture(scope="module", params=list(STORES))
def filtered(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[GalleryStore, np.ndarray, list[ItemMeta]]]:
    """One gallery with varied metadata per store, shared by the filter cases (read-only)."""
    items = metadata_items(400, seed=7)
    vectors = random_unit(len(items), DIM, 8)
    where = spec_for(request, tmp_path_factory.mktemp("filtered"), request.param)
    made = create_store(where, FP, DIM, use_gpu="never")
    made.add(vectors, items)
    yield made, vectors, items
    made.close()


@pytest.mark.parametrize("name", list(FILTERS))
def test_filtered_search_equals_brute_force(
    filtered: tuple[GalleryStore, np.ndarray, list[ItemMeta]], name: str
) -> None:
    store, vectors, items = filtered
    where = FILTERS[name]
    passing = [n for n, it in enumerate(items) if where.matches(it)]
    names = [items[n].image_id for n in passing]
    queries = random_unit(4, DIM, 9)
    for k in (1, 10, 500):
        results = store.search(queries, k, where)
        assert len(results) == len(queries)
        for hits, query in zip(results, queries, strict=True):
            if not passing:
                assert hits == []
                continue
            assert_matches_brute_force(hits, vectors[passing], names, query, min(k, len(names)))
            found = store.get_many([hit.image_id for hit in hits])  # one batched read
            assert set(found) == {hit.image_id for hit in hits}
            assert all(where.matches(item) for item in found.values())


def test_filters_see_every_kind_of_unknown(
    filtered: tuple[GalleryStore, np.ndarray, list[ItemMeta]],
) -> None:
    """The gallery holds items without a person, a camera, a time or tags, and each kind of
    filter excludes them: the cases above are not vacuous."""
    store, _, items = filtered
    assert any(i.person_id is None for i in items) and any(i.camera_id is None for i in items)
    assert any(i.captured_at is None for i in items) and any(not i.tags for i in items)
    no_time = next(i for i in items if i.captured_at is None)
    query = store.vectors([no_time.image_id])[no_time.image_id]
    assert store.search(query, 1)[0][0].image_id == no_time.image_id
    window = GalleryFilter(captured_after=0.0, captured_before=T0 * 2)
    assert store.search(query, 1, window)[0][0].image_id != no_time.image_id
