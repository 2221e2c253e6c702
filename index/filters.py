"""Which gallery images a search may return: cameras, a capture-time window, persons, tags.

One definition of "passes", used three ways: ``matches`` (the reference, and for checks),
the FAISS store's SQL over its manifest, and the Milvus store's filter expression. A filtered
search returns the top k among the images that pass, never a post-filtered top k.
"""

from __future__ import annotations

from dataclasses import dataclass

from index.items import ItemMeta
from index.metadata_fields import normalise_id
from index.milvus.quoting import in_list, literal_list


@dataclass(frozen=True)
class GalleryFilter:
    """Every given condition must hold (AND); within a list, any value may match (OR), except
    ``tags``, where the image must carry every tag listed. Times are seconds since the epoch,
    both bounds inclusive; an image with no capture time fails any time bound, and one with no
    camera (person) fails a camera (person) condition."""

    camera_ids: tuple[str, ...] | None = None
    captured_after: float | None = None
    captured_before: float | None = None
    person_ids: tuple[str, ...] | None = None
    tags: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("camera_ids", "person_ids", "tags"):
            value = getattr(self, name)
            if value is not None:
                if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                    raise ValueError(f"{name} must be a list of strings")
                # Filtered as stored: ids are normalised on the way in (metadata_fields).
                object.__setattr__(self, name, tuple(normalise_id(v) for v in value))
        after, before = self.captured_after, self.captured_before
        if after is not None and before is not None and after > before:
            raise ValueError("captured_after is later than captured_before")

    @property
    def is_empty(self) -> bool:
        return all(
            getattr(self, name) is None
            for name in ("camera_ids", "captured_after", "captured_before", "person_ids", "tags")
        )

    def matches(self, item: ItemMeta) -> bool:
        if self.camera_ids is not None and item.camera_id not in self.camera_ids:
            return False
        if self.person_ids is not None and item.person_id not in self.person_ids:
            return False
        if self.captured_after is not None or self.captured_before is not None:
            if item.captured_at is None:
                return False
            if self.captured_after is not None and item.captured_at < self.captured_after:
                return False
            if self.captured_before is not None and item.captured_at > self.captured_before:
                return False
        return self.tags is None or set(self.tags) <= set(item.tags)

    def milvus_expression(self) -> str:
        """The same conditions as a Milvus boolean expression ('' when there are none)."""
        parts = []
        if self.camera_ids is not None:
            parts.append(in_list("camera_id", self.camera_ids))
        if self.person_ids is not None:
            parts.append(in_list("person_id", self.person_ids))
        if self.captured_after is not None or self.captured_before is not None:
            parts.append("has_captured_at == true")
        if self.captured_after is not None:
            parts.append(f"captured_at >= {float(self.captured_after)!r}")
        if self.captured_before is not None:
            parts.append(f"captured_at <= {float(self.captured_before)!r}")
        if self.tags:
            parts.append(f"array_contains_all(tags, {literal_list(self.tags)})")
        return " and ".join(f"({p})" for p in parts)
