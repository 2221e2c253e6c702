"""Vector search in a gallery collection, with the metadata filter run inside the search."""

from __future__ import annotations

from typing import Any

import numpy as np

from index.errors import IndexStoreError
from index.filters import GalleryFilter
from index.inputs import as_matrix
from index.items import Hit, HitMeta
from index.milvus.connection import MilvusCollection
from index.milvus.indexes import search_params

MAX_K = 16384  # Milvus's top-k limit
QUERY_ROWS = 256  # query vectors per search request
HIT_FIELDS = ["person_id", "camera_id", "captured_at", "has_captured_at"]


def search(
    col: MilvusCollection,
    kind: str,
    dim: int,
    queries: np.ndarray,
    k: int,
    where: GalleryFilter | None = None,
    consistency: str = "Strong",
) -> list[list[Hit]]:
    """Top k by inner product per query among the items passing ``where`` (the filter runs
    inside the vector search: a true top k of the passing items, not a filtered top k)."""
    if isinstance(k, bool) or int(k) < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    k = int(k)
    if k > MAX_K:
        raise ValueError(f"k must be at most {MAX_K} with Milvus, got {k}")
    if where is not None and not isinstance(where, GalleryFilter):
        raise IndexStoreError(f"where must be a GalleryFilter, got {type(where).__name__}")
    q = as_matrix(queries, dim, "queries")
    if len(q) == 0:
        return []
    expr = where.milvus_expression() if where is not None else ""
    params = search_params(kind, k)
    hits: list[list[Hit]] = []
    for start in range(0, len(q), QUERY_ROWS):
        block = q[start : start + QUERY_ROWS]
        result = col.call(
            "search",
            lambda c, block=block: c.search(
                col.name,
                data=list(block),
                filter=expr,
                limit=k,
                output_fields=HIT_FIELDS,  # metadata with the hits: no read per hit
                search_params=params,
                anns_field="vector",
                consistency_level=consistency,
            ),
        )
        hits.extend([_hit(h) for h in row] for row in result)
    return hits


def _hit(found: Any) -> Hit:
    """A search result row as a Hit; the primary key by its name (``found.id``): a Milvus 2.3
    server does not echo it under ``image_id``. "" is None on a server without nulls."""
    entity = found.get("entity") or {}
    captured = entity.get("captured_at") if entity.get("has_captured_at") else None
    meta = HitMeta(entity.get("camera_id") or None, None if captured is None else float(captured))
    return Hit(str(found.id), entity.get("person_id") or None, float(found["distance"]), meta)
