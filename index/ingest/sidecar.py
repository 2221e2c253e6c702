"""A metadata sidecar: per-image person, camera, capture time and tags for ``build``/``add``.

A JSONL file (one object per line) or a CSV file (by its ``.csv`` suffix, with a header), one
row per image, keyed by ``file``: the image's path relative to the images folder (``--images``)
or the data set root (``--root``), or its bare file name when no other image has that name.
Every other column is optional: ``person_id``, ``camera_id``, ``captured_at`` (ISO 8601 with a
timezone, UTC without one, or seconds since the epoch) and ``tags`` (a JSON list in JSONL,
``;``-separated in CSV).

The whole file is read and matched before anything is encoded or written, and anything it
cannot use (an unknown column, a value that does not parse, a row naming no image or an image
twice) is an error naming the file, the line and the field: metadata silently dropped would
make filtered searches silently miss images.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from index.ingest.sources import GalleryEntry, GallerySourceError
from index.metadata_fields import is_missing, parse_id, parse_tags, parse_time

KEY = "file"
FIELDS = ("person_id", "camera_id", "captured_at", "tags")


@dataclass(frozen=True)
class SidecarRow:
    where: str  # "FILE: line N"
    file: str
    values: dict[str, Any]  # the fields given, parsed: a subset of FIELDS


def read_sidecar(path: Path) -> list[SidecarRow]:
    """Every row of a sidecar, parsed and checked."""
    path = Path(path)
    is_csv = path.suffix.lower() == ".csv"
    rows: list[SidecarRow] = []
    seen: dict[str, str] = {}
    for where, raw in _raw_rows(path, is_csv):
        row = _parse_row(where, raw, is_csv)
        if row.file in seen:
            raise GallerySourceError(f"{where}: {row.file!r} is listed again ({seen[row.file]})")
        seen[row.file] = where
        rows.append(row)
    return rows


def apply_sidecar(
    entries: Sequence[GalleryEntry], rows: Sequence[SidecarRow], base: Path | None
) -> list[GalleryEntry]:
    """``entries`` with the metadata of their sidecar rows (a person_id given there wins).

    ``base`` is the folder paths are relative to (``--images`` or ``--root``); an entry's
    image_id is accepted too.
    """
    by_path: dict[str, int] = {}
    by_name: dict[str, list[int]] = {}
    for n, entry in enumerate(entries):
        by_path[entry.image_id] = n
        if base is not None and entry.path.is_relative_to(base):
            by_path.setdefault(entry.path.relative_to(base).as_posix(), n)
        by_name.setdefault(entry.path.name, []).append(n)
    out = list(entries)
    claimed: dict[int, str] = {}
    for row in rows:
        n = _match(row, by_path, by_name)
        if n in claimed:
            raise GallerySourceError(f"{row.where}: {row.file!r} is the same image as {claimed[n]}")
        claimed[n] = row.where
        out[n] = dataclasses.replace(out[n], **row.values)
    return out


def _match(row: SidecarRow, by_path: dict[str, int], by_name: dict[str, list[int]]) -> int:
    if row.file in by_path:
        return by_path[row.file]
    named = by_name.get(row.file, []) if "/" not in row.file else []
    if len(named) == 1:
        return named[0]
    if len(named) > 1:
        raise GallerySourceError(
            f"{row.where}: field {KEY!r}: {len(named)} images are named {row.file!r}; "
            "give its path relative to --images or --root"
        )
    raise GallerySourceError(
        f"{row.where}: field {KEY!r}: no image {row.file!r} among the images to index "
        "(paths are relative to --images or --root)"
    )


# --- parsing ----------------------------------------------------------------------------------


def _raw_rows(path: Path, is_csv: bool) -> Iterator[tuple[str, Any]]:
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            if is_csv:
                reader = csv.DictReader(handle)
                unknown = [c for c in reader.fieldnames or [] if c not in (KEY, *FIELDS)]
                if unknown:
                    raise GallerySourceError(
                        f"{path}: line 1: unknown field {unknown[0]!r}"
                        f" (known: {', '.join((KEY, *FIELDS))})"
                    )
                for row in reader:
                    yield f"{path}: line {reader.line_num}", row
                return
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                where = f"{path}: line {number}"
                try:
                    yield where, json.loads(line)
                except json.JSONDecodeError as err:
                    raise GallerySourceError(f"{where}: not JSON ({err.msg})") from None
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise GallerySourceError(f"{path}: cannot read metadata: {err}") from None


def _parse_row(where: str, raw: Any, is_csv: bool) -> SidecarRow:
    if not isinstance(raw, dict):
        raise GallerySourceError(f"{where}: expected an object with a {KEY!r} field")
    if None in raw:  # csv.DictReader's key for values past the header's columns
        raise GallerySourceError(f"{where}: more values than the header has columns")
    for name in raw:
        if name not in (KEY, *FIELDS):
            raise GallerySourceError(
                f"{where}: unknown field {name!r} (known: {', '.join((KEY, *FIELDS))})"
            )
    file = raw.get(KEY)
    if is_missing(file) or not isinstance(file, str):
        raise GallerySourceError(f"{where}: field {KEY!r}: expected the image's file name")
    values = {}
    for name in FIELDS:
        value = raw.get(name)
        if is_missing(value):
            continue
        try:
            values[name] = _PARSERS[name](value, is_csv)
        except ValueError as err:
            raise GallerySourceError(f"{where}: field {name!r}: {err}") from None
    return SidecarRow(where, _normalise(file, where), values)


def _normalise(file: str, where: str) -> str:
    parts = [p for p in PurePosixPath(file.strip().replace("\\", "/")).parts if p != "."]
    if not parts or ".." in parts or parts[0] == "/":
        raise GallerySourceError(f"{where}: field {KEY!r}: {file!r} is not a relative path")
    return "/".join(parts)


_PARSERS = {
    "person_id": lambda v, _csv: parse_id(v),
    "camera_id": lambda v, _csv: parse_id(v),
    "captured_at": lambda v, _csv: parse_time(v),
    "tags": parse_tags,
}
