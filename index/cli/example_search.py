"""Searching a store by example from the command line: ``python -m index search --positive ID``.

The same relevance feedback as the service's (/v1/search with ``positive_ids``): example
vectors are the ones the store holds, a photo given with ``--image`` is decoded by the one image
decoder (bundle/images.py) and encoded by the image tower, and index/search/query_vector.py joins
them to the text. Examples are left out of the results unless asked to keep them; the store is asked
for as many more hits as there are examples, so k results remain.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bundle.images import ImageDecodeError, decode_file
from bundle.parts_layout import PartsWeightsError, check_weights
from index.errors import IndexStoreError
from index.filters import GalleryFilter
from index.gallery_store import GalleryStore
from index.ingest.sources import GallerySourceError
from index.items import Hit
from index.search.query_vector import DEFAULT_ALPHA, DEFAULT_BETA, QueryVectorError, combine

if TYPE_CHECKING:
    from bundle.encoders import Bundle


@dataclass(frozen=True)
class ExampleQuery:
    text: str | None = None
    positive_ids: tuple[str, ...] = ()
    negative_ids: tuple[str, ...] = ()
    image: Path | None = None
    alpha: float = DEFAULT_ALPHA
    beta: float = DEFAULT_BETA
    keep_examples: bool = False
    weights: Mapping[str, float] | None = None  # parts mode: the part weights of this query

    def check(self) -> None:
        """Refuse what cannot be searched for, before any model is loaded."""
        if self.weights is not None:
            try:
                check_weights(self.weights)
            except PartsWeightsError as err:
                raise GallerySourceError(str(err)) from None
        if self.text is not None and not self.text.strip():
            raise GallerySourceError("--query is empty")
        if self.text is None and not self.positive_ids and self.image is None:
            raise GallerySourceError("nothing to search for: give --query, --positive or --image")
        both = sorted(set(self.positive_ids) & set(self.negative_ids))
        if both:
            raise GallerySourceError(f"both --positive and --negative: {', '.join(both)}")
        if self.image is not None and not self.image.is_file():
            raise GallerySourceError(f"--image {self.image}: no such file")
        try:
            combine(np.ones(1, np.float32), alpha=self.alpha, beta=self.beta)
        except QueryVectorError as err:
            raise GallerySourceError(f"--alpha/--beta: {err}") from None

    @property
    def example_ids(self) -> list[str]:
        return list(dict.fromkeys([*self.positive_ids, *self.negative_ids]))


def stored_vectors(store: GalleryStore, ids: Sequence[str]) -> np.ndarray:
    """The store's vectors of ``ids`` (rows, in order); every id must exist."""
    found = store.vectors(list(ids)) if ids else {}
    missing = [i for i in dict.fromkeys(ids) if i not in found]
    if missing:
        raise IndexStoreError(f"not in the index: {', '.join(missing)}")
    return np.stack([found[i] for i in ids]) if ids else np.zeros((0, store.dim), np.float32)


def image_vector(bundle: Bundle, path: Path) -> np.ndarray:
    """One photo through the decoder every path uses, then the image tower: shape (1, dim)."""
    try:
        image = decode_file(path)
    except ImageDecodeError as err:
        raise GallerySourceError(f"--image: {err.message}") from None
    return bundle.encode_images(bundle.preprocess(image)[None])


def search_by_example(
    store: GalleryStore,
    bundle: Bundle,
    query: ExampleQuery,
    k: int,
    where: GalleryFilter | None = None,
) -> list[Hit]:
    """The top ``k`` hits of the combined query, without its examples unless kept."""
    positives = stored_vectors(store, list(dict.fromkeys(query.positive_ids)))
    negatives = stored_vectors(store, list(dict.fromkeys(query.negative_ids)))
    if query.image is not None:
        positives = np.concatenate([positives, image_vector(bundle, query.image)])
    parts = bundle.parts
    if query.weights is not None and parts is None:
        raise GallerySourceError("--weights apply in parts mode only: add --parts")
    weights = {**parts.weights, **(query.weights or {})} if parts is not None else None
    text = bundle.encode_text([query.text], weights)[0] if query.text is not None else None
    if text is not None and not len(positives) and not len(negatives):
        vector = text  # a plain text search, exactly as before examples existed
    else:
        try:
            vector = combine(
                text,
                positives,
                negatives,
                query.alpha,
                query.beta,
                parts=parts.layout if parts is not None else None,
                weights=weights,
            )
        except QueryVectorError as err:
            raise GallerySourceError(str(err)) from None
    if parts is not None:
        vector = parts.layout.query_to_store(vector)  # hits then score ⟨G, Q⟩ = S
    excluded = set() if query.keep_examples else set(query.example_ids)
    hits = store.search(vector[None, :], k + len(excluded), where)[0]
    return [h for h in hits if h.image_id not in excluded][:k]
