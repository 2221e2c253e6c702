"""One setting picks the gallery store: a folder is the embedded FAISS + SQLite store (the
default); ``milvus://HOST:PORT[/COLLECTION]`` a Milvus server; a path ending in ``.db`` a
milvus-lite file (the embedded Milvus engine, for one process)."""

from __future__ import annotations

from pathlib import Path

from index.encoding import Encoding
from index.errors import IndexStoreError
from index.gallery_store import GalleryStore
from index.search.engine_policy import DEFAULT_POLICY, EnginePolicy

MILVUS_SCHEME = "milvus://"
MILVUS_LITE_SUFFIX = ".db"
DEFAULT_COLLECTION = "gallery"


def store_kind(spec: str | Path) -> str:
    """``faiss``, ``milvus`` (a server) or ``milvus-lite`` (a local file)."""
    text = str(spec)
    if text.startswith(MILVUS_SCHEME):
        return "milvus"
    if text.endswith(MILVUS_LITE_SUFFIX):
        return "milvus-lite"
    if "://" in text:
        raise IndexStoreError(
            f"unknown store {text!r}: use a folder, milvus://HOST:PORT[/COLLECTION] or FILE.db"
        )
    return "faiss"


def milvus_target(spec: str | Path) -> tuple[str, str]:
    """(client URI, collection) of a Milvus store setting."""
    text = str(spec)
    if store_kind(text) == "milvus-lite":
        return str(Path(text).resolve()), DEFAULT_COLLECTION
    rest = text[len(MILVUS_SCHEME) :]
    address, _, collection = rest.partition("/")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise IndexStoreError(f"store {text!r}: expected milvus://HOST:PORT[/COLLECTION]")
    collection = collection.strip("/") or DEFAULT_COLLECTION
    if not collection.replace("_", "").isalnum() or collection[0].isdigit():
        raise IndexStoreError(
            f"store {text!r}: a collection name is letters, digits and '_', not first a digit"
        )
    return f"http://{host}:{port}", collection


def create_store(
    spec: str | Path,
    fingerprint: str,
    dim: int,
    kind: str = "flat",
    use_gpu: str = "auto",
    *,
    encoding: Encoding | None = None,
    gpu_device: int = 0,
    gpu_shards: bool = False,
    engine_policy: EnginePolicy = DEFAULT_POLICY,
    search_consistency: str = "Strong",
) -> GalleryStore:
    """A new, empty store for vectors of the bundle ``fingerprint`` encoded as ``encoding``
    says (default fp32, global). ``gpu_device``/``gpu_shards``: where a FAISS index's GPU copy
    goes (see :class:`index.faiss.gallery.GalleryIndex`). ``search_consistency``: what a Milvus
    store's searches ask for (index/milvus/schema.py); a FAISS folder is always current."""
    if store_kind(spec) == "faiss":
        from index.faiss.gallery import GalleryIndex

        return GalleryIndex.create(
            Path(spec),
            fingerprint,
            dim,
            kind,
            use_gpu,
            encoding=encoding,
            gpu_device=gpu_device,
            gpu_shards=gpu_shards,
            engine_policy=engine_policy,
        )
    from index.milvus.store import MilvusStore

    return MilvusStore.create(
        *milvus_target(spec),
        fingerprint=fingerprint,
        dim=dim,
        kind=kind,
        encoding=encoding,
        search_consistency=search_consistency,
    )


def open_store(
    spec: str | Path,
    fingerprint: str | None = None,
    dim: int | None = None,
    use_gpu: str = "auto",
    *,
    encoding: Encoding | None = None,
    gpu_device: int = 0,
    gpu_shards: bool = False,
    engine_policy: EnginePolicy = DEFAULT_POLICY,
    search_consistency: str = "Strong",
) -> GalleryStore:
    """An existing store; a ``fingerprint``, ``dim`` or ``encoding`` given must match what it
    holds (``encoding`` None: not checked). ``engine_policy``: how a FAISS folder's exact CPU
    search picks its engine (index/search/engine_policy.py)."""
    if store_kind(spec) == "faiss":
        from index.faiss.gallery import GalleryIndex

        return GalleryIndex.open(
            Path(spec),
            fingerprint,
            dim,
            use_gpu,
            encoding=encoding,
            gpu_device=gpu_device,
            gpu_shards=gpu_shards,
            engine_policy=engine_policy,
        )
    from index.milvus.store import MilvusStore

    return MilvusStore.open(
        *milvus_target(spec),
        fingerprint=fingerprint,
        dim=dim,
        encoding=encoding,
        search_consistency=search_consistency,
    )
