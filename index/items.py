"""The records a gallery store keeps and returns."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ItemMeta:
    """One gallery image as the store knows it.

    ``captured_at`` is when the camera took the picture, in seconds since the epoch (UTC);
    ``added_at`` when it entered the gallery. ``camera_id``, ``captured_at`` and ``tags`` are
    optional: an image without them never passes a filter on them.
    """

    image_id: str
    person_id: str | None
    source_path: str
    sha256: str
    added_at: float
    camera_id: str | None = None
    captured_at: float | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class HitMeta:
    """What a search reply shows of a hit's image beyond its person."""

    camera_id: str | None = None
    captured_at: float | None = None


@dataclass(frozen=True)
class Hit:
    image_id: str
    person_id: str | None
    score: float
    # The image's camera and capture time when the store sent them with the hit (Milvus does,
    # in the search request itself); None when the caller must read them (GalleryStore.get_many).
    meta: HitMeta | None = field(default=None, compare=False)


@dataclass(frozen=True)
class AddResult:
    added: list[str]
    # new image_id -> the image_id already holding the same bytes (itself when re-added unchanged)
    duplicates: dict[str, str]
