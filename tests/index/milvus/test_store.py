"""What only the Milvus store has: its file found again by another process, its index kinds,
GPU kinds refused where there is no GPU engine, the gallery meta kept in collection properties,
replicas that see each other's writes at once, and a Milvus server reached over the network
(``milvus-lite server``, the same engine behind gRPC, standing in for a Milvus server).

The shared behaviour (add, dedupe, filters, search...) is in ``test_store_contract.py``.
"""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pymilvus import MilvusClient

from index.errors import IndexCorruptError, IndexMismatchError, IndexStoreError
from index.filters import GalleryFilter
from index.items import ItemMeta
from index.milvus.store import FORMAT, VERSION, MilvusStore
from index.stores import create_store, open_store
from tests.index.conftest import random_unit

FP = "a" * 64
DIM = 16
ROOT = Path(__file__).resolve().parents[3]


def item(name: str, content: str | None = None, **meta: object) -> ItemMeta:
    sha = hashlib.sha256((content or name).encode()).hexdigest()
    return ItemMeta(name, meta.pop("person_id", None), f"/x/{name}.jpg", sha, 2.0, **meta)  # type: ignore[arg-type]


def some_items(n: int) -> list[ItemMeta]:
    return [
        item(
            f"i{j:04d}",
            person_id=None if j % 5 == 0 else f"p{j % 7}",
            camera_id=None if j % 6 == 0 else str(j % 4),
            captured_at=None if j % 9 == 0 else 1000.0 + j,
            tags=("red",) if j % 2 else (),
        )
        for j in range(n)
    ]


def test_a_file_is_found_again_by_another_process(tmp_path: Path) -> None:
    """Close the store (which stops the in-process engine and frees the file), then read it
    back from disk in a fresh interpreter: items, vectors and search."""
    spec = tmp_path / "g.db"
    items = some_items(120)
    vectors = random_unit(len(items), DIM, 0)
    with create_store(spec, FP, DIM, kind="hnsw") as store:
        store.add(vectors[:100], items[:100])
        store.upsert(vectors[100:], items[100:])
        store.remove(["i0007"])
    script = f"""
import json, numpy as np
from index.stores import open_store
store = open_store({str(spec)!r}, {FP!r}, {DIM})
items = sorted(store.items(), key=lambda i: i.image_id)
vecs = store.vectors([i.image_id for i in items])
q = np.array({vectors[3].tolist()!r}, dtype=np.float32)
print(json.dumps({{
    "stats": store.stats(),
    "items": [[i.image_id, i.person_id, i.camera_id, i.captured_at, list(i.tags)] for i in items],
    "vectors": {{k: v.tolist() for k, v in vecs.items()}},
    "top": store.search(q, 1)[0][0].image_id,
}}))
store.close()
"""
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["stats"]["count"] == 119 and seen["stats"]["kind"] == "hnsw"
    assert seen["top"] == "i0003"
    kept = [i for i in items if i.image_id != "i0007"]
    assert seen["items"] == [
        [i.image_id, i.person_id, i.camera_id, i.captured_at, list(i.tags)] for i in kept
    ]
    for n, it in enumerate(items):
        if it.image_id != "i0007":
            np.testing.assert_array_equal(
                np.array(seen["vectors"][it.image_id], np.float32), vectors[n]
            )


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_index_kinds(tmp_path: Path, kind: str) -> None:
    items = some_items(400)
    vectors = random_unit(len(items), DIM, 1)
    with create_store(tmp_path / "k.db", FP, DIM, kind=kind) as store:
        for start in range(0, 400, 100):  # several segments
            store.add(vectors[start : start + 100], items[start : start + 100])
        stats = store.stats()
        assert stats["kind"] == kind
        assert stats["index_type"] == {"flat": "FLAT", "ivf": "IVF_FLAT", "hnsw": "HNSW"}[kind]
        tops = [row[0].image_id for row in store.search(vectors[:50], 1)]
        assert tops == [i.image_id for i in items[:50]]
        # Approximate kinds still find most of the true top 10.
        queries = random_unit(10, DIM, 2)
        exact = np.argsort(-(vectors @ queries.T), axis=0)[:10].T
        found = store.search(queries, 10)
        recall = np.mean(
            [
                len({h.image_id for h in hits} & {items[j].image_id for j in truth}) / 10
                for hits, truth in zip(found, exact, strict=True)
            ]
        )
        assert recall == 1.0 if kind == "flat" else recall >= 0.8
        where = GalleryFilter(camera_ids=("1", "2"), captured_after=1100.0, tags=("red",))
        for hits in store.search(queries, 10, where):
            assert hits and all(where.matches(store.get(h.image_id)) for h in hits)


@pytest.mark.parametrize("kind", ["gpu_cagra", "gpu_brute_force"])
def test_gpu_kinds_are_refused_by_milvus_lite(tmp_path: Path, kind: str) -> None:
    spec = tmp_path / "gpu.db"
    with pytest.raises(IndexStoreError, match=r"needs a Milvus server with GPUs.*milvus-lite"):
        create_store(spec, FP, DIM, kind=kind)
    assert not spec.exists()  # nothing was created


def test_unknown_kind_is_refused(tmp_path: Path) -> None:
    with pytest.raises(IndexStoreError, match="unknown index kind"):
        create_store(tmp_path / "u.db", FP, DIM, kind="pq")


def test_meta_lives_in_collection_properties(tmp_path: Path) -> None:
    spec = tmp_path / "m.db"
    create_store(spec, FP, DIM, kind="hnsw").close()
    client = MilvusClient(str(spec))
    try:
        described = client.describe_collection("gallery")
        props = {k: v for k, v in described["properties"].items() if k.startswith("tps.")}
        assert len(props.pop("tps.creator")) == 32  # the creating process's token
        assert props == {
            "tps.format": FORMAT,
            "tps.version": str(VERSION),
            "tps.fingerprint": FP,
            "tps.dim": str(DIM),
            "tps.kind": "hnsw",
            "tps.encoding_precision": "fp32",
            "tps.encoding_layout": "global",
        }
        assert described["consistency_level_name"] == "Strong"
        fields = {f["name"]: f for f in described["fields"]}
        assert fields["image_id"]["is_primary"] and fields["vector"]["params"]["dim"] == DIM
        assert fields["person_id"]["nullable"] and fields["camera_id"]["nullable"]
    finally:
        client.close()
    with open_store(spec) as store:
        assert (store.fingerprint, store.dim, store.stats()["kind"]) == (FP, DIM, "hnsw")


def test_a_create_that_lost_the_race_leaves_the_winner_s_collection_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Milvus server answers a second create of one name and schema with success (milvus-lite
    refuses it): the loser, past its has_collection check at the same moment as the winner,
    must neither build indexes on the winner's collection nor drop it when that fails."""
    spec = str(tmp_path / "race.db")
    with MilvusStore.create(spec, "gallery", fingerprint=FP, dim=DIM) as winner:
        winner.add(random_unit(3, DIM, 0), some_items(3))
        # The loser's view, as on a server: no collection yet, and its create "succeeds".
        monkeypatch.setattr(MilvusClient, "has_collection", lambda self, name, **kw: False)
        monkeypatch.setattr(MilvusClient, "create_collection", lambda self, *a, **kw: None)
        with pytest.raises(IndexStoreError, match="created meanwhile by another process"):
            MilvusStore.create(spec, "gallery", fingerprint=FP, dim=DIM)
        monkeypatch.undo()
        assert winner.count() == 3 and len(winner.search(random_unit(1, DIM, 1), 3)[0]) == 3


def _set_property(spec: Path, key: str, value: str) -> None:
    client = MilvusClient(str(spec))
    try:
        client.alter_collection_properties("gallery", {key: value})
    finally:
        client.close()


def test_damaged_or_foreign_meta_is_refused(tmp_path: Path) -> None:
    spec = tmp_path / "d.db"
    create_store(spec, FP, DIM).close()
    _set_property(spec, "tps.version", str(VERSION + 1))
    with pytest.raises(IndexStoreError, match="format version"):
        open_store(spec)
    _set_property(spec, "tps.version", str(VERSION))
    _set_property(spec, "tps.dim", str(DIM + 1))
    with pytest.raises(IndexCorruptError, match="vector field"):
        open_store(spec)
    _set_property(spec, "tps.dim", str(DIM))
    open_store(spec, FP, DIM).close()

    other = tmp_path / "other.db"
    client = MilvusClient(str(other))
    client.create_collection("gallery", dimension=DIM)  # somebody else's collection
    client.close()
    with pytest.raises(IndexStoreError, match="not a gallery"):
        open_store(other)
    with pytest.raises(IndexStoreError, match="no such"):
        open_store(tmp_path / "missing.db")


def test_a_second_handle_sees_writes_at_once(tmp_path: Path) -> None:
    """Two replicas on one gallery: no refresh needed, every read is strongly consistent."""
    spec = tmp_path / "r.db"
    vectors = random_unit(3, DIM, 3)
    with create_store(spec, FP, DIM) as writer, open_store(spec, FP, DIM) as reader:
        writer.add(vectors[:2], [item("a"), item("b", camera_id="5")])
        assert reader.count() == 2 and reader.get("b").camera_id == "5"
        assert reader.search(vectors[1], 1, GalleryFilter(camera_ids=("5",)))[0][0].image_id == "b"
        assert reader.add(vectors[1:2], [item("b-copy", content="b")]).duplicates == {"b-copy": "b"}
        writer.remove(["a"])
        assert reader.get("a") is None and reader.refresh() is False
    with pytest.raises(IndexStoreError, match="closed"):
        reader.count()


def test_a_racing_writer_keeps_one_copy(tmp_path: Path) -> None:
    """Two replicas add the same new bytes under different ids at once: both pass the sha256
    check. Whichever re-checks after both wrote drops its row if the other's id sorts first."""
    spec = tmp_path / "race.db"
    vectors = random_unit(2, DIM, 4)
    with create_store(spec, FP, DIM) as store:
        client = MilvusClient(str(spec))
        try:
            # What the other replica wrote between this one's check and its write:
            theirs = item("a-theirs", content="same")
            client.upsert("gallery", [_raw_row(vectors[0], theirs)])
            mine = item("z-mine", content="same")
            client.upsert("gallery", [_raw_row(vectors[1], mine)])
        finally:
            client.close()
        assert store._settle_races([mine]) == {"z-mine": "a-theirs"}
        assert store.get("z-mine") is None and store.get("a-theirs") == theirs
        # The replica whose id sorts first keeps its row.
        assert store._settle_races([theirs]) == {}
        assert store.count() == 1


def test_two_replicas_adding_the_same_bytes(tmp_path: Path) -> None:
    """Two handles add the same 120 files under their own ids at the same time. Whatever the
    interleaving: what each reports is what the gallery holds, every file is there, and no
    file is held by more than the two racers' ids."""
    spec = tmp_path / "two.db"
    vectors = random_unit(120, DIM, 6)
    reports: dict[str, list] = {}

    def replica(store: MilvusStore, prefix: str) -> None:
        out = []
        for start in range(0, 120, 10):
            batch = [
                item(f"{prefix}{j:03d}", content=f"file {j}") for j in range(start, start + 10)
            ]
            out.append(store.add(vectors[start : start + 10], batch))
        reports[prefix] = out

    with create_store(spec, FP, DIM) as first, open_store(spec) as second:
        threads = [
            threading.Thread(target=replica, args=(first, "A")),
            threading.Thread(target=replica, args=(second, "B")),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        held = {i.image_id for i in first.items()}
        added = {i for results in reports.values() for r in results for i in r.added}
        assert held == added and first.count() == len(held)
        holders = Counter(first.get(i).sha256 for i in held)
        assert len(holders) == 120 and max(holders.values()) <= 2
        for results in reports.values():
            for r in results:
                assert all(owner in held for owner in r.duplicates.values())


def _raw_row(vector: np.ndarray, it: ItemMeta) -> dict:
    from index.milvus.store import _row

    return _row(vector, it)


def test_long_fields_are_refused_before_writing(tmp_path: Path) -> None:
    with create_store(tmp_path / "l.db", FP, DIM) as store:
        with pytest.raises(IndexStoreError, match="longer than"):
            store.add(random_unit(1, DIM, 0), [item("a", camera_id="c" * 600)])
        with pytest.raises(IndexStoreError, match="tags"):
            store.add(random_unit(1, DIM, 0), [item("a", tags=tuple(f"t{j}" for j in range(65)))])
        assert store.count() == 0


# --- a server over the network ---------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``milvus-lite server`` on a free port: a Milvus gRPC endpoint, reached as a server is."""
    port = _free_port()
    data = tmp_path_factory.mktemp("milvus-server") / "data"
    log = data.parent / "server.log"
    command = [sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(data)]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    with log.open("w") as stderr:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"no milvus-lite server: {log.read_text()[-2000:]}"
                    ) from None
                time.sleep(0.2)
        yield f"milvus://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_server_collection(server: str) -> None:
    spec = f"{server}/people"
    items = some_items(60)
    vectors = random_unit(len(items), DIM, 5)
    with create_store(spec, FP, DIM) as store:
        assert store.location == spec
        assert store.stats()["engine"] == "milvus-lite"
        assert store.add(vectors, items).added == [i.image_id for i in items]
    with pytest.raises(IndexStoreError, match="already exists"):
        create_store(spec, FP, DIM)
    with pytest.raises(IndexMismatchError):
        open_store(spec, "b" * 64)
    with open_store(spec, FP, DIM) as again:
        assert again.count() == 60
        assert again.search(vectors[4], 1)[0][0].image_id == "i0004"
        where = GalleryFilter(person_ids=("p1",))
        hits = again.search(vectors[4], 5, where)[0]
        assert hits and all(h.person_id == "p1" for h in hits)
    with pytest.raises(IndexStoreError, match="GPUs"):
        create_store(f"{server}/gpu", FP, DIM, kind="gpu_cagra")
    with pytest.raises(IndexStoreError, match="no such collection"):
        open_store(f"{server}/nobody")


def test_an_unreachable_server_is_a_clear_error() -> None:
    with pytest.raises(IndexStoreError, match="could not connect"):
        open_store(f"milvus://127.0.0.1:{_free_port()}/gallery")


def test_store_satisfies_the_protocol(tmp_path: Path) -> None:
    from index.gallery_store import GalleryStore

    with MilvusStore.create(str(tmp_path / "p.db"), "gallery", fingerprint=FP, dim=DIM) as store:
        assert isinstance(store, GalleryStore)
