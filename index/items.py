"""The records the index stores and returns."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ItemMeta:
    """One gallery image as the manifest knows it."""

    image_id: str
    person_id: str | None
    source_path: str
    sha256: str
    added_at: float


@dataclass(frozen=True)
class Hit:
    image_id: str
    person_id: str | None
    score: float


@dataclass(frozen=True)
class AddResult:
    added: list[str]
    # new image_id -> the image_id already holding the same bytes (itself when re-added unchanged)
    duplicates: dict[str, str]
