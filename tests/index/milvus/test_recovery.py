"""A Milvus store recovers without a restart of its process, on the real Milvus standalone
server: a collection released behind its back is loaded again by the next request; a server
killed and restarted on the same ports and data is served again, every acknowledged write in
it; while it is down, requests fail fast with StoreUnavailableError, whose message names no
address. The backoff between attempts is bounded."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator

import numpy as np
import pytest

from index.errors import StoreUnavailableError
from index.items import ItemMeta
from index.milvus.recovery import Backoff
from index.stores import create_store
from support.milvus import MilvusStandaloneServer
from tests.index.conftest import random_unit

FP = "e" * 64
DIM = 8


def items(prefix: str, n: int) -> list[ItemMeta]:
    return [
        ItemMeta(
            f"{prefix}{j}",
            None if j % 2 else f"p{j}",
            f"/x/{prefix}{j}.jpg",
            hashlib.sha256(f"{prefix}{j}".encode()).hexdigest(),
            1.0,
            camera_id=None if j % 3 else "cam-1",
        )
        for j in range(n)
    ]


@pytest.fixture
def gallery(milvus_server: MilvusStandaloneServer, request: pytest.FixtureRequest) -> Iterator:
    store = create_store(milvus_server.store(f"recovery_{request.node.name[5:30]}"), FP, DIM)
    try:
        yield store
    finally:
        store.close()


def serves_again(store, query: np.ndarray, within_s: float) -> list:
    deadline = time.monotonic() + within_s
    while True:
        try:
            return store.search(query, 10)
        except StoreUnavailableError:
            assert time.monotonic() < deadline, f"not serving {within_s:.0f} s after the restart"
            time.sleep(0.5)


def test_a_released_collection_is_loaded_by_the_next_search(gallery) -> None:
    vectors = random_unit(6, DIM, 3)
    gallery.add(vectors, items("r", 6))
    before = gallery.search(vectors[:2], 3)
    client = gallery._col.live()
    client.release_collection(gallery._col.name)
    assert str(client.get_load_state(gallery._col.name)["state"]).endswith("NotLoad")
    assert gallery.search(vectors[:2], 3) == before
    assert str(client.get_load_state(gallery._col.name)["state"]).endswith("Loaded")
    client.release_collection(gallery._col.name)
    assert gallery.get("r0") == items("r", 6)[0]  # a read by id reloads it too


def test_a_killed_and_restarted_server_is_served_again_with_every_write(
    milvus_server: MilvusStandaloneServer, gallery
) -> None:
    vectors = random_unit(20, DIM, 4)
    acknowledged = items("k", 20)
    gallery.add(vectors, acknowledged)
    expected = gallery.search(vectors[:3], 10)
    milvus_server.kill()
    try:
        for attempt in (lambda: gallery.search(vectors[:1], 5), gallery.count):
            with pytest.raises(StoreUnavailableError) as caught:
                attempt()
            text = str(caught.value)
            assert "127.0.0.1" not in text and str(milvus_server.port) not in text
            assert gallery._col.name not in text
        with pytest.raises(StoreUnavailableError):  # all-or-nothing: refused, nothing written
            gallery.add(random_unit(1, DIM, 5), items("late", 1))
    finally:
        milvus_server.start()
    assert serves_again(gallery, vectors[:3], within_s=60) == expected
    assert sorted(i.image_id for i in gallery.items()) == sorted(i.image_id for i in acknowledged)
    assert gallery.get("late0") is None


def test_the_backoff_doubles_up_to_its_bound_and_resets_on_success() -> None:
    backoff = Backoff(first_s=0.25, longest_s=2.0)
    assert [backoff.failed() for _ in range(6)] == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]
    with pytest.raises(StoreUnavailableError) as caught:
        backoff.check()
    assert caught.value.retry_after_s >= 1.0
    backoff.succeeded()
    backoff.check()  # no delay once a request worked
