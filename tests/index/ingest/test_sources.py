"""Gallery sources: folders and the benchmark annotation formats, without the training code."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from index.ingest.sources import GallerySourceError, from_dataset, from_folder


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_cuhk_split_and_ids(synthetic_root: Path) -> None:
    raw = json.loads((synthetic_root / "reid_raw.json").read_text())
    test = from_dataset("cuhk-pedes", synthetic_root, "test")
    expected = {e["file_path"]: str(e["id"]) for e in raw if e["split"] == "test"}
    assert {e.image_id: e.person_id for e in test} == expected
    assert all(e.path == synthetic_root / "imgs" / e.image_id for e in test)
    assert len(from_dataset("cuhk-pedes", synthetic_root, "all")) == len(raw)
    with pytest.raises(GallerySourceError, match="splits present: test, train, val"):
        from_dataset("cuhk-pedes", synthetic_root, "query")


def test_folder(tmp_path: Path) -> None:
    _touch(tmp_path / "cam1" / "b.JPG")
    _touch(tmp_path / "cam1" / "a.png")
    _touch(tmp_path / "top.jpeg")
    _touch(tmp_path / "notes.txt")
    _touch(tmp_path / ".hidden" / "c.jpg")
    entries = from_folder(tmp_path)
    assert [e.image_id for e in entries] == ["cam1/a.png", "cam1/b.JPG", "top.jpeg"]
    assert all(e.person_id is None for e in entries)
    assert [e.person_id for e in from_folder(tmp_path, person_from_dir=True)] == [
        "cam1",
        "cam1",
        None,
    ]
    with pytest.raises(GallerySourceError, match="no images"):
        from_folder(_empty(tmp_path))
    with pytest.raises(GallerySourceError, match="not a folder"):
        from_folder(tmp_path / "absent")


def _empty(root: Path) -> Path:
    (root / "empty").mkdir()
    return root / "empty"


@pytest.mark.parametrize("name", ["ICFG-PEDES.json", "ICFG_PEDES.json"])
def test_icfg_names(tmp_path: Path, name: str) -> None:
    entries = [
        {"split": "test", "captions": ["x"], "file_path": "test/0001/a.jpg", "id": 1},
        {"split": "train", "captions": ["y"], "file_path": "train/0002/b.jpg", "id": 2},
    ]
    (tmp_path / name).write_text(json.dumps(entries))
    (gallery,) = from_dataset("icfg-pedes", tmp_path, "test")
    assert gallery.image_id == "test/0001/a.jpg" and gallery.person_id == "1"
    assert gallery.path == tmp_path / "imgs" / "test/0001/a.jpg"


def test_rstpreid_one_entry_per_image(tmp_path: Path) -> None:
    entries = [
        {"id": 7, "img_path": "0007_c1_1.jpg", "captions": ["a", "b"], "split": "val"},
        {"id": 8, "img_path": "./0008_c1_1.jpg", "captions": ["c"], "split": "val"},
    ]
    (tmp_path / "data_captions.json").write_text(json.dumps(entries))
    found = from_dataset("rstpreid", tmp_path, "val")
    assert [(e.image_id, e.person_id) for e in found] == [
        ("0007_c1_1.jpg", "7"),
        ("0008_c1_1.jpg", "8"),
    ]


def test_jsonl_and_csv(tmp_path: Path) -> None:
    rows = [
        {"image_path": "a/1.jpg", "person_id": 3, "caption": "one", "split": "test"},
        {"image_path": "a/1.jpg", "person_id": 3, "caption": "two", "split": "test"},
        {"image_path": "b/2.jpg", "person_id": "4", "caption": "three"},  # no split: train
    ]
    (tmp_path / "annotations.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    found = from_dataset("jsonl", tmp_path, "test")
    assert [(e.image_id, e.person_id, e.path) for e in found] == [
        ("a/1.jpg", "3", tmp_path / "a/1.jpg")
    ]
    assert [e.image_id for e in from_dataset("jsonl", tmp_path, "train")] == ["b/2.jpg"]

    csv_dir = tmp_path / "csv"
    csv_dir.mkdir()
    with (csv_dir / "annotations.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, ["image_path", "person_id", "caption", "split"])
        writer.writeheader()
        writer.writerows(rows[:2])
    assert [e.image_id for e in from_dataset("jsonl", csv_dir, "test")] == ["a/1.jpg"]


def test_bad_annotations(tmp_path: Path) -> None:
    with pytest.raises(GallerySourceError, match=r"looked for reid_raw\.json, CUHK-PEDES\.json"):
        from_dataset("cuhk-pedes", tmp_path, "test")
    with pytest.raises(GallerySourceError, match="unknown dataset"):
        from_dataset("market1501", tmp_path, "test")
    (tmp_path / "reid_raw.json").write_text("{not json")
    with pytest.raises(GallerySourceError, match="cannot read"):
        from_dataset("cuhk-pedes", tmp_path, "test")
    (tmp_path / "reid_raw.json").write_text(json.dumps([{"split": "test", "id": 1}]))
    with pytest.raises(GallerySourceError, match="entry 0: missing field 'file_path'"):
        from_dataset("cuhk-pedes", tmp_path, "test")
    (tmp_path / "reid_raw.json").write_text(
        json.dumps([{"split": "test", "id": 1, "file_path": "../../etc/passwd"}])
    )
    with pytest.raises(GallerySourceError, match="leaves the images root"):
        from_dataset("cuhk-pedes", tmp_path, "test")
