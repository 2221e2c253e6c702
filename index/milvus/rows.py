"""Items as collection rows and back, and the checks an item passes before it becomes a row
(the schema's types and limits: Milvus would otherwise refuse the whole request)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from index.errors import IndexStoreError
from index.inputs import check_item
from index.items import ItemMeta
from index.milvus.schema import (
    MAX_ID_BYTES,
    MAX_NAME_BYTES,
    MAX_PATH_BYTES,
    MAX_SHA_BYTES,
    MAX_TAG_BYTES,
    MAX_TAGS,
)


def check_fields(item: ItemMeta) -> None:
    """What :func:`index.inputs.check_item` checks, plus the schema's types and limits."""
    check_item(item)
    for name, value, limit in (
        ("image_id", item.image_id, MAX_ID_BYTES),
        ("person_id", item.person_id, MAX_NAME_BYTES),
        ("camera_id", item.camera_id, MAX_NAME_BYTES),
        ("sha256", item.sha256, MAX_SHA_BYTES),
        ("source_path", item.source_path, MAX_PATH_BYTES),
    ):
        if value is None and name in ("person_id", "camera_id"):
            continue
        if not isinstance(value, str):
            raise IndexStoreError(f"item {item.image_id!r}: {name} must be a string")
        if len(value.encode()) > limit:
            raise IndexStoreError(f"item {item.image_id!r}: {name} is longer than {limit} bytes")
    for name, value in (("added_at", item.added_at), ("captured_at", item.captured_at)):
        if value is None and name == "captured_at":
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise IndexStoreError(f"item {item.image_id!r}: {name} must be a finite number")
    tags = item.tags
    if isinstance(tags, str) or not all(isinstance(t, str) for t in tags):
        raise IndexStoreError(f"item {item.image_id!r}: tags must be a list of strings")
    if len(tags) > MAX_TAGS or any(len(t.encode()) > MAX_TAG_BYTES for t in tags):
        raise IndexStoreError(
            f"item {item.image_id!r}: at most {MAX_TAGS} tags of {MAX_TAG_BYTES} bytes each"
        )


def to_row(vector: np.ndarray, item: ItemMeta, nullable: bool = True) -> dict[str, Any]:
    """``nullable`` False: None as "" (a server without null values, see milvus_schema)."""
    missing = None if nullable else ""
    return {
        "image_id": item.image_id,
        "vector": vector,
        "person_id": missing if item.person_id is None else item.person_id,
        "camera_id": missing if item.camera_id is None else item.camera_id,
        "captured_at": 0.0 if item.captured_at is None else float(item.captured_at),
        "has_captured_at": item.captured_at is not None,
        "tags": list(item.tags),
        "sha256": item.sha256,
        "source_path": item.source_path,
        "added_at": float(item.added_at),
    }


def to_item(row: dict[str, Any]) -> ItemMeta:
    return ItemMeta(
        image_id=row["image_id"],
        person_id=row.get("person_id") or None,  # "": none, on a server without nulls
        source_path=row["source_path"],
        sha256=row["sha256"],
        added_at=float(row["added_at"]),
        camera_id=row.get("camera_id") or None,
        captured_at=float(row["captured_at"]) if row["has_captured_at"] else None,
        tags=tuple(row.get("tags") or ()),
    )
