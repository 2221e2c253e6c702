"""Readers for the benchmark annotation formats, each turning a file into :class:`Record` s.

Every loader validates what it reads, because a silently skipped or misread entry shows up only
weeks later as a wrong accuracy number: errors name the file, the entry and the field.
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any

from training.data.records import DatasetError, Record

Loader = Callable[[Path], tuple[list[Record], str]]  # (all records, where they were read from)

IMAGES_DIR = "imgs"
JSONL_NAMES = ("annotations.jsonl", "annotations.csv")
DEFAULT_JSONL_SPLIT = "train"


# --- field checks ----------------------------------------------------------------------------


def _field(entry: Any, key: str, where: str) -> Any:
    if not isinstance(entry, Mapping):
        raise DatasetError(f"{where}: expected an object with fields, got {type(entry).__name__}")
    if key not in entry:
        raise DatasetError(f"{where}: missing field '{key}'")
    return entry[key]


def _person_id(value: Any, key: str, where: str) -> int:
    # Annotation files store ids as JSON numbers, CSV files as text: accept both, nothing else.
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise DatasetError(f"{where}: field '{key}' must be an integer person id, got {value!r}")
    try:
        return int(value)
    except ValueError:
        raise DatasetError(
            f"{where}: field '{key}' must be an integer person id, got {value!r}"
        ) from None


def _text(value: Any, key: str, where: str) -> str:
    if not isinstance(value, str):
        raise DatasetError(f"{where}: field '{key}' must be a string, got {value!r}")
    return value


def _captions(value: Any, key: str, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
        raise DatasetError(f"{where}: field '{key}' must be a list of strings, got {value!r}")
    # Blank captions carry no supervision; the image itself still belongs to the gallery.
    return tuple(c.strip() for c in value if c.strip())


def _relative_image_id(value: Any, key: str, where: str) -> str:
    """A normalised POSIX path that cannot leave the images root."""
    raw = _text(value, key, where).strip()
    if not raw:
        raise DatasetError(f"{where}: field '{key}' is empty")
    path = PurePosixPath(raw.replace("\\", "/"))
    if path.is_absolute() or (len(raw) > 1 and raw[1] == ":"):
        raise DatasetError(
            f"{where}: field '{key}' is an absolute path ({raw!r}); it must be relative to the "
            "images root"
        )
    parts = [p for p in path.parts if p != "."]
    if ".." in parts:
        raise DatasetError(f"{where}: field '{key}' ({raw!r}) leaves the images root via '..'")
    return "/".join(parts)


# --- file discovery ----------------------------------------------------------------------------


def _annotation_file(root: Path, names: tuple[str, ...]) -> Path:
    if root.is_file():
        return root
    tried = [root / name for name in names]
    for path in tried:
        if path.is_file():
            return path
    listed = ", ".join(str(p) for p in tried)
    raise DatasetError(f"no annotation file found; tried: {listed}")


def _read_json_list(path: Path) -> list[Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatasetError(f"{path}: cannot read annotations: {err}") from err
    if not isinstance(data, list):
        raise DatasetError(f"{path}: expected a JSON list of entries, got {type(data).__name__}")
    return data


# --- benchmark loaders -------------------------------------------------------------------------


def _json_benchmark(root: Path, names: tuple[str, ...], path_key: str) -> tuple[list[Record], str]:
    annotation = _annotation_file(root, names)
    images_root = annotation.parent / IMAGES_DIR
    records = []
    for index, entry in enumerate(_read_json_list(annotation)):
        where = f"{annotation}: entry {index}"
        image_id = _relative_image_id(_field(entry, path_key, where), path_key, where)
        records.append(
            Record(
                image_path=images_root / image_id,
                person_id=_person_id(_field(entry, "id", where), "id", where),
                image_id=image_id,
                captions=_captions(_field(entry, "captions", where), "captions", where),
                split=_text(_field(entry, "split", where), "split", where).strip(),
            )
        )
    return records, str(annotation)


def _load_cuhk_pedes(root: Path) -> tuple[list[Record], str]:
    # `processed_tokens` is a tokenisation made for older models; the CLIP tokenizer redoes it.
    return _json_benchmark(root, ("reid_raw.json", "CUHK-PEDES.json"), "file_path")


def _load_icfg_pedes(root: Path) -> tuple[list[Record], str]:
    return _json_benchmark(root, ("ICFG-PEDES.json", "ICFG_PEDES.json"), "file_path")


def _load_rstpreid(root: Path) -> tuple[list[Record], str]:
    return _json_benchmark(root, ("data_captions.json",), "img_path")


# --- user annotations (JSON lines or CSV) ------------------------------------------------------


def _jsonl_rows(path: Path) -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            if path.suffix.lower() == ".csv":
                reader = csv.DictReader(handle)
                rows = [(f"{path}: line {reader.line_num}", row) for row in reader]
            else:
                for number, line in enumerate(handle, start=1):
                    if not line.strip():
                        continue
                    try:
                        rows.append((f"{path}: line {number}", json.loads(line)))
                    except json.JSONDecodeError as err:
                        raise DatasetError(f"{path}: line {number}: invalid JSON: {err}") from err
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DatasetError(f"{path}: cannot read annotations: {err}") from err
    return rows


def _user_image(value: Any, key: str, where: str, folder: Path) -> tuple[Path, str]:
    raw = _text(value, key, where).strip()
    if raw and Path(raw).is_absolute():
        # The user named this file explicitly; keep a folder-relative id when it lies inside.
        path = Path(raw)
        inside = path.is_relative_to(folder)
        return path, path.relative_to(folder).as_posix() if inside else path.as_posix()
    image_id = _relative_image_id(raw, key, where)
    return folder / image_id, image_id


def _load_jsonl(root: Path) -> tuple[list[Record], str]:
    annotation = _annotation_file(root, JSONL_NAMES)
    if annotation.suffix.lower() not in (".jsonl", ".csv"):
        raise DatasetError(f"{annotation}: expected a .jsonl or .csv annotation file")
    folder = annotation.parent
    merged: dict[str, tuple[Path, int, str, list[str], str]] = {}
    for where, row in _jsonl_rows(annotation):
        path, image_id = _user_image(_field(row, "image_path", where), "image_path", where, folder)
        person_id = _person_id(_field(row, "person_id", where), "person_id", where)
        caption = _text(_field(row, "caption", where), "caption", where).strip()
        split = _text(row.get("split") or DEFAULT_JSONL_SPLIT, "split", where).strip()
        if image_id not in merged:
            merged[image_id] = (path, person_id, split, [], where)
        _, first_id, first_split, captions, first_where = merged[image_id]
        if (person_id, split) != (first_id, first_split):
            raise DatasetError(
                f"{where}: image {image_id!r} has person_id={person_id}, split={split!r}, but "
                f"person_id={first_id}, split={first_split!r} at {first_where}"
            )
        if caption:
            captions.append(caption)
    records = [
        Record(image_path=path, person_id=pid, image_id=image_id, captions=tuple(caps), split=split)
        for image_id, (path, pid, split, caps, _) in merged.items()
    ]
    return records, str(annotation)


_LOADERS: Mapping[str, Loader] = MappingProxyType(
    {
        "cuhk-pedes": _load_cuhk_pedes,
        "icfg-pedes": _load_icfg_pedes,
        "rstpreid": _load_rstpreid,
        "jsonl": _load_jsonl,
    }
)
DATASETS: tuple[str, ...] = tuple(_LOADERS)


# --- public API --------------------------------------------------------------------------------


def load_records(dataset: str, root: Path | str, split: str) -> list[Record]:
    """All records of one split of ``dataset`` stored under ``root``, in file order."""
    loader = _LOADERS.get(dataset.lower())
    if loader is None:
        raise DatasetError(f"unknown dataset {dataset!r}; known datasets: {', '.join(DATASETS)}")
    root = Path(root).expanduser()
    if not root.exists():
        raise DatasetError(f"dataset root {root} does not exist")
    records, source = loader(root)
    present = sorted({r.split for r in records})
    if split not in present:
        if split == "val":
            owner = "ICFG-PEDES has" if dataset.lower() == "icfg-pedes" else f"{source} has"
            raise DatasetError(
                f"{owner} no validation split (splits present: {', '.join(present) or 'none'}); "
                "hold out identities of train with --val-from-train FRACTION"
            )
        raise DatasetError(
            f"{source} has no split {split!r}; splits present: {', '.join(present) or 'none'}"
        )
    return [r for r in records if r.split == split]


def val_from_train(
    records: list[Record], fraction: float, seed: int = 0
) -> tuple[list[Record], list[Record]]:
    """Split ``records`` into (train, val) by whole identities, so no person is in both.

    A validation person seen in training would make retrieval look better than it is on the
    unseen test identities; held-out records are relabelled ``split="val"``.
    """
    if not 0.0 < fraction < 1.0:
        raise DatasetError(f"--val-from-train must be a fraction in (0, 1), got {fraction}")
    person_ids = sorted({r.person_id for r in records})
    if len(person_ids) < 2:
        raise DatasetError(
            f"--val-from-train needs at least 2 identities in train, found {len(person_ids)}"
        )
    count = min(max(round(fraction * len(person_ids)), 1), len(person_ids) - 1)
    held_out = set(random.Random(seed).sample(person_ids, count))
    train = [r for r in records if r.person_id not in held_out]
    val = [replace(r, split="val") for r in records if r.person_id in held_out]
    return train, val
