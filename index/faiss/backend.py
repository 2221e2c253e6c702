"""FAISS specifics: index kinds, copy-on-write updates, file I/O and the optional GPU copy.

Every update returns a new CPU index and leaves the old one untouched, so searches running on the
old object stay valid while a write is prepared (the price is a second copy during the write).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import BinaryIO

import faiss
import numpy as np

from bundle.fsio import replace_atomic
from index.errors import IndexCorruptError, IndexStoreError
from index.search import faiss_tuning

faiss_tuning.apply()  # FAISS's flat-search globals, once per process: see faiss_tuning

KINDS = ("flat", "ivf", "hnsw")
USE_GPU = ("auto", "never", "always")
GPU_MAX_K = 2048  # FAISS GPU k-selection limit
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 128
IVF_POINTS_PER_LIST = 39  # below this k-means warns and centroids are poor
IVF_RETRAIN_FACTOR = 2  # retrain once the ideal list count doubles


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise IndexStoreError(f"unknown index kind {kind!r}: use one of {', '.join(KINDS)}")
    return kind


def ivf_lists(n: int) -> int:
    """Number of IVF lists for ``n`` vectors: ~4·sqrt(n), with enough points to train each."""
    return max(1, min(int(4 * math.sqrt(n)), n // IVF_POINTS_PER_LIST))


def ivf_probes(nlist: int) -> int:
    return min(nlist, max(8, nlist // 8))


def new_index(kind: str, dim: int) -> faiss.Index:
    """An empty CPU master; IVF is trained on its first vectors."""
    check_kind(kind)
    if kind == "flat":
        return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    if kind == "hnsw":
        inner = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        inner.hnsw.efSearch = HNSW_EF_SEARCH
        return faiss.IndexIDMap2(inner)
    # IVF keeps its own ids: IndexIDMap's removal assumes a sub-index that compacts like a flat one.
    return faiss.index_factory(dim, "IVF1,Flat", faiss.METRIC_INNER_PRODUCT)


def _train_ivf(index: faiss.Index, vectors: np.ndarray) -> None:
    if index.nlist == 1:
        # One list needs no k-means (which would warn on small sets): its centroid is the mean.
        centre = vectors.mean(axis=0, keepdims=True)
        norm = float(np.linalg.norm(centre))
        centre = centre / norm if norm > 0 else vectors[:1]
        faiss.downcast_index(index.quantizer).add(np.ascontiguousarray(centre, dtype=np.float32))
        index.is_trained = True
    else:
        index.cp.spherical = True  # unit-norm data: centroids on the sphere suit inner product
        index.train(vectors)


def build(kind: str, dim: int, vectors: np.ndarray, ids: np.ndarray) -> faiss.Index:
    """A fresh master holding ``vectors`` under ``ids``."""
    check_kind(kind)
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, dim)
    if kind == "ivf":
        nlist = ivf_lists(len(vectors))
        index = faiss.index_factory(dim, f"IVF{nlist},Flat", faiss.METRIC_INNER_PRODUCT)
        index.nprobe = ivf_probes(nlist)
        if len(vectors):
            _train_ivf(index, vectors)
    else:
        index = new_index(kind, dim)
    if len(vectors):
        index.add_with_ids(vectors, ids)
    return index


def with_added(index: faiss.Index, kind: str, vectors: np.ndarray, ids: np.ndarray) -> faiss.Index:
    """A copy of ``index`` plus ``vectors``; IVF is retrained when it has outgrown its lists."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    if kind == "ivf":
        total = index.ntotal + len(vectors)
        if not index.is_trained or ivf_lists(total) >= IVF_RETRAIN_FACTOR * index.nlist:
            old_ids, old_vectors = extract(index)
            return build(
                kind,
                index.d,
                np.concatenate([old_vectors, vectors]),
                np.concatenate([old_ids, ids]),
            )
    new = faiss.clone_index(index)
    new.add_with_ids(vectors, ids)
    return new


def with_removed(index: faiss.Index, kind: str, ids: np.ndarray) -> faiss.Index:
    """A copy of ``index`` without ``ids`` (HNSW cannot delete, so it is rebuilt)."""
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    if kind == "hnsw":
        old_ids, old_vectors = extract(index)
        keep = ~np.isin(old_ids, ids)
        return build(kind, index.d, old_vectors[keep], old_ids[keep])
    new = faiss.clone_index(index)
    new.remove_ids(ids)
    return new


def with_replaced(
    index: faiss.Index, kind: str, vectors: np.ndarray, ids: np.ndarray, replaced: np.ndarray
) -> faiss.Index:
    """A copy of ``index`` without the ids in ``replaced`` and with ``vectors`` under ``ids``
    (an id may be in both: its vector is replaced)."""
    replaced = np.ascontiguousarray(replaced, dtype=np.int64)
    if not len(replaced):
        return with_added(index, kind, vectors, ids)
    if kind == "hnsw":  # one rebuild, not one to remove and another to add
        old_ids, old_vectors = extract(index)
        keep = ~np.isin(old_ids, replaced)
        new = np.asarray(vectors, np.float32).reshape(-1, index.d)
        return build(
            kind,
            index.d,
            np.concatenate([old_vectors[keep], new]),
            np.concatenate([old_ids[keep], np.asarray(ids, np.int64)]),
        )
    return with_added(with_removed(index, kind, replaced), kind, vectors, ids)


def reconstruct(index: faiss.Index, ids: np.ndarray) -> np.ndarray:
    """The stored vectors of ``ids`` (all present in ``index``), one row per id, in order."""
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    if not len(ids):
        return np.zeros((0, index.d), np.float32)
    if isinstance(index, faiss.IndexIDMap2):
        return index.reconstruct_batch(ids)
    # IVF has no id -> position map unless one is built, which would change the shared index.
    out = np.empty((len(ids), index.d), np.float32)
    row_of = {int(i): n for n, i in enumerate(ids)}
    found = 0
    invlists = index.invlists
    for list_no in range(index.nlist):
        size = invlists.list_size(list_no)
        if size == 0:
            continue
        list_ids = faiss.rev_swig_ptr(invlists.get_ids(list_no), size)
        hits = np.flatnonzero(np.isin(list_ids, ids))
        if len(hits):
            codes = faiss.rev_swig_ptr(invlists.get_codes(list_no), size * invlists.code_size)
            rows = codes.view(np.float32).reshape(size, index.d)
            for h in hits:
                out[row_of[int(list_ids[h])]] = rows[h]
            found += len(hits)
    if found != len(row_of):
        raise IndexStoreError(f"{len(row_of) - found} of the ids asked for are not in the index")
    return out


def _ivf_lists(index: faiss.Index, with_vectors: bool) -> tuple[np.ndarray, np.ndarray | None]:
    invlists = index.invlists
    ids, vectors = [np.zeros(0, np.int64)], [np.zeros((0, index.d), np.float32)]
    for list_no in range(index.nlist):
        size = invlists.list_size(list_no)
        if size == 0:
            continue
        ids.append(faiss.rev_swig_ptr(invlists.get_ids(list_no), size).astype(np.int64))
        if with_vectors:
            codes = faiss.rev_swig_ptr(invlists.get_codes(list_no), size * invlists.code_size)
            vectors.append(codes.copy().view(np.float32).reshape(size, index.d))
    return np.concatenate(ids), np.concatenate(vectors) if with_vectors else None


def ids_of(index: faiss.Index) -> np.ndarray:
    if isinstance(index, faiss.IndexIDMap2):
        return faiss.vector_to_array(index.id_map).astype(np.int64)
    return _ivf_lists(index, with_vectors=False)[0]


def extract(index: faiss.Index) -> tuple[np.ndarray, np.ndarray]:
    """All (ids, vectors) of a master, in storage order."""
    if isinstance(index, faiss.IndexIDMap2):
        ids = faiss.vector_to_array(index.id_map).astype(np.int64)
        if index.ntotal == 0:
            return ids, np.zeros((0, index.d), np.float32)
        return ids, index.index.reconstruct_n(0, index.ntotal)
    ids, vectors = _ivf_lists(index, with_vectors=True)
    return ids, vectors


def kind_of(index: faiss.Index) -> str | None:
    if isinstance(index, faiss.IndexIVFFlat):
        return "ivf"
    if isinstance(index, faiss.IndexIDMap2):
        inner = faiss.downcast_index(index.index)
        if isinstance(inner, faiss.IndexHNSWFlat):
            return "hnsw"
        if isinstance(inner, faiss.IndexFlat):
            return "flat"
    return None


def faiss_reason(err: BaseException) -> str:
    """FAISS messages start with the C++ function and source line; keep what a user can act on."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return re.sub(r"^Error in .*? at \S+:\d+: ", "", text)


def read(handle: BinaryIO, name: str, kind: str, dim: int) -> faiss.Index:
    """Read a master from an open file and check it is what the manifest says it is."""
    try:
        index = faiss.read_index(faiss.PyCallbackIOReader(handle.read))
    except (RuntimeError, MemoryError) as err:
        raise IndexCorruptError(
            f"{name} is not a readable FAISS index ({faiss_reason(err)}); "
            "restore it from a backup or rebuild the index"
        ) from None
    found = kind_of(index)
    if found != kind or index.d != dim or index.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise IndexCorruptError(
            f"{name} holds a {found or type(index).__name__} index of dimension {index.d}, "
            f"but the manifest says {kind} of dimension {dim}"
        )
    return index


def write(index: faiss.Index, path: Path) -> int:
    """Write a master durably (temp file, fsync, rename, fsync folder); return its size."""

    def _write(tmp: Path) -> None:
        try:
            faiss.write_index(index, str(tmp))
        except RuntimeError as err:
            raise IndexStoreError(f"cannot write {path.name}: {faiss_reason(err)}") from None

    return replace_atomic(path, _write)


# --- GPU --------------------------------------------------------------------------------------


def gpu_count() -> int:
    """GPUs FAISS can use: zero for the CPU build or when no device is visible."""
    if not hasattr(faiss, "StandardGpuResources"):
        return 0
    try:
        return int(faiss.get_num_gpus())
    except RuntimeError:
        return 0


def resolve_use_gpu(use_gpu: str, kind: str, available: bool | None = None) -> bool:
    """Whether ``kind`` is searched on a GPU under the policy ``use_gpu``; ``available``
    overrides whether a GPU is usable (None: ask FAISS)."""
    if use_gpu not in USE_GPU:
        raise IndexStoreError(f"unknown use_gpu {use_gpu!r}: use one of {', '.join(USE_GPU)}")
    if use_gpu == "never":
        return False
    if available is None:
        available = gpu_count() > 0
    if use_gpu == "always":
        if not available:
            raise IndexStoreError(
                "use_gpu='always' but no CUDA GPU is usable (faiss without GPU support, or no "
                "device visible); install the gpu extra or use use_gpu='auto'"
            )
        if kind == "hnsw":
            raise IndexStoreError("HNSW indexes search on the CPU only; use flat or ivf on a GPU")
    return available and kind != "hnsw"


class GpuCopier:
    """Copies a CPU master to one GPU (``device``), or shards it over every visible GPU when
    ``shards`` is set (opt-in: several processes on one machine would each take all GPUs).

    Its resources are made once and reused by every copy; they are not thread-safe, so the
    caller serialises copies, searches and frees (index/faiss/gpu_copies.py).
    """

    def __init__(self, fp16: bool = False, device: int = 0, shards: bool = False) -> None:
        count = gpu_count()
        if not 0 <= device < max(count, 1):
            raise IndexStoreError(f"GPU {device} is not visible to FAISS ({count} GPU(s))")
        self.fp16 = fp16
        self.device = device
        self.shards = shards and count > 1
        devices = range(count) if self.shards else [device]
        self._resources = [faiss.StandardGpuResources() for _ in devices]

    def copy(self, index: faiss.Index) -> faiss.Index:
        if not self.shards:
            options = faiss.GpuClonerOptions()
            options.useFloat16 = self.fp16
            return faiss.index_cpu_to_gpu(self._resources[0], self.device, index, options)
        options = faiss.GpuMultipleClonerOptions()
        options.shard = True  # each GPU scans 1/n of the vectors instead of holding them all
        options.useFloat16 = self.fp16
        return faiss.index_cpu_to_gpu_multiple_py(self._resources, index, options)
