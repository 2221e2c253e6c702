"""A search reply's metadata costs no store read per hit: at top_k 100 a Milvus store answers
with one search request (the camera and capture time come back with the hits), and the FAISS
store with its in-memory search plus one batched SQLite read. Counted on the real clients: the
pymilvus client of a milvus-lite store, the SQLite connection of a FAISS folder's manifest."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from index.items import ItemMeta
from service.app import create_app
from service.settings import Settings
from tests.service.support import wait_ready

TOP_K = 100


class Counting:
    """Forwards every attribute; counts the calls of methods by name."""

    def __init__(self, inner: Any, calls: Counter) -> None:
        self._inner = inner
        self._calls = calls

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def counted(*args: Any, **kwargs: Any) -> Any:
            self._calls[name] += 1
            if "consistency_level" in kwargs:
                self._calls[f"{name}:{kwargs['consistency_level']}"] += 1
            if name == "execute" and args:
                self._calls[f"sql:{' '.join(str(args[0]).split())}"] += 1
            return attr(*args, **kwargs)

        return counted


def fill(store: Any, n: int) -> None:
    rng = np.random.default_rng(5)
    vectors = rng.standard_normal((n, store.dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    items = [
        ItemMeta(
            f"calls-{j:04d}",
            f"p{j % 30}",
            f"/x/{j}.jpg",
            hashlib.sha256(f"calls-{j}".encode()).hexdigest(),
            1.0,
            camera_id=f"cam-{j % 4}",
            captured_at=1_700_000_000.0 + j,
        )
        for j in range(n)
    ]
    store.add(vectors, items)


def search(c: TestClient) -> list[dict]:
    reply = c.post("/v1/search", json={"query": "a person in a red coat", "top_k": TOP_K})
    assert reply.status_code == 200, reply.text
    return reply.json()["results"]


def test_top_k_100_on_milvus_is_one_search_request(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings(index_dir=None, store=str(tmp_path / "calls.db"), create_store=True)
    with TestClient(create_app(settings)) as c:
        wait_ready(c, timeout=120)
        store = c.app.state.runtime.store
        fill(store, 150)
        calls: Counter = Counter()
        store._col._client = Counting(store._col._client, calls)
        results = search(c)
        calls = Counter(calls)  # as the search left it (shutting down closes the client)
    assert len(results) == TOP_K
    assert all(r["camera_id"] and r["captured_at"] for r in results)  # described, unread
    assert dict(calls) == {"search": 1, "search:Strong": 1}, calls


def test_searches_ask_milvus_for_the_consistency_the_settings_name(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """TPS_MILVUS_SEARCH_CONSISTENCY reaches the search request; writes stay Strong."""
    settings = make_settings(
        index_dir=None,
        store=str(tmp_path / "session.db"),
        create_store=True,
        milvus_search_consistency="session",
    )
    with TestClient(create_app(settings)) as c:
        wait_ready(c, timeout=120)
        store = c.app.state.runtime.store
        calls: Counter = Counter()
        store._col._client = Counting(store._col._client, calls)
        fill(store, 20)
        search(c)
        calls = Counter(calls)
    assert calls["search:Session"] == 1 and calls["search"] == 1, calls
    assert calls["query:Strong"] >= 1 and not calls["query:Session"], calls  # the add's checks


def test_an_unknown_search_consistency_is_refused(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(ValueError, match="milvus_search_consistency"):
        make_settings(milvus_search_consistency="eventually")


def test_top_k_100_on_the_faiss_store_is_one_batched_read(
    make_settings: Callable[..., Settings],
) -> None:
    with TestClient(create_app(make_settings())) as c:
        wait_ready(c, timeout=120)
        store = c.app.state.runtime.store
        fill(store, 150)
        calls: Counter = Counter()
        store._manifest._conn = Counting(store._manifest._conn, calls)
        results = search(c)
        calls = Counter(calls)
    assert len(results) == TOP_K
    assert all(r["camera_id"] for r in results if r["image_id"].startswith("calls-"))
    reads = {sql: n for sql, n in calls.items() if sql.startswith("sql:")}
    assert list(reads.values()) == [1] and "WHERE image_id IN" in next(iter(reads)), calls
