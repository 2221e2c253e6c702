"""Top k among a given set of ids (the items that pass a filter), on a CPU master.

A post-filtered top k comes back short whenever the filter is selective; instead FAISS is told
which ids may be returned (an ID selector) and ranks only those. On a flat index that is exact.
IVF and HNSW are approximate, and a selector makes them more so, since the lists probed or the
graph walked may hold few items that pass. So: a small passing set is ranked exhaustively (every
passing vector scored); a large one by the approximate index searching wider in proportion to
how selective the filter is, and any query row that still comes back short is ranked again
exhaustively.

Always the CPU master, even when the index searches a GPU copy: FAISS GPU indexes take no
selector.
"""

from __future__ import annotations

import math

import faiss
import numpy as np

from index.faiss.backend import HNSW_EF_SEARCH

# At most this many passing items are scored exhaustively by IVF and HNSW indexes.
EXHAUSTIVE_MAX = 10_000
HNSW_FILTERED_EF_MAX = 4096


def search_among(
    master: faiss.Index, kind: str, queries: np.ndarray, k: int, allowed: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids) of the top ``k`` per query among ``allowed`` (sorted, unique, every one in
    ``master``); id -1 pads rows when fewer than ``k`` are allowed."""
    allowed = np.ascontiguousarray(allowed, dtype=np.int64)
    if kind == "flat" or len(allowed) <= EXHAUSTIVE_MAX:
        return _exhaustive(master, kind, queries, k, allowed)
    scores, ids = _approximate(master, kind, queries, k, allowed)
    short = (ids[:, : min(k, len(allowed))] < 0).any(axis=1)
    if short.any():
        scores[short], ids[short] = _exhaustive(master, kind, queries[short], k, allowed)
    return scores, ids


def _exhaustive(
    master: faiss.Index, kind: str, queries: np.ndarray, k: int, allowed: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Every allowed vector scored: exact."""
    selector = faiss.IDSelectorBatch(allowed)
    if kind == "ivf":
        params = faiss.SearchParametersIVF(sel=selector, nprobe=master.nlist)
        return master.search(queries, k, params=params)
    if kind == "hnsw":
        # The graph's vectors are a flat index of positions: score the allowed ones there.
        id_map = faiss.vector_to_array(master.id_map)
        positions = np.flatnonzero(np.isin(id_map, allowed)).astype(np.int64)
        storage = faiss.downcast_index(faiss.downcast_index(master.index).storage)
        params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(positions))
        scores, found = storage.search(queries, k, params=params)
        return scores, np.where(found >= 0, id_map[np.maximum(found, 0)], -1)
    # IndexIDMap2 translates the selector to the flat index's positions itself.
    return master.search(queries, k, params=faiss.SearchParameters(sel=selector))


def _approximate(
    master: faiss.Index, kind: str, queries: np.ndarray, k: int, allowed: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The approximate index with a selector, searching wider the fewer items pass."""
    widen = master.ntotal / len(allowed)
    selector = faiss.IDSelectorBatch(allowed)
    if kind == "ivf":
        nprobe = min(master.nlist, math.ceil(master.nprobe * widen))
        params = faiss.SearchParametersIVF(sel=selector, nprobe=nprobe)
    else:
        ef = min(HNSW_FILTERED_EF_MAX, math.ceil(max(HNSW_EF_SEARCH, k) * widen))
        params = faiss.SearchParametersHNSW(sel=selector, efSearch=max(ef, k))
    return master.search(queries, k, params=params)
