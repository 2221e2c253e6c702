"""Id claims of a Milvus gallery (index/milvus/claims.py), on a milvus-lite file: a claim another
writer holds on an id with other bytes makes an add refuse (409) and write nothing; claims go
once a write is done; a claim of a writer that died is ignored once stale. The race itself
between two replicas on separate hosts: api_tests/scaleout/test_two_hosts_id_race_http.py."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from index.errors import ItemExistsError
from index.items import ItemMeta
from index.milvus import claims as milvus_claims
from index.milvus.store import MilvusStore
from index.stores import create_store
from tests.index.conftest import random_unit

DIM = 8


def item(image_id: str, content: str) -> ItemMeta:
    return ItemMeta(
        image_id, None, f"/x/{content}", hashlib.sha256(content.encode()).hexdigest(), 1.0
    )


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MilvusStore]:
    monkeypatch.setattr(milvus_claims, "WAIT_S", 0.5)
    made = create_store(tmp_path / "claims.db", "f" * 64, DIM)
    try:
        yield made  # type: ignore[misc]
    finally:
        made.close()


def claims_left(store: MilvusStore) -> list[dict]:
    col = store._claims._col
    return col.call("read", lambda c: c.query(col.name, "", ["token", "image_id"], limit=100))


def test_a_claim_on_other_bytes_refuses_the_add(store: MilvusStore) -> None:
    theirs = store._claims.claim([item("x", "theirs")])  # another writer, mid-write
    with pytest.raises(ItemExistsError, match="another writer"):
        store.add(random_unit(1, DIM, 1), [item("x", "mine")])
    assert store.get("x") is None and store.count() == 0
    assert [c["token"] for c in claims_left(store)] == theirs  # ours went, theirs stays
    store._claims.release(theirs)
    assert store.add(random_unit(1, DIM, 1), [item("x", "mine")]).added == ["x"]
    assert claims_left(store) == []


def test_same_bytes_under_one_id_are_no_conflict(store: MilvusStore) -> None:
    theirs = store._claims.claim([item("y", "same")])
    assert store.add(random_unit(1, DIM, 2), [item("y", "same")]).added == ["y"]
    store._claims.release(theirs)


def test_a_stale_claim_of_a_dead_writer_is_ignored_and_removed(store: MilvusStore) -> None:
    col = store._claims._col
    dead = item("z", "dead")
    row = {"token": "0" * 32, "image_id": "z", "sha256": dead.sha256, "vector": [1.0, 0.0]}
    row["claimed_at"] = time.time() - milvus_claims.CLAIM_TTL_S - 60
    col.call("plant", lambda c: c.insert(col.name, [row]))  # a token that sorts first
    assert store.add(random_unit(1, DIM, 3), [item("z", "alive")]).added == ["z"]
    assert claims_left(store) == []
