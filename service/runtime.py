"""What a running service holds: the bundle, the gallery store, the searcher, the image files.

Built by the app's lifespan and kept on ``app.state.runtime``; loading and warming happen here so
the routes only ever see a ready runtime. Text queries go through the runtime's one
:class:`~service.query.Searcher`, which owns their whole path (service/query.py). The gallery is
whatever :func:`index.stores.open_store` opens (an index folder, a Milvus server, a milvus-lite
file); everything here and in the routes uses only the GalleryStore protocol.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch

from bundle.devices import resolve_device
from bundle.encoders import Bundle
from bundle.format import BundleError, BundleMeta, read_meta
from bundle.parts_encoder import check_parts_runtime, layout_of
from bundle.parts_layout import PartsLayout
from bundle.runtimes import runtime_precision
from index.encoding import Encoding
from index.errors import EncodingMismatchError, IndexMismatchError, IndexStoreError
from index.gallery_store import GalleryStore
from index.stores import create_store, open_store
from service.batching import group_by_length
from service.metrics import Metrics
from service.orphans import named_sha256, sweep_orphans

__all__ = ["Runtime", "StartupError", "load_runtime", "named_sha256", "warm_up"]
from service.query import Searcher
from service.settings import Settings
from service.storage import ImageStore
from service.thumbnails import ThumbnailCache

log = logging.getLogger(__name__)
# How long a replica that lost the race to create a Milvus collection waits for the winner to
# finish it (indexes, load, claims) before giving up on opening it.
CREATION_WAIT_S = 60.0


class StartupError(Exception):
    """The service cannot start with this configuration; the message says what to change."""


@dataclass
class Runtime:
    settings: Settings
    bundle: Bundle
    store: GalleryStore
    searcher: Searcher  # text queries: cross-request batches of encode + search, and widening
    images: ImageStore
    metrics: Metrics
    thumbnails: ThumbnailCache = field(default_factory=ThumbnailCache)
    # One writer at a time in this process: uploads and deletes each hold it across files +
    # store; the image folder's lock (service/storage.py) does the same across processes.
    write_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def fingerprint(self) -> str:
        return self.bundle.fingerprint

    def close_files(self) -> None:
        """Release the store and the image folder. Blocking (closing SQLite may checkpoint its
        log to disk, a Milvus client closes its channel): call it from a worker thread, never on
        the event loop."""
        self.store.close()
        self.images.close()

    def encode_images_now(self, tensors: list[torch.Tensor], batch: int = 32) -> np.ndarray:
        started = time.perf_counter()
        parts = [
            self.bundle.encode_images(torch.stack(tensors[i : i + batch]))
            for i in range(0, len(tensors), batch)
        ]
        self.metrics.encode.labels(kind="image").observe(time.perf_counter() - started)
        vectors = np.concatenate(parts, axis=0) if parts else np.zeros((0, self.bundle.dim), "f4")
        if self.bundle.parts is not None:
            # As the store holds them (G/√(1+M+K), unit rows); as query examples only each
            # block's direction counts (index/search/query_vector.py).
            vectors = self.bundle.parts.layout.to_store(vectors)
        return vectors


def _load_bundle(settings: Settings) -> Bundle:
    try:
        return Bundle(
            settings.bundle,
            device=settings.device,
            runtime=settings.runtime,
            trim_text=settings.trim_text,
            precision=settings.precision,
            parts=settings.parts,
        )
    except BundleError as err:
        raise StartupError(
            f"cannot load the bundle (TPS_BUNDLE={settings.bundle}, "
            f"TPS_RUNTIME={settings.runtime}): {err}"
        ) from None


def _expected_encoding(settings: Settings) -> Encoding:
    """How the configured runtime will encode queries, known before its weights load."""
    try:
        precision = runtime_precision(settings.runtime, settings.device, settings.precision)
    except BundleError as err:
        raise StartupError(
            f"TPS_RUNTIME={settings.runtime}, TPS_DEVICE={settings.device}, "
            f"TPS_PRECISION={settings.precision}: {err}"
        ) from None
    return Encoding(precision)


def _parts_layout(settings: Settings, meta: BundleMeta) -> PartsLayout:
    try:
        check_parts_runtime(settings.runtime)
        return layout_of(meta)
    except BundleError as err:
        raise StartupError(f"TPS_PARTS=true, TPS_BUNDLE={settings.bundle}: {err}") from None


def _parts_hint(settings: Settings, meta: BundleMeta) -> str:
    """A parts bundle serves either mode: say which setting serves the other one."""
    if "parts" not in meta.extra:
        return ""
    other = "false" if settings.parts else "true"
    mode = "global" if settings.parts else "parts"
    return f" (if the gallery was built in {mode} mode, set TPS_PARTS={other})"


def _gpu_options(settings: Settings) -> dict[str, object]:
    """Where a FAISS index's GPU copy goes: the encoder's GPU (0 when it encodes on the CPU),
    or sharded over all of them when TPS_INDEX_GPU_SHARDS is on."""
    device = resolve_device(settings.device)  # cuda:N names N; plain cuda is the current GPU
    if device.type != "cuda":
        index = 0
    else:
        index = device.index if device.index is not None else torch.cuda.current_device()
    return {"gpu_device": index, "gpu_shards": settings.index_gpu_shards}


def _store_options(settings: Settings) -> dict[str, object]:
    """Where a GPU copy goes, how the exact CPU search picks its engine, what Milvus searches
    wait for."""
    return {
        **_gpu_options(settings),
        "engine_policy": settings.engine_policy(),
        "search_consistency": settings.milvus_search_consistency.capitalize(),
    }


def _open_store(
    settings: Settings, fingerprint: str, dim: int, encoding: Encoding | None = None
) -> GalleryStore:
    where = settings.store_setting
    spec = settings.store_spec
    if settings.store_kind == "faiss" and not Path(spec).exists():
        if settings.create_store:
            return _create(settings, fingerprint, dim, encoding=encoding)
        raise StartupError(
            f"no index at {where}; build one with `python -m index build --bundle "
            f"{settings.bundle} ... --out {spec}` (or set TPS_CREATE_STORE=true for an empty one)"
        )
    try:
        return open_store(
            spec,
            fingerprint=fingerprint,
            dim=dim,
            use_gpu=settings.index_gpu,
            encoding=encoding,
            **_store_options(settings),
        )
    except EncodingMismatchError as err:
        raise StartupError(
            f"the gallery store ({where}) cannot be served as set up: {err}"
        ) from None
    except IndexMismatchError as err:
        raise _mismatch(settings, fingerprint, dim, err) from None
    except IndexStoreError as err:
        if settings.create_store and settings.store_kind != "faiss":
            return _create(settings, fingerprint, dim, opening_failed=err, encoding=encoding)
        raise StartupError(f"cannot open the gallery store ({where}): {err}") from None


def _create(
    settings: Settings,
    fingerprint: str,
    dim: int,
    opening_failed: Exception | None = None,
    encoding: Encoding | None = None,
) -> GalleryStore:
    """An empty store for the served bundle. Replicas starting together may race to create
    one Milvus collection: whoever loses opens the winner's (and its checks still apply)."""
    where = settings.store_setting
    try:
        store = create_store(
            settings.store_spec,
            fingerprint,
            dim,
            kind=settings.create_store_kind,
            use_gpu=settings.index_gpu,
            encoding=encoding,
            **_store_options(settings),
        )
    except IndexStoreError as err:
        if opening_failed is None:
            raise StartupError(f"cannot create the gallery store ({where}): {err}") from None
        try:
            return _open_created_by_another(settings, fingerprint, dim, encoding)
        except EncodingMismatchError as again:
            raise StartupError(f"the gallery store ({where}): {again}") from None
        except IndexMismatchError as again:
            raise _mismatch(settings, fingerprint, dim, again) from None
        except IndexStoreError as again:
            raise StartupError(
                f"cannot open the gallery store ({where}): {again}; nor create it: {err}"
            ) from None
    log.info("created an empty gallery store at %s", store.location)
    return store


def _open_created_by_another(
    settings: Settings, fingerprint: str, dim: int, encoding: Encoding | None
) -> GalleryStore:
    """Open the store another replica is creating. It may still be building its indexes,
    loading, or adding its claims collection: tried again for up to CREATION_WAIT_S."""
    deadline = time.monotonic() + CREATION_WAIT_S
    while True:
        try:
            return open_store(
                settings.store_spec,
                fingerprint,
                dim,
                settings.index_gpu,
                encoding=encoding,
                **_store_options(settings),
            )
        except (EncodingMismatchError, IndexMismatchError):
            raise
        except IndexStoreError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _mismatch(settings: Settings, fingerprint: str, dim: int, err: Exception) -> StartupError:
    return StartupError(
        f"the index ({settings.store_setting}) was not built by the model being served "
        f"(TPS_BUNDLE={settings.bundle}, fingerprint {fingerprint[:12]}, dim {dim}): {err}. "
        "Rebuild the index with this bundle, or serve the bundle that built it."
    )


def load_runtime(settings: Settings, metrics: Metrics) -> Runtime:
    """Load bundle and store, checking they belong together before the model is even built."""
    try:
        meta = read_meta(settings.bundle)
    except BundleError as err:
        raise StartupError(
            f"cannot read the bundle (TPS_BUNDLE={settings.bundle}): {err}"
        ) from None
    # Cheap check first: a mismatched store fails in milliseconds, not after loading weights.
    encoding = _expected_encoding(settings)
    dim = meta.embed_dim
    if settings.parts:  # TPS_PARTS: the parts layout, recorded in the store and checked
        layout = _parts_layout(settings, meta)
        encoding, dim = replace(encoding, layout=layout.name), layout.dim
    try:
        store = _open_store(settings, meta.fingerprint, dim, encoding)
    except StartupError as err:
        raise StartupError(f"{err}{_parts_hint(settings, meta)}") from None
    try:
        bundle = _load_bundle(settings)
    except BaseException:
        store.close()
        raise
    if bundle.fingerprint != meta.fingerprint:
        store.close()
        raise StartupError(f"the bundle at {settings.bundle} changed while it was being loaded")
    settings.images_path.mkdir(parents=True, exist_ok=True)
    images = ImageStore(settings.images_path)
    sweep_orphans(images, store, settings.sweep_grace_s)
    searcher = Searcher(bundle, store, metrics, settings)
    _log_engine(store)
    # Batches of similar caption length waste less of the trimmed text tower on padding.
    group_by_length(searcher.batcher, partial(_query_length, bundle))
    return Runtime(
        settings=settings,
        bundle=bundle,
        store=store,
        searcher=searcher,
        images=images,
        metrics=metrics,
    )


def _log_engine(store: GalleryStore) -> None:
    """Say at start-up which engine answers unfiltered searches, per batch size, and why."""
    found = store.stats().get("search_engine")
    if not isinstance(found, dict):
        return
    engines = ", ".join(f"{b.replace('_', ' ')} → {e}" for b, e in found["engine"].items())
    cpu = found.get("cpu") or {}
    where = f" on {cpu['model']} (native bf16: {cpu['native_bf16']})" if cpu else ""
    log.info("exact search: %s (%s%s)", engines, found.get("reason", "?"), where)


def _query_length(bundle: Bundle, job: object) -> int:
    """Token count of a queued query's text (0 for a query of example images only); the count
    the searcher already made when it has one."""
    counted = getattr(job, "tokens", None)
    if counted is not None:
        return counted
    text = getattr(job, "text", None)
    return bundle.token_count(text) if text else 0


async def warm_up(runtime: Runtime) -> None:
    """One query and one image encode, so the first user request pays no setup cost."""
    await runtime.searcher.warm_up()
    h, w = runtime.bundle.meta.image_size
    await asyncio.to_thread(runtime.encode_images_now, [torch.zeros(3, int(h), int(w))])
