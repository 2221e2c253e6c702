"""The unit every benchmark loader produces: one image of one person with its captions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Record:
    """One annotated image.

    ``person_id`` is the identity as written in the annotation file (never assumed contiguous);
    ``image_id`` is the image path relative to the images root, stable across machines.
    """

    image_path: Path
    person_id: int
    image_id: str
    captions: tuple[str, ...]
    split: str


class DatasetError(Exception):
    """A dataset that cannot be read as asked; the message names the file, entry and field."""
