from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from training.data.formats import DATASETS, load_records, val_from_train
from training.data.records import DatasetError, Record


def _rewrite(root: Path, name: str, edit) -> None:
    entries = json.loads((root / name).read_text())
    edit(entries)
    (root / name).write_text(json.dumps(entries))


def test_registry_names_every_format() -> None:
    assert DATASETS == ("cuhk-pedes", "icfg-pedes", "rstpreid", "jsonl")


def test_cuhk_pedes_records_and_split_filtering(cuhk_root: Path) -> None:
    train = load_records("cuhk-pedes", cuhk_root, "train")
    assert len(train) == 6
    assert {r.person_id for r in train} == {7, 42, 1000}
    assert all(r.split == "train" for r in train)
    first = train[0]
    assert first.image_id == "CUHK01/train/0007_0.jpg"
    assert first.image_path == cuhk_root / "imgs" / "CUHK01/train/0007_0.jpg"
    assert first.image_path.is_file()
    assert first.captions == ("person 7 image 0 a", "person 7 image 0 b")
    assert [r.person_id for r in load_records("cuhk-pedes", cuhk_root, "val")] == [3, 3]
    assert [r.person_id for r in load_records("cuhk-pedes", cuhk_root, "test")] == [5, 5]


def test_cuhk_pedes_alternative_file_name_and_file_root(cuhk_root: Path) -> None:
    (cuhk_root / "reid_raw.json").rename(cuhk_root / "CUHK-PEDES.json")
    assert len(load_records("cuhk-pedes", cuhk_root, "test")) == 2
    assert len(load_records("CUHK-PEDES", cuhk_root / "CUHK-PEDES.json", "test")) == 2


def test_icfg_pedes_alternative_name_and_no_val(icfg_root: Path) -> None:
    (icfg_root / "ICFG-PEDES.json").rename(icfg_root / "ICFG_PEDES.json")
    assert len(load_records("icfg-pedes", icfg_root, "train")) == 6
    assert len(load_records("icfg-pedes", icfg_root, "test")) == 2
    with pytest.raises(DatasetError, match=r"ICFG-PEDES has no validation split.*--val-from-train"):
        load_records("icfg-pedes", icfg_root, "val")


def test_rstpreid_uses_img_path(rstp_root: Path) -> None:
    val = load_records("rstpreid", rstp_root, "val")
    assert [r.image_id for r in val] == ["val/0003_0.jpg", "val/0003_1.jpg"]
    assert all(r.image_path.is_file() for r in val)


def test_jsonl_merges_captions_and_defaults_to_train(jsonl_root: Path) -> None:
    train = load_records("jsonl", jsonl_root, "train")
    assert [r.image_id for r in train] == [
        "photos/11_0.png",
        "photos/11_1.png",
        "photos/30_0.png",
        "photos/30_1.png",
    ]
    assert train[0].captions == ("11 0 first", "11 0 second")
    assert train[0].image_path == jsonl_root / "photos/11_0.png"
    test = load_records("jsonl", jsonl_root / "annotations.jsonl", "test")
    assert [(r.person_id, r.captions) for r in test] == [(99, ("q",))]


def test_jsonl_csv_with_absolute_path(tmp_path: Path, image_writer) -> None:
    outside = image_writer(tmp_path / "elsewhere" / "a.jpg")
    inside = image_writer(tmp_path / "set" / "b.jpg")
    with (tmp_path / "set" / "annotations.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, ["image_path", "person_id", "caption", "split"])
        writer.writeheader()
        writer.writerow({"image_path": str(outside), "person_id": "4", "caption": "x", "split": ""})
        writer.writerow({"image_path": "b.jpg", "person_id": "8", "caption": "y", "split": "train"})
    records = load_records("jsonl", tmp_path / "set", "train")
    assert [(r.image_path, r.person_id) for r in records] == [(outside, 4), (inside, 8)]
    assert records[0].image_id == outside.as_posix()
    assert records[1].image_id == "b.jpg"


def test_jsonl_conflicting_person_for_one_image(jsonl_root: Path) -> None:
    with (jsonl_root / "annotations.jsonl").open("a") as handle:
        handle.write(json.dumps({"image_path": "photos/11_0.png", "person_id": 12, "caption": "z"}))
    with pytest.raises(DatasetError, match=r"line 10: image 'photos/11_0.png' has person_id=12"):
        load_records("jsonl", jsonl_root, "train")


def test_jsonl_malformed_line(jsonl_root: Path) -> None:
    with (jsonl_root / "annotations.jsonl").open("a") as handle:
        handle.write(json.dumps({"image_path": "photos/q.png", "caption": "no id"}) + "\n")
    with pytest.raises(DatasetError, match=r"line 10: missing field 'person_id'"):
        load_records("jsonl", jsonl_root, "train")


def test_missing_annotation_file_lists_tried_paths(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"tried: .*reid_raw\.json, .*CUHK-PEDES\.json"):
        load_records("cuhk-pedes", tmp_path, "train")
    with pytest.raises(DatasetError, match=r"tried: .*annotations\.jsonl, .*annotations\.csv"):
        load_records("jsonl", tmp_path, "train")


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"dataset root .*nowhere does not exist"):
        load_records("rstpreid", tmp_path / "nowhere", "train")


def test_unknown_dataset_lists_known(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"unknown dataset 'market'.*cuhk-pedes, icfg-pedes"):
        load_records("market", tmp_path, "train")


def test_unknown_split_lists_present(cuhk_root: Path, jsonl_root: Path) -> None:
    with pytest.raises(DatasetError, match=r"no split 'dev'; splits present: test, train, val"):
        load_records("cuhk-pedes", cuhk_root, "dev")
    with pytest.raises(DatasetError, match=r"no validation split.*--val-from-train FRACTION"):
        load_records("jsonl", jsonl_root, "val")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("id", "seven", r"entry 2: field 'id' must be an integer person id, got 'seven'"),
        ("id", None, r"entry 2: field 'id' must be an integer person id"),
        ("captions", "one string", r"entry 2: field 'captions' must be a list of strings"),
        ("split", 3, r"entry 2: field 'split' must be a string"),
        ("file_path", "", r"entry 2: field 'file_path' is empty"),
    ],
)
def test_malformed_entry_names_index_and_field(
    cuhk_root: Path, field: str, value: object, message: str
) -> None:
    _rewrite(cuhk_root, "reid_raw.json", lambda entries: entries[2].update({field: value}))
    with pytest.raises(DatasetError, match=message):
        load_records("cuhk-pedes", cuhk_root, "train")


def test_missing_field_and_bad_top_level(rstp_root: Path) -> None:
    _rewrite(rstp_root, "data_captions.json", lambda entries: entries[4].pop("img_path"))
    with pytest.raises(DatasetError, match=r"entry 4: missing field 'img_path'"):
        load_records("rstpreid", rstp_root, "train")
    (rstp_root / "data_captions.json").write_text('{"not": "a list"}')
    with pytest.raises(DatasetError, match=r"expected a JSON list of entries"):
        load_records("rstpreid", rstp_root, "train")
    (rstp_root / "data_captions.json").write_text("[{")
    with pytest.raises(DatasetError, match=r"cannot read annotations"):
        load_records("rstpreid", rstp_root, "train")


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("../../secret.jpg", r"entry 0: field 'file_path' .* leaves the images root via '\.\.'"),
        ("train/../../x.jpg", r"leaves the images root"),
        ("/etc/passwd", r"entry 0: field 'file_path' is an absolute path"),
        ("C:\\data\\x.jpg", r"is an absolute path"),
    ],
)
def test_paths_cannot_escape_images_root(icfg_root: Path, path: str, message: str) -> None:
    _rewrite(icfg_root, "ICFG-PEDES.json", lambda entries: entries[0].update({"file_path": path}))
    with pytest.raises(DatasetError, match=message):
        load_records("icfg-pedes", icfg_root, "train")


def test_jsonl_relative_escape_rejected(jsonl_root: Path) -> None:
    row = {"image_path": "../x.png", "person_id": 1, "caption": "c"}
    (jsonl_root / "annotations.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(DatasetError, match=r"line 1: field 'image_path' .* leaves the images root"):
        load_records("jsonl", jsonl_root, "train")


def _records(ids: list[int]) -> list[Record]:
    return [
        Record(Path(f"{pid}_{n}.jpg"), pid, f"{pid}_{n}.jpg", ("c",), "train")
        for pid in ids
        for n in range(3)
    ]


def test_val_from_train_holds_out_whole_identities() -> None:
    records = _records(list(range(100, 120)))
    train, val = val_from_train(records, 0.25, seed=3)
    train_ids, val_ids = {r.person_id for r in train}, {r.person_id for r in val}
    assert not train_ids & val_ids
    assert len(val_ids) == 5
    assert len(train) + len(val) == len(records)
    assert all(r.split == "val" for r in val) and all(r.split == "train" for r in train)
    assert val_from_train(records, 0.25, seed=3) == (train, val)
    assert {r.person_id for r in val_from_train(records, 0.25, seed=4)[1]} != val_ids


def test_val_from_train_keeps_at_least_one_identity_each_side() -> None:
    train, val = val_from_train(_records([1, 2]), 0.99)
    assert len({r.person_id for r in train}) == 1 and len({r.person_id for r in val}) == 1
    with pytest.raises(DatasetError, match=r"fraction in \(0, 1\)"):
        val_from_train(_records([1, 2]), 1.0)
    with pytest.raises(DatasetError, match=r"at least 2 identities"):
        val_from_train(_records([1]), 0.5)


def test_icfg_val_from_train(icfg_root: Path) -> None:
    train, val = val_from_train(load_records("icfg-pedes", icfg_root, "train"), 0.34, seed=0)
    assert len({r.person_id for r in val}) == 1
    assert not {r.person_id for r in train} & {r.person_id for r in val}
