"""What the ``python -m index`` commands read from their arguments: the images to index (with
their sidecar metadata) and a search's filter.

All of it is checked before a model loads or a store is touched, so a typo costs nothing and
writes nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from index.filters import GalleryFilter
from index.ingest.sidecar import apply_sidecar, read_sidecar
from index.ingest.sources import GalleryEntry, GallerySourceError, from_dataset, from_folder
from index.metadata_fields import parse_time


def entries(args: argparse.Namespace) -> list[GalleryEntry]:
    """The images of ``--images`` or ``--dataset``, with ``--metadata`` applied."""
    if args.images is not None:
        if args.root is not None:
            raise GallerySourceError("--root goes with --dataset, not --images")
        found = from_folder(args.images, person_from_dir=args.person_from_dir)
        base: Path | None = Path(args.images)
    else:
        if args.root is None:
            raise GallerySourceError("--dataset needs --root")
        if args.person_from_dir:
            raise GallerySourceError("--person-from-dir goes with --images")
        found = from_dataset(args.dataset, args.root, args.split)
        base = Path(args.root) if Path(args.root).is_dir() else Path(args.root).parent
    if args.metadata is None:
        return found
    return apply_sidecar(found, read_sidecar(args.metadata), base)


def search_filter(args: argparse.Namespace) -> GalleryFilter | None:
    """The search's ``--camera``/``--after``/``--before``/``--person``/``--tag`` conditions;
    None when there are none."""
    after = _time(args.after, "--after")
    before = _time(args.before, "--before")
    try:
        where = GalleryFilter(
            camera_ids=_ids(args.cameras, "--camera"),
            captured_after=after,
            captured_before=before,
            person_ids=_ids(args.persons, "--person"),
            tags=_ids(args.tags, "--tag"),
        )
    except ValueError as err:
        raise GallerySourceError(f"--after/--before: {err}") from None
    return None if where.is_empty else where


def _time(value: str | None, flag: str) -> float | None:
    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError as err:
        raise GallerySourceError(f"{flag}: {err}") from None


def _ids(values: list[str] | None, flag: str) -> tuple[str, ...] | None:
    if values is None:
        return None
    cleaned = tuple(v.strip() for v in values)
    if not all(cleaned):
        raise GallerySourceError(f"{flag} is empty")
    return cleaned
