"""The indexes of a gallery collection: the vector index of the store's kind and the inverted
indexes for dedupe and filters, with their build and search parameters.

The vector index follows the store's kind (flat → FLAT, exact; ivf → IVF_FLAT; hnsw → HNSW;
gpu_cagra / gpu_brute_force → GPU_CAGRA / GPU_BRUTE_FORCE, Milvus GPU servers only), metric IP;
sha256, camera_id, person_id and captured_at get inverted indexes for dedupe and filters.
"""

from __future__ import annotations

from typing import Any

from pymilvus import MilvusClient, MilvusException

from index.errors import IndexStoreError
from index.milvus.connection import inverted_indexes, is_lite, reason

# The store's one logger name, as before it was split into modules (service logs show it).

# kind → Milvus index type. The gpu_* kinds exist on a Milvus GPU server only.
INDEX_TYPES = {
    "flat": "FLAT",
    "ivf": "IVF_FLAT",
    "hnsw": "HNSW",
    "gpu_cagra": "GPU_CAGRA",
    "gpu_brute_force": "GPU_BRUTE_FORCE",
}
KINDS = tuple(INDEX_TYPES)
EXACT_KINDS = frozenset({"flat", "gpu_brute_force"})
GPU_KINDS = frozenset({"gpu_cagra", "gpu_brute_force"})

IVF_NLIST = 128  # per segment; Milvus fixes it when the index is created
IVF_NPROBE = 32
HNSW_M = 32  # as the FAISS store
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 128
CAGRA_GRAPH_DEGREE = 32
CAGRA_INTERMEDIATE_GRAPH_DEGREE = 64
CAGRA_ITOPK = 128


def check_kind(kind: str) -> str:
    if kind not in INDEX_TYPES:
        raise IndexStoreError(f"unknown index kind {kind!r}: use one of {', '.join(KINDS)}")
    return kind


def refuse_gpu_on_lite(kind: str, where: str) -> None:
    """milvus-lite takes a GPU index spec, then fails to build it in the background and
    searches unindexed; refuse before anything exists."""
    if kind in GPU_KINDS:
        raise IndexStoreError(
            f"index kind {kind!r} ({INDEX_TYPES[kind]}) needs a Milvus server with GPUs; "
            f"{where} is milvus-lite, which runs on the CPU only: use flat, ivf or hnsw there. "
            "Nothing was created."
        )


def build_indexes(client: MilvusClient, uri: str, collection: str, kind: str) -> None:
    """The vector index of ``kind`` plus inverted indexes for dedupe and filters, then load.
    When the engine refuses, the caller drops the collection it created (store.py)."""
    params = client.prepare_index_params()
    params.add_index(
        "vector", index_type=INDEX_TYPES[kind], metric_type="IP", params=build_params(kind)
    )
    inverted = inverted_indexes(client)
    for field in ("sha256", "camera_id", "person_id", "captured_at"):
        # Before Milvus 2.4: Trie for strings, STL_SORT for numbers.
        older = "STL_SORT" if field == "captured_at" else "Trie"
        params.add_index(field, index_type="INVERTED" if inverted else older)
    try:
        # sync=False: pymilvus would otherwise poll each index's state with 0.5 s sleeps; an
        # empty collection's indexes are built at once and load waits for them anyway.
        client.create_index(collection, params, sync=False)
        client.load_collection(collection)
    except MilvusException as exc:
        where = uri if is_lite(uri) else f"the Milvus server at {uri}"
        hint = (
            " GPU kinds need a Milvus GPU server; use flat, ivf or hnsw here."
            if kind in GPU_KINDS
            else ""
        )
        raise IndexStoreError(
            f"index kind {kind!r} ({INDEX_TYPES[kind]}) was refused by {where}: "
            f"{reason(exc)}.{hint} Nothing was created."
        ) from exc


def build_params(kind: str) -> dict[str, Any]:
    if kind == "ivf":
        return {"nlist": IVF_NLIST}
    if kind == "hnsw":
        return {"M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION}
    if kind == "gpu_cagra":
        return {
            "intermediate_graph_degree": CAGRA_INTERMEDIATE_GRAPH_DEGREE,
            "graph_degree": CAGRA_GRAPH_DEGREE,
        }
    return {}


def search_params(kind: str, k: int) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if kind == "ivf":
        params = {"nprobe": IVF_NPROBE}
    elif kind == "hnsw":
        params = {"ef": max(HNSW_EF_SEARCH, k)}
    elif kind == "gpu_cagra":
        params = {"itopk_size": max(CAGRA_ITOPK, k)}
    return {"metric_type": "IP", "params": params}
