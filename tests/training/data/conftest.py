"""Tiny benchmark copies in each annotation layout, written into tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

# Non-contiguous raw ids on purpose: loaders must never assume 0..N-1.
TRAIN_IDS = (7, 42, 1000)


def write_image(path: Path, color: tuple[int, int, int] = (200, 30, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 32), color).save(path)
    return path


def _pedes_entries(path_key: str, prefix: str) -> list[dict]:
    """Train: three persons with two images each; val and test: one person each."""
    entries = []
    for pid in TRAIN_IDS:
        for n in range(2):
            entries.append(
                {
                    "split": "train",
                    "id": pid,
                    path_key: f"{prefix}train/{pid:04d}_{n}.jpg",
                    "captions": [f"person {pid} image {n} a", f"person {pid} image {n} b"],
                }
            )
    for split, pid in (("val", 3), ("test", 5)):
        for n in range(2):
            entries.append(
                {
                    "split": split,
                    "id": pid,
                    path_key: f"{prefix}{split}/{pid:04d}_{n}.jpg",
                    "captions": [f"{split} person {pid} image {n}"],
                }
            )
    return entries


def write_pedes(root: Path, name: str, entries: list[dict], path_key: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i, entry in enumerate(entries):
        write_image(root / "imgs" / entry[path_key], (40 * i % 255, 80, 120))
    (root / name).write_text(json.dumps(entries))
    return root


@pytest.fixture
def image_writer():
    """The image-writing helper, as a fixture so test modules need not import conftest."""
    return write_image


@pytest.fixture
def cuhk_root(tmp_path: Path) -> Path:
    entries = _pedes_entries("file_path", "CUHK01/")
    for entry in entries:
        entry["processed_tokens"] = [["a", "person"]]
    return write_pedes(tmp_path / "cuhk", "reid_raw.json", entries, "file_path")


@pytest.fixture
def icfg_root(tmp_path: Path) -> Path:
    entries = [e for e in _pedes_entries("file_path", "") if e["split"] != "val"]
    return write_pedes(tmp_path / "icfg", "ICFG-PEDES.json", entries, "file_path")


@pytest.fixture
def rstp_root(tmp_path: Path) -> Path:
    entries = [
        {k if k != "file_path" else "img_path": v for k, v in e.items()}
        for e in _pedes_entries("file_path", "")
    ]
    return write_pedes(tmp_path / "rstp", "data_captions.json", entries, "img_path")


@pytest.fixture
def jsonl_root(tmp_path: Path) -> Path:
    root = tmp_path / "mine"
    rows = []
    for pid in (11, 30):
        for n in range(2):
            rel = f"photos/{pid}_{n}.png"
            write_image(root / rel)
            # Two rows per image: captions must merge into one record.
            rows += [
                {"image_path": rel, "person_id": pid, "caption": f"{pid} {n} first"},
                {"image_path": rel, "person_id": pid, "caption": f"{pid} {n} second"},
            ]
    write_image(root / "photos/q.png")
    rows.append({"image_path": "photos/q.png", "person_id": 99, "caption": "q", "split": "test"})
    (root / "annotations.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return root
