"""The encoding record: a gallery encoded one way is never searched with queries encoded
another, in the folder index and in the Milvus store; indexes made before the record read as
unknown precision (any runtime searches them, with a warning) and global layout."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from index.encoding import Encoding, check
from index.errors import EncodingMismatchError, IndexMismatchError, IndexStoreError
from index.faiss.manifest import MANIFEST_FILE
from index.stores import create_store, open_store
from tests.index.conftest import fake_items, random_unit

FP = "e" * 64
DIM = 8
BF16 = Encoding("bf16")
PARTS = Encoding("fp32", "parts:M=4,K=6,dp=256")


def test_meta_round_trip_and_defaults() -> None:
    assert Encoding.from_meta(BF16.to_meta()) == BF16
    assert Encoding.from_meta(PARTS.to_meta()) == PARTS
    assert Encoding.from_meta({}) == Encoding("unknown", "global")
    with pytest.raises(IndexStoreError, match="precision"):
        Encoding("fp16")
    with pytest.raises(IndexMismatchError, match="cannot use"):
        Encoding.from_meta({"encoding_precision": "int4"})


def test_check_says_what_to_do() -> None:
    check(BF16, None)  # no expectation: anything goes
    check(BF16, Encoding("bf16"))
    with pytest.raises(EncodingMismatchError, match="TPS_PRECISION=bf16") as err:
        check(BF16, Encoding("fp32"), "gallery g")
    assert "gallery g was encoded in bf16 but this runtime encodes queries in fp32" in str(err)
    with pytest.raises(EncodingMismatchError, match=r"holds global vectors.*parts mode"):
        check(Encoding(), PARTS)
    with pytest.raises(EncodingMismatchError, match=r"part-level vectors.*global mode"):
        check(PARTS, Encoding())


@pytest.mark.parametrize("spec", ["idx", "g.db"], ids=["folder", "milvus-lite"])
def test_recorded_and_checked_on_open(tmp_path: Path, spec: str) -> None:
    where = tmp_path / spec
    with create_store(where, FP, DIM, encoding=BF16) as store:
        store.add(random_unit(3, DIM, 0), fake_items(["a", "b", "c"]))
        assert store.encoding == BF16
        assert store.stats()["encoding"] == {"precision": "bf16", "layout": "global"}
    with pytest.raises(EncodingMismatchError, match="encoded in bf16 but this runtime encodes"):
        open_store(where, FP, DIM, encoding=Encoding("fp32"))
    with pytest.raises(EncodingMismatchError, match="global vectors"):
        open_store(where, FP, DIM, encoding=Encoding("bf16", PARTS.layout))
    with open_store(where, FP, DIM, encoding=BF16) as store:
        assert store.count() == 3
    with open_store(where) as store:  # no expectation: opens, and says what it holds
        assert store.encoding == BF16


def test_default_is_fp32_global_and_writes_keep_it(tmp_path: Path) -> None:
    with create_store(tmp_path / "idx", FP, DIM) as store:
        store.add(random_unit(2, DIM, 1), fake_items(["a", "b"]))
        store.remove(["a"])
    with open_store(tmp_path / "idx", encoding=Encoding()) as store:
        assert store.encoding == Encoding() and store.count() == 1


def test_folder_index_without_the_record_is_of_unknown_precision(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with create_store(tmp_path / "idx", FP, DIM, encoding=BF16) as store:
        store.add(random_unit(2, DIM, 2), fake_items(["a", "b"]))
    with sqlite3.connect(tmp_path / "idx" / MANIFEST_FILE) as conn:  # as an older index was
        conn.execute("DELETE FROM meta WHERE key LIKE 'encoding_%'")
    for runtime in (Encoding(), BF16):  # either runtime may have built it: both search it
        opened = open_store(tmp_path / "idx", FP, DIM, encoding=runtime)
        with caplog.at_level("WARNING"), opened as store:
            assert store.encoding == Encoding("unknown", "global") and store.count() == 2
        assert "does not record its encode precision" in caplog.text
    with pytest.raises(EncodingMismatchError, match="holds global vectors"):  # layout still checked
        open_store(tmp_path / "idx", encoding=PARTS)


def test_milvus_collection_without_the_record_is_of_unknown_precision(tmp_path: Path) -> None:
    from pymilvus import MilvusClient

    from index.milvus.schema import PROP, collection_schema

    spec = tmp_path / "old.db"
    client = MilvusClient(str(spec))
    old = {"format": "tps-gallery-milvus", "version": "1", "fingerprint": FP, "dim": str(DIM)}
    props = {PROP + k: v for k, v in (old | {"kind": "flat"}).items()}
    client.create_collection("gallery", schema=collection_schema(DIM), properties=props)
    client.close()
    for runtime in (Encoding(), BF16):
        with open_store(spec, FP, DIM, encoding=runtime) as store:
            assert store.encoding == Encoding("unknown")
    with pytest.raises(EncodingMismatchError, match="holds global vectors"):
        open_store(spec, FP, DIM, encoding=PARTS)


def test_migrate_keeps_the_record(tmp_path: Path) -> None:
    from index.cli.migrate import migrate

    with create_store(tmp_path / "idx", FP, DIM, encoding=BF16) as store:
        store.add(random_unit(3, DIM, 3), fake_items(["a", "b", "c"]))
    migrate(str(tmp_path / "idx"), str(tmp_path / "copy.db"))
    with open_store(tmp_path / "copy.db", encoding=BF16) as copy:
        assert copy.encoding == BF16 and copy.count() == 3


def test_rebuild_records_the_new_encoding(tmp_path: Path, gallery, bundle) -> None:
    from index.store import GalleryIndex, rebuild

    with GalleryIndex.create(tmp_path / "idx", FP, bundle.dim, encoding=BF16) as index:
        index.add(gallery.vectors[:5], gallery.items[:5])
    with rebuild(tmp_path / "idx", bundle, workers=0, progress=False) as rebuilt:
        assert rebuilt.encoding == Encoding(bundle.precision) == Encoding("fp32")
        assert rebuilt.count() == 5
