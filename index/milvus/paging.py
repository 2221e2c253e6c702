"""Reads in pages: rows by a list of ids (or digests) a bounded number per request, and every
item in primary-key order."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

from index.errors import IndexStoreError
from index.items import ItemMeta
from index.milvus.connection import MilvusCollection
from index.milvus.quoting import after, in_list
from index.milvus.rows import to_item
from index.milvus.schema import META_FIELDS, STRONG

PAGE = 1000  # rows per read request (ids in one expression, rows per page)

T = TypeVar("T")


def chunks(values: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def query_in(
    col: MilvusCollection, field: str, values: Sequence[str], fields: list[str]
) -> list[dict]:
    """Rows whose ``field`` is one of ``values``, ``PAGE`` values per request."""
    rows: list[dict] = []
    for chunk in chunks(list(dict.fromkeys(values)), PAGE):
        expr = in_list(field, chunk)
        rows.extend(
            col.call(
                "read",
                lambda c, expr=expr: c.query(col.name, filter=expr, output_fields=fields, **STRONG),
            )
        )
    return rows


def rows_by_id(col: MilvusCollection, image_ids: Sequence[str], fields: list[str]) -> list[dict]:
    for image_id in image_ids:
        if not isinstance(image_id, str):
            raise IndexStoreError(f"image ids are strings, got {image_id!r}")
    return query_in(col, "image_id", image_ids, fields)


def iter_items(col: MilvusCollection) -> Iterator[ItemMeta]:
    """Every item in image_id order, a page per request: keyset pagination on the primary
    key, as pymilvus's query iterator pages (which does not quote the ids it resumes
    from), until a page comes back empty."""
    last: str | None = None
    while True:
        expr = "" if last is None else after("image_id", last)
        page = col.call(
            "read items",
            lambda c, expr=expr: c.query(
                col.name,
                filter=expr,
                output_fields=META_FIELDS,
                limit=PAGE,
                iterator="True",  # rows sorted by primary key within the page
                reduce_stop_for_best="False",
                **STRONG,
            ),
        )
        if not page:
            return
        rows = sorted(page, key=lambda r: r["image_id"])
        yield from (to_item(r) for r in rows)
        last = rows[-1]["image_id"]
