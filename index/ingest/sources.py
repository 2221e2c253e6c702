"""Gallery images to index: a folder, or one split of a benchmark's annotation file.

The benchmark layouts are the ones training reads (same names, same roots), parsed here again so
that indexing never depends on the training code. Only what a gallery needs is read: the image
path and the person id, and from the ``jsonl``/CSV format the optional per-image metadata
``camera_id``, ``captured_at`` and ``tags``, read by the rules of ``metadata_fields``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from index.metadata_fields import is_missing, parse_id, parse_tags, parse_time

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"})
IMAGES_DIR = "imgs"
# dataset -> (annotation file names tried in order, field holding the image path)
BENCHMARKS: dict[str, tuple[tuple[str, ...], str]] = {
    "cuhk-pedes": (("reid_raw.json", "CUHK-PEDES.json"), "file_path"),
    "icfg-pedes": (("ICFG-PEDES.json", "ICFG_PEDES.json"), "file_path"),
    "rstpreid": (("data_captions.json",), "img_path"),
}
JSONL_NAMES = ("annotations.jsonl", "annotations.csv")
JSONL_DEFAULT_SPLIT = "train"  # as in training: rows without a split are training rows
DATASETS = (*BENCHMARKS, "jsonl")
ALL_SPLITS = "all"


class GallerySourceError(ValueError):
    """The images or annotations to index cannot be found or understood."""


@dataclass(frozen=True)
class GalleryEntry:
    path: Path
    image_id: str
    person_id: str | None
    camera_id: str | None = None
    captured_at: float | None = None  # seconds since the epoch, UTC
    tags: tuple[str, ...] = ()


def from_folder(root: Path, person_from_dir: bool = False) -> list[GalleryEntry]:
    """Every image under ``root`` (recursively, sorted); image_id is the relative POSIX path."""
    root = Path(root)
    if not root.is_dir():
        raise GallerySourceError(f"{root} is not a folder")
    entries = []
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or not path.is_file():
            continue
        person = rel.parent.name if person_from_dir and rel.parent.name else None
        entries.append(GalleryEntry(path, rel.as_posix(), person))
    if not entries:
        raise GallerySourceError(
            f"no images under {root} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    return entries


def from_dataset(dataset: str, root: Path, split: str = "test") -> list[GalleryEntry]:
    """One split (or ``all``) of a benchmark, one entry per image."""
    root = Path(root)
    if dataset == "jsonl":
        annotation = _find(root, JSONL_NAMES)
        rows = _jsonl_rows(annotation)
        folder, path_key, id_key = annotation.parent, "image_path", "person_id"
    elif dataset in BENCHMARKS:
        names, path_key = BENCHMARKS[dataset]
        annotation = _find(root, names)
        rows = _json_rows(annotation)
        folder, id_key = annotation.parent / IMAGES_DIR, "id"
    else:
        raise GallerySourceError(f"unknown dataset {dataset!r}: use one of {', '.join(DATASETS)}")
    entries: dict[str, GalleryEntry] = {}
    splits: set[str] = set()
    for where, row in rows:
        default_split = JSONL_DEFAULT_SPLIT if dataset == "jsonl" else _MISSING
        row_split = str(_field(row, "split", where, default_split)).strip()
        splits.add(row_split)
        if split not in (ALL_SPLITS, row_split):
            continue
        path, image_id = _image(_field(row, path_key, where), folder, where)
        person = _person(_field(row, id_key, where), where)
        known = entries.get(image_id)
        if known is not None and known.person_id != person:
            raise GallerySourceError(
                f"{where}: image {image_id!r} is listed as person {person} and {known.person_id}"
            )
        entry = GalleryEntry(path, image_id, person)
        if dataset == "jsonl":
            entry = _with_metadata(entry, row, where, annotation.suffix.lower() == ".csv")
            if known is not None and known != entry:
                raise GallerySourceError(
                    f"{where}: image {image_id!r} is listed again with other camera_id, "
                    "captured_at or tags"
                )
        entries[image_id] = entry
    if not entries:
        raise GallerySourceError(
            f"{annotation}: no images in split {split!r} (splits present: "
            f"{', '.join(sorted(splits)) or 'none'})"
        )
    return list(entries.values())


# --- parsing ----------------------------------------------------------------------------------


def _find(root: Path, names: tuple[str, ...]) -> Path:
    if root.is_file():
        return root
    for name in names:
        if (root / name).is_file():
            return root / name
    raise GallerySourceError(f"no annotation file in {root}; looked for {', '.join(names)}")


def _json_rows(path: Path) -> Iterator[tuple[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise GallerySourceError(f"{path}: cannot read annotations: {err}") from None
    if not isinstance(data, list):
        raise GallerySourceError(f"{path}: expected a JSON list of entries")
    return ((f"{path}: entry {n}", entry) for n, entry in enumerate(data))


def _jsonl_rows(path: Path) -> list[tuple[str, Any]]:
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            if path.suffix.lower() == ".csv":
                reader = csv.DictReader(handle)
                return [(f"{path}: line {reader.line_num}", row) for row in reader]
            rows = []
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    rows.append((f"{path}: line {number}", json.loads(line)))
            return rows
    except (OSError, UnicodeDecodeError, csv.Error, json.JSONDecodeError) as err:
        raise GallerySourceError(f"{path}: cannot read annotations: {err}") from None


_MISSING = object()


def _field(row: Any, key: str, where: str, default: Any = _MISSING) -> Any:
    if not isinstance(row, Mapping):
        raise GallerySourceError(f"{where}: expected an object with fields")
    value = row.get(key)
    if value in (None, ""):
        if default is _MISSING:
            raise GallerySourceError(f"{where}: missing field {key!r}")
        return default
    return value


def _with_metadata(entry: GalleryEntry, row: Mapping, where: str, is_csv: bool) -> GalleryEntry:
    """The optional camera_id, captured_at and tags of a ``jsonl``/CSV row."""
    values: dict[str, Any] = {}
    for name, parse in (
        ("camera_id", parse_id),
        ("captured_at", parse_time),
        ("tags", lambda v: parse_tags(v, is_csv)),
    ):
        value = row.get(name)
        if is_missing(value):
            continue
        try:
            values[name] = parse(value)
        except ValueError as err:
            raise GallerySourceError(f"{where}: field {name!r}: {err}") from None
    return GalleryEntry(entry.path, entry.image_id, entry.person_id, **values)


def _person(value: Any, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).strip():
        raise GallerySourceError(f"{where}: person id must be an integer or a string")
    return str(value).strip()


def _image(value: Any, folder: Path, where: str) -> tuple[Path, str]:
    """(file, image_id): image_id is the path relative to the images root, never leaving it."""
    if not isinstance(value, str):
        raise GallerySourceError(f"{where}: image path must be a string")
    raw = value.strip().replace("\\", "/")
    if Path(raw).is_absolute():
        path = Path(raw)
        return path, path.relative_to(folder).as_posix() if path.is_relative_to(folder) else raw
    parts = [p for p in PurePosixPath(raw).parts if p != "."]
    if ".." in parts or not parts:
        raise GallerySourceError(f"{where}: image path {value!r} leaves the images root")
    image_id = "/".join(parts)
    return folder / image_id, image_id
