"""``python -m index`` with per-image metadata and store specs: ``--metadata`` on build/add,
search filters, ``info``'s store kind, and ``migrate``'s wiring."""

from __future__ import annotations

import json
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from index.cli.commands import main
from index.encoding import Encoding
from index.filters import GalleryFilter
from index.store import GalleryIndex

T = 1_714_572_000.0  # 2024-05-01T14:00:00Z
FAST = ("--workers", "0", "--device", "cpu")


def _run(capsys: pytest.CaptureFixture, *args: object) -> object:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def _fails(capsys: pytest.CaptureFixture, *args: object) -> str:
    """The one ``error:`` line of a command refused with exit code 2."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2 and out == "", err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture
def camera(tmp_path: Path, synthetic_root: Path) -> Path:
    folder = tmp_path / "camera"
    for person in ("p0001", "p0002"):
        shutil.copytree(synthetic_root / "imgs" / person, folder / person)
    return folder


def _noise_jpg(path: Path, seed: int) -> None:
    pixels = np.random.default_rng(seed).integers(0, 256, (48, 24, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def _sidecar(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_metadata_build_add_and_filtered_search(
    tmp_path: Path, capsys: pytest.CaptureFixture, camera: Path, random_bundle: Path, bundle
) -> None:
    names = sorted(p.relative_to(camera).as_posix() for p in camera.rglob("*.jpg"))
    rows = [
        {"file": name, "camera_id": str(3 + 4 * (n % 2)), "captured_at": T + 600 * n,
         "tags": ["red"] if n % 3 == 0 else []}
        for n, name in enumerate(names)
    ]  # fmt: skip
    rows[-1] = {"file": Path(names[-1]).name, "person_id": "someone"}  # a bare name, no camera
    idx = tmp_path / "idx"
    meta = _sidecar(tmp_path / "meta.jsonl", rows)
    built = _run(
        capsys, "build", "--bundle", random_bundle, "--images", camera, "--person-from-dir",
        "--metadata", meta, "--out", idx, *FAST,
    )  # fmt: skip
    assert built["added"] == len(names)
    with GalleryIndex.open(idx) as index:
        first = index.get(names[0])
        assert (first.camera_id, first.captured_at, first.tags) == ("3", T, ("red",))
        assert first.person_id == "p0001"
        last = index.get(names[-1])
        assert (last.person_id, last.camera_id, last.captured_at) == ("someone", None, None)

    extra = tmp_path / "extra"
    late = [f"late/{n}.jpg" for n in range(3)]
    for n, name in enumerate(late):
        _noise_jpg(extra / name, seed=n)
    csv_meta = tmp_path / "late.csv"
    csv_meta.write_text(
        "file,camera_id,captured_at,tags\n"
        + "".join(f"{n},7,2024-05-01T15:{10 + i}:00+00:00,red;bag\n" for i, n in enumerate(late))
    )
    added = _run(capsys, "add", idx, "--bundle", random_bundle, "--images", extra,
                 "--metadata", csv_meta, *FAST)  # fmt: skip
    assert added["added"] == len(late)

    query = ("--query", "a person", "-k", "50")
    filters = [
        (("--camera", "3", "--camera", "7"), GalleryFilter(camera_ids=("3", "7"))),
        (("--after", "2024-05-01T14:30:00Z", "--before", "2024-05-01T15:30:00"),
         GalleryFilter(captured_after=T + 1800, captured_before=T + 5400)),
        (("--tag", "red", "--tag", "bag"), GalleryFilter(tags=("red", "bag"))),
        (("--person", "p0001", "--camera", "3", "--after", str(T)),
         GalleryFilter(person_ids=("p0001",), camera_ids=("3",), captured_after=T)),
        (("--camera", "nowhere"), GalleryFilter(camera_ids=("nowhere",))),
    ]  # fmt: skip
    with GalleryIndex.open(idx) as index:
        vector = bundle.encode_text(["a person"])
        for flags, where in filters:
            hits = _run(capsys, "search", idx, "--bundle", random_bundle, *query, *flags, *FAST[2:])
            expected = index.search(vector, 50, where)[0]
            assert [h["image_id"] for h in hits] == [h.image_id for h in expected], flags
            assert all(where.matches(index.get(h["image_id"])) for h in hits)
        assert len(expected) == 0 and len(index.search(vector, 50, filters[2][1])[0]) == len(late)

    info = _run(capsys, "info", idx)
    assert info["store"] == info["store_kind"] == "faiss"
    assert info["count"] == len(names) + len(late)


def test_bad_metadata_is_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture, camera: Path, random_bundle: Path
) -> None:
    name = sorted(p.relative_to(camera).as_posix() for p in camera.rglob("*.jpg"))[0]
    bad = {
        "unknown column": ([{"file": name, "colour": "red"}], "line 1: unknown field 'colour'"),
        "bad time": ([{"file": name}, {"file": "p0002/x.jpg", "captured_at": "noon"}],
                     "line 2: field 'captured_at'"),
        "tags not a list": ([{"file": name, "tags": "red"}], "line 1: field 'tags'"),
        "no such image": ([{"file": "p0003/z.jpg"}], "line 1: field 'file': no image"),
    }  # fmt: skip
    idx = tmp_path / "idx"
    for case, (rows, message) in bad.items():
        meta = _sidecar(tmp_path / "meta.jsonl", rows)
        line = _fails(
            capsys, "build", "--bundle", random_bundle, "--images", camera,
            "--metadata", meta, "--out", idx, *FAST,
        )  # fmt: skip
        assert str(meta) in line and message in line, (case, line)
        assert not idx.exists()
    from bundle.format import read_meta

    fingerprint = read_meta(random_bundle).fingerprint
    GalleryIndex.create(idx, fingerprint, read_meta(random_bundle).embed_dim).close()
    before = {p.name: p.read_bytes() for p in idx.iterdir() if p.is_file()}
    meta = _sidecar(tmp_path / "meta.jsonl", [{"file": name, "captured_at": "13/13/2024"}])
    line = _fails(capsys, "add", idx, "--bundle", random_bundle, "--images", camera,
                  "--metadata", meta, *FAST)  # fmt: skip
    assert "line 1: field 'captured_at'" in line
    assert {p.name: p.read_bytes() for p in idx.iterdir() if p.is_file()} == before


def test_bad_search_filters(tmp_path: Path, capsys: pytest.CaptureFixture, random_bundle: Path):
    search = ("search", tmp_path / "idx", "--bundle", random_bundle, "--query", "x")
    assert "--after: cannot read 'noon'" in _fails(capsys, *search, "--after", "noon")
    assert "later than" in _fails(
        capsys, *search, "--after", "2024-05-02", "--before", "2024-05-01"
    )
    assert "--camera is empty" in _fails(capsys, *search, "--camera", " ")
    assert "unknown store" in _fails(capsys, "info", "redis://localhost:6379")


class FakeStore:
    """Stands in for a Milvus store, to see what the CLI hands the store factory."""

    encoding = Encoding()

    def __init__(self, spec: str) -> None:
        self.spec = spec

    def stats(self) -> dict:
        return {"count": 3, "kind": "hnsw", "store": "milvus"}

    def close(self) -> None:
        pass


def test_store_specs_reach_the_factory_unchanged(
    capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, random_bundle: Path
) -> None:
    opened: list[str] = []

    def fake_open(spec: str, *args: object, **kwargs: object) -> FakeStore:
        opened.append(spec)
        return FakeStore(spec)

    monkeypatch.setattr("index.stores.open_store", fake_open)
    info = _run(capsys, "info", "milvus://db.local:19530/cams")
    assert info == {"count": 3, "kind": "hnsw", "store": "milvus", "store_kind": "milvus"}
    assert _run(capsys, "info", "gallery.db")["store_kind"] == "milvus-lite"
    assert opened == ["milvus://db.local:19530/cams", "gallery.db"]
    line = _fails(capsys, "rebuild", "milvus://db.local:19530/cams", "--bundle", random_bundle)
    assert "give --out" in line


def test_migrate_is_wired(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple] = []

    def migrate(
        src: str, dst: str, *, verify: int, batch_size: int, images_root: Path | None = None
    ) -> dict:
        calls.append((src, dst, verify, batch_size, images_root))
        return {"copied": 12, "verified": verify}

    monkeypatch.setitem(sys.modules, "index.cli.migrate", types.SimpleNamespace(migrate=migrate))
    result = _run(capsys, "migrate", "old_index", "milvus://h:1/g", "--verify", "5",
                  "--batch-size", "64")  # fmt: skip
    assert result == {"copied": 12, "verified": 5}
    _run(capsys, "migrate", "a", "b.db", "--images-root", "/srv/images")
    assert calls == [
        ("old_index", "milvus://h:1/g", 5, 64, None),
        ("a", "b.db", 100, 1000, Path("/srv/images")),
    ]
    assert "--verify must be 0 or more" in _fails(capsys, "migrate", "a", "b.db", "--verify", "-1")


def test_build_search_and_remove_on_milvus_lite(
    tmp_path: Path, capsys: pytest.CaptureFixture, camera: Path, random_bundle: Path, bundle
) -> None:
    """The same commands on a milvus-lite file: the spec goes through the store factory."""
    pytest.importorskip("milvus_lite")
    from index.stores import open_store

    names = sorted(p.relative_to(camera).as_posix() for p in camera.rglob("*.jpg"))
    rows = [{"file": n, "camera_id": str(i % 2), "captured_at": T + i} for i, n in enumerate(names)]
    meta = _sidecar(tmp_path / "meta.jsonl", rows)
    db = tmp_path / "gallery.db"
    built = _run(capsys, "build", "--bundle", random_bundle, "--images", camera,
                 "--metadata", meta, "--out", db, *FAST)  # fmt: skip
    assert built["added"] == len(names) and built["path"] == str(db)
    hits = _run(capsys, "search", db, "--bundle", random_bundle, "--query", "a person",
                "-k", "50", "--camera", "1", "--after", str(T + 2), *FAST[2:])  # fmt: skip
    where = GalleryFilter(camera_ids=("1",), captured_after=T + 2)
    with open_store(db) as store:  # type: ignore[attr-defined]
        expected = store.search(bundle.encode_text(["a person"]), 50, where)[0]
    assert [h["image_id"] for h in hits] == [h.image_id for h in expected]
    assert len(hits) == sum(r["camera_id"] == "1" and r["captured_at"] >= T + 2 for r in rows)
    assert _run(capsys, "remove", db, names[0]) == {"removed": [names[0]], "count": len(names) - 1}
    info = _run(capsys, "info", db)
    assert info["store_kind"] == "milvus-lite" and info["count"] == len(names) - 1
    line = _fails(capsys, "build", "--bundle", random_bundle, "--images", camera, "--out", db)
    assert "already holds a gallery store" in line
