from __future__ import annotations

import logging
import pickle
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from training.data.dataset import CaptionPairs, GalleryImages, Queries, collate_pairs
from training.data.formats import load_records


def test_one_sample_per_caption_with_contiguous_labels(cuhk_root: Path) -> None:
    records = load_records("cuhk-pedes", cuhk_root, "train")
    pairs = CaptionPairs(records)
    assert len(pairs) == 12  # 6 images × 2 captions
    assert pairs.num_classes == 3
    assert pairs.label_of == {7: 0, 42: 1, 1000: 2}
    assert sorted(set(pairs.labels)) == [0, 1, 2]
    captions = [pairs[i]["caption"] for i in range(len(pairs))]
    assert captions == [c for r in records for c in r.captions]
    sample = pairs[5]
    assert sample["person_id"] == 42 and sample["label"] == 1
    assert sample["image_id"] == "CUHK01/train/0042_0.jpg"
    assert sample["index"] == 5
    assert sample["image"].shape == (3, 32, 16) and sample["image"].dtype == torch.float32
    assert pairs.image_ids[5] == sample["image_id"]


def test_transform_is_applied(rstp_root: Path) -> None:
    pairs = CaptionPairs(load_records("rstpreid", rstp_root, "test"), transform=lambda im: im)
    assert pairs[0]["image"].size == (16, 32)  # the PIL image passed straight through


def test_corrupt_image_is_skipped_and_counted(cuhk_root: Path, caplog) -> None:
    records = load_records("cuhk-pedes", cuhk_root, "train")
    records[1].image_path.write_bytes(b"definitely not a jpeg")
    pairs = CaptionPairs(records)
    assert pairs[2]["image"] is None and pairs[3]["image"] is None  # both captions of image 1

    with caplog.at_level(logging.WARNING):
        batches = list(DataLoader(pairs, batch_size=6, collate_fn=collate_pairs))
    assert [b["skipped"] for b in batches] == [2, 0]
    first = batches[0]
    assert first["skipped_image_ids"] == [records[1].image_id] * 2
    assert first["image"].shape == (4, 3, 32, 16)
    assert first["index"].tolist() == [0, 1, 4, 5]
    assert first["label"].dtype == torch.long
    assert len(first["caption"]) == 4 and len(first["image_id"]) == 4
    assert batches[1]["image"].shape == (6, 3, 32, 16)

    assert list(pairs.undecodable) == [str(records[1].image_path)]
    warnings = [r for r in caplog.records if "undecodable" in r.getMessage()]
    assert len(warnings) == 1  # once per file, though it was read four times


def test_missing_file_is_skipped(rstp_root: Path) -> None:
    records = load_records("rstpreid", rstp_root, "test")
    records[0].image_path.unlink()
    gallery = GalleryImages(records)
    batch = collate_pairs([gallery[0], gallery[1]])
    assert batch["skipped"] == 1 and batch["image"].shape[0] == 1
    assert batch["image_id"] == [records[1].image_id]
    assert len(gallery.undecodable) == 1


def test_batch_where_every_image_failed(rstp_root: Path) -> None:
    records = load_records("rstpreid", rstp_root, "test")
    for record in records:
        record.image_path.write_bytes(b"")
    batch = collate_pairs([CaptionPairs(records)[0]])
    assert batch["skipped"] == 1 and batch["image"].numel() == 0 and len(batch["label"]) == 0


def test_gallery_has_unique_images_and_queries_every_caption(cuhk_root: Path) -> None:
    records = load_records("cuhk-pedes", cuhk_root, "train")
    gallery = GalleryImages(records + records[:2])
    assert len(gallery) == 6
    assert gallery.person_ids == [7, 7, 42, 42, 1000, 1000]
    item = gallery[2]
    assert item["image_id"] == "CUHK01/train/0042_0.jpg" and item["person_id"] == 42
    assert item["image"].shape == (3, 32, 16)

    queries = Queries(records)
    assert len(queries) == 12
    assert queries[0] == {
        "caption": "person 7 image 0 a",
        "person_id": 7,
        "image_id": "CUHK01/train/0007_0.jpg",
        "index": 0,
    }
    batch = collate_pairs([queries[0], queries[3]])
    assert batch["person_id"].tolist() == [7, 7] and batch["skipped"] == 0


def test_dataset_pickles_for_worker_processes(jsonl_root: Path) -> None:
    pairs = CaptionPairs(load_records("jsonl", jsonl_root, "train"))
    clone = pickle.loads(pickle.dumps(pairs))
    assert clone[0]["caption"] == pairs[0]["caption"]
    assert len(clone) == 8
