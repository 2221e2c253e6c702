"""A :class:`GalleryFilter` as an SQL condition on the manifest's ``items`` rows.

It must pass exactly the items :meth:`GalleryFilter.matches` passes. SQL's NULL does most of
that: a missing camera, person or capture time compares as NULL, which is not true, so the item
fails any condition on it. Lists travel as one JSON parameter read with ``json_each``, so a
filter on thousands of persons needs no more bound parameters than one on a single camera.
"""

from __future__ import annotations

import json

from index.filters import GalleryFilter

# Every filter tag is among the item's tags (a NULL tags column has none).
_ALL_TAGS = (
    "NOT EXISTS (SELECT value FROM json_each(?) EXCEPT SELECT value FROM json_each(items.tags))"
)


def condition(where: GalleryFilter) -> tuple[str, list[object]]:
    """(SQL boolean expression over ``items``, its parameters); ``1`` when nothing is asked."""
    parts: list[str] = []
    params: list[object] = []
    for column, wanted in (("camera_id", where.camera_ids), ("person_id", where.person_ids)):
        if wanted is not None:
            parts.append(f"{column} IN (SELECT value FROM json_each(?))")
            params.append(json.dumps(list(wanted)))
    if where.captured_after is not None:
        parts.append("captured_at >= ?")
        params.append(float(where.captured_after))
    if where.captured_before is not None:
        parts.append("captured_at <= ?")
        params.append(float(where.captured_before))
    if where.tags:
        parts.append(_ALL_TAGS)
        params.append(json.dumps(list(where.tags)))
    return " AND ".join(parts) or "1", params
