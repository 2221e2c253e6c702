"""Per-image metadata as people write it: the sidecar of ``build``/``add --metadata``, the
optional columns of the ``jsonl``/CSV data set format, and the time values both share."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from index.ingest.sidecar import apply_sidecar, read_sidecar
from index.ingest.sources import GalleryEntry, GallerySourceError, from_dataset, from_folder
from index.metadata_fields import parse_tags, parse_time

T = 1_714_572_000.0  # 2024-05-01T14:00:00Z


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def _jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("2024-05-01T14:00:00Z", T),
        ("2024-05-01T14:00:00+00:00", T),
        ("2024-05-01T16:00:00+02:00", T),
        ("2024-05-01T14:00:00", T),  # naive: UTC
        ("2024-05-01 14:00:00.5", T + 0.5),
        (str(int(T)), T),
        (" 1714572000.25 ", T + 0.25),
        (T, T),
        (int(T), T),
    ],
)
def test_times(text: object, seconds: float) -> None:
    assert parse_time(text) == seconds


@pytest.mark.parametrize("bad", ["yesterday", "2024-13-01T00:00:00Z", "nan", "inf", True, [], ""])
def test_bad_times(bad: object) -> None:
    with pytest.raises(ValueError, match="time"):
        parse_time(bad)


def test_tags() -> None:
    assert parse_tags(["red", " bag ", "red"], csv=False) == ("red", "bag")
    assert parse_tags("red; bag;;", csv=True) == ("red", "bag")
    for bad in ("red;bag", ["red", 3], ["red", ""], {"a": 1}):
        with pytest.raises(ValueError, match="JSON list"):
            parse_tags(bad, csv=False)


@pytest.fixture
def camera(tmp_path: Path) -> Path:
    root = tmp_path / "camera"
    for name in ("cam3/a.jpg", "cam3/b.jpg", "cam7/b.jpg", "c.jpg"):
        _touch(root / name)
    return root


def test_jsonl_sidecar(camera: Path, tmp_path: Path) -> None:
    sidecar = _jsonl(
        tmp_path / "meta.jsonl",
        [
            {"file": "cam3/a.jpg", "camera_id": 3, "captured_at": "2024-05-01T14:00:00Z"},
            {"file": "./cam7\\b.jpg", "tags": ["red", "bag"], "person_id": "p9"},
            {"file": "c.jpg", "captured_at": T, "camera_id": None, "tags": []},
        ],
    )
    entries = apply_sidecar(from_folder(camera), read_sidecar(sidecar), camera)
    got = {e.image_id: (e.person_id, e.camera_id, e.captured_at, e.tags) for e in entries}
    assert got == {
        "c.jpg": (None, None, T, ()),
        "cam3/a.jpg": (None, "3", T, ()),
        "cam3/b.jpg": (None, None, None, ()),
        "cam7/b.jpg": ("p9", None, None, ("red", "bag")),
    }


def test_csv_sidecar_and_bare_names(camera: Path, tmp_path: Path) -> None:
    path = tmp_path / "meta.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "camera_id", "captured_at", "tags"])
        writer.writerow(["a.jpg", "3", "1714572000", "red;hat"])  # a bare name, unique
        writer.writerow(["c.jpg", "", "", ""])
    entries = apply_sidecar(from_folder(camera), read_sidecar(path), camera)
    a = next(e for e in entries if e.image_id == "cam3/a.jpg")
    assert (a.camera_id, a.captured_at, a.tags) == ("3", T, ("red", "hat"))


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"file": "c.jpg", "colour": "red"}], r"line 1: unknown field 'colour'"),
        ([{"file": "c.jpg"}, {"file": "c.jpg", "captured_at": "noon"}], r"line 2: .*'captured_at'"),
        ([{"file": "c.jpg", "tags": "red"}], r"line 1: field 'tags': expected a JSON list"),
        ([{"file": "c.jpg", "camera_id": True}], r"line 1: field 'camera_id'"),
        ([{"camera_id": "3"}], r"line 1: field 'file'"),
        ([{"file": "missing.jpg"}], r"line 1: field 'file': no image 'missing.jpg'"),
        ([{"file": "b.jpg"}], r"line 1: field 'file': 2 images are named 'b.jpg'"),
        ([{"file": "../c.jpg"}], r"not a relative path"),
        ([{"file": "c.jpg"}, {"file": "./c.jpg"}], r"line 2: 'c.jpg' is listed again"),
        ([["c.jpg"]], r"line 1: expected an object"),
    ],
)
def test_bad_sidecars(camera: Path, tmp_path: Path, rows: list, message: str) -> None:
    sidecar = _jsonl(tmp_path / "meta.jsonl", rows)
    with pytest.raises(GallerySourceError, match=message) as raised:
        apply_sidecar(from_folder(camera), read_sidecar(sidecar), camera)
    assert str(sidecar) in str(raised.value) and "\n" not in str(raised.value)


def test_bad_csv_and_json(camera: Path, tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("file,colour\nc.jpg,red\n")
    with pytest.raises(GallerySourceError, match=r"m.csv: line 1: unknown field 'colour'"):
        read_sidecar(tmp_path / "m.csv")
    (tmp_path / "n.csv").write_text("file,camera_id\nc.jpg,3,extra\n")
    with pytest.raises(GallerySourceError, match=r"n.csv: line 2: more values"):
        read_sidecar(tmp_path / "n.csv")
    (tmp_path / "m.jsonl").write_text('{"file": "c.jpg"}\n\n{"file": \n')
    with pytest.raises(GallerySourceError, match=r"m.jsonl: line 3: not JSON"):
        read_sidecar(tmp_path / "m.jsonl")
    with pytest.raises(GallerySourceError, match="cannot read metadata"):
        read_sidecar(tmp_path / "absent.jsonl")


def test_same_image_twice_through_two_names(camera: Path, tmp_path: Path) -> None:
    sidecar = _jsonl(tmp_path / "meta.jsonl", [{"file": "c.jpg"}, {"file": "./c.jpg "}])
    with pytest.raises(GallerySourceError, match="listed again"):
        read_sidecar(sidecar)
    sidecar = _jsonl(tmp_path / "m2.jsonl", [{"file": "cam3/a.jpg"}, {"file": "a.jpg"}])
    with pytest.raises(GallerySourceError, match=r"line 2: 'a\.jpg' is the same image as"):
        apply_sidecar(from_folder(camera), read_sidecar(sidecar), camera)


def test_dataset_relative_paths(tmp_path: Path) -> None:
    """With --dataset, a path relative to --root and the image_id (relative to imgs/) both
    name an image."""
    root = tmp_path / "set"
    _touch(root / "imgs" / "x" / "1.jpg")
    _touch(root / "imgs" / "x" / "2.jpg")
    entries = [
        GalleryEntry(root / "imgs/x/1.jpg", "x/1.jpg", "1"),
        GalleryEntry(root / "imgs/x/2.jpg", "x/2.jpg", "2"),
    ]
    rows = read_sidecar(
        _jsonl(
            tmp_path / "m.jsonl",
            [{"file": "imgs/x/1.jpg", "camera_id": "a"}, {"file": "x/2.jpg", "camera_id": "b"}],
        )
    )
    assert [e.camera_id for e in apply_sidecar(entries, rows, root)] == ["a", "b"]


def test_jsonl_dataset_metadata_columns(tmp_path: Path) -> None:
    rows = [
        {"image_path": "a.jpg", "person_id": 1, "split": "test", "camera_id": "3",
         "captured_at": "2024-05-01T16:00:00+02:00", "tags": ["red"], "caption": "x"},
        {"image_path": "a.jpg", "person_id": 1, "split": "test", "camera_id": "3",
         "captured_at": T, "tags": ["red"], "caption": "y"},
        {"image_path": "b.jpg", "person_id": 2, "split": "test"},
    ]  # fmt: skip
    _jsonl(tmp_path / "annotations.jsonl", rows)
    a, b = from_dataset("jsonl", tmp_path, "test")
    assert (a.camera_id, a.captured_at, a.tags) == ("3", T, ("red",))
    assert (b.camera_id, b.captured_at, b.tags) == (None, None, ())
    rows[1]["camera_id"] = "4"
    _jsonl(tmp_path / "annotations.jsonl", rows)
    with pytest.raises(GallerySourceError, match=r"line 2: image 'a\.jpg' is listed again"):
        from_dataset("jsonl", tmp_path, "test")
    rows[1]["captured_at"] = "soon"
    _jsonl(tmp_path / "annotations.jsonl", rows)
    with pytest.raises(GallerySourceError, match="line 2: field 'captured_at'"):
        from_dataset("jsonl", tmp_path, "test")


def test_csv_dataset_metadata_columns(tmp_path: Path) -> None:
    path = tmp_path / "annotations.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image_path", "person_id", "split", "camera_id", "captured_at", "tags"])
        writer.writerow(["a.jpg", "1", "test", "7", "2024-05-01T14:00:00", "red; bag"])
        writer.writerow(["b.jpg", "2", "test", "", "", ""])
    a, b = from_dataset("jsonl", tmp_path, "test")
    assert (a.camera_id, a.captured_at, a.tags) == ("7", T, ("red", "bag"))
    assert (b.camera_id, b.captured_at, b.tags) == (None, None, ())
