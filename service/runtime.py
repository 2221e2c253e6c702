"""What a running service holds: the bundle, the index, the searcher, the image files.

Built by the app's lifespan and kept on ``app.state.runtime``; loading and warming happen here so
the routes only ever see a ready runtime. Text queries go through the runtime's one
:class:`~service.query.Searcher`, which owns their whole path (service/query.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from bundle.encoders import Bundle
from bundle.format import BundleError, read_meta
from index.errors import IndexMismatchError, IndexStoreError
from index.store import GalleryIndex
from service.metrics import Metrics
from service.query import Searcher
from service.settings import Settings
from service.storage import ImageStore
from service.thumbnails import ThumbnailCache

log = logging.getLogger(__name__)


class StartupError(Exception):
    """The service cannot start with this configuration; the message says what to change."""


@dataclass
class Runtime:
    settings: Settings
    bundle: Bundle
    index: GalleryIndex
    searcher: Searcher  # text queries: cross-request batches of encode + search, and widening
    images: ImageStore
    metrics: Metrics
    thumbnails: ThumbnailCache = field(default_factory=ThumbnailCache)
    # One writer at a time: uploads and deletes each hold it across files + index.
    write_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def fingerprint(self) -> str:
        return self.bundle.fingerprint

    def close_files(self) -> None:
        """Release the index and the image folder. Blocking (closing SQLite may checkpoint its
        log to disk): call it from a worker thread, never on the event loop."""
        self.index.close()
        self.images.close()

    def encode_images_now(self, tensors: list[torch.Tensor], batch: int = 32) -> np.ndarray:
        started = time.perf_counter()
        parts = [
            self.bundle.encode_images(torch.stack(tensors[i : i + batch]))
            for i in range(0, len(tensors), batch)
        ]
        self.metrics.encode.labels(kind="image").observe(time.perf_counter() - started)
        return np.concatenate(parts, axis=0) if parts else np.zeros((0, self.bundle.dim), "f4")


def _load_bundle(settings: Settings) -> Bundle:
    try:
        return Bundle(settings.bundle, device=settings.device)
    except BundleError as err:
        raise StartupError(
            f"cannot load the bundle (TPS_BUNDLE={settings.bundle}): {err}"
        ) from None


def _open_index(settings: Settings, fingerprint: str, dim: int) -> GalleryIndex:
    where = f"TPS_INDEX_DIR={settings.index_dir}"
    if not Path(settings.index_dir).exists():
        raise StartupError(
            f"no index at {where}; build one with `python -m index build --bundle "
            f"{settings.bundle} ... --out {settings.index_dir}`"
        )
    try:
        return GalleryIndex.open(
            settings.index_dir,
            fingerprint=fingerprint,
            dim=dim,
            use_gpu=settings.index_gpu,
        )
    except IndexMismatchError as err:
        raise StartupError(
            f"the index ({where}) was not built by the model being served "
            f"(TPS_BUNDLE={settings.bundle}, fingerprint {fingerprint[:12]}, dim {dim}): {err}. "
            "Rebuild the index with this bundle, or serve the bundle that built it."
        ) from None
    except IndexStoreError as err:
        raise StartupError(f"cannot open the index ({where}): {err}") from None


def load_runtime(settings: Settings, metrics: Metrics) -> Runtime:
    """Load bundle and index, checking they belong together before the model is even built."""
    try:
        meta = read_meta(settings.bundle)
    except BundleError as err:
        raise StartupError(
            f"cannot read the bundle (TPS_BUNDLE={settings.bundle}): {err}"
        ) from None
    # Cheap check first: a mismatched index fails in milliseconds, not after loading weights.
    index = _open_index(settings, meta.fingerprint, meta.embed_dim)
    try:
        bundle = _load_bundle(settings)
    except BaseException:
        index.close()
        raise
    if bundle.fingerprint != meta.fingerprint:
        index.close()
        raise StartupError(f"the bundle at {settings.bundle} changed while it was being loaded")
    settings.images_path.mkdir(parents=True, exist_ok=True)
    images = ImageStore(settings.images_path)
    _sweep_orphans(images, index)
    return Runtime(
        settings=settings,
        bundle=bundle,
        index=index,
        searcher=Searcher(bundle, index, metrics, settings),
        images=images,
        metrics=metrics,
    )


def _sweep_orphans(images: ImageStore, index: GalleryIndex) -> None:
    """Remove files that writes killed mid-way left behind (never visible, but never freed)."""
    try:
        removed = images.sweep(lambda: (item.sha256 for item in index.items()))
    except (OSError, IndexStoreError) as err:
        log.warning("cannot check %s for files of interrupted writes: %s", images.root, err)
        return
    if removed is None:
        log.info("another process is writing to %s: left it as it is", images.root)
    elif removed:
        log.warning("removed %d file(s) of interrupted writes from %s", len(removed), images.root)


async def warm_up(runtime: Runtime) -> None:
    """One query and one image encode, so the first user request pays no setup cost."""
    await runtime.searcher.warm_up()
    h, w = runtime.bundle.meta.image_size
    await asyncio.to_thread(runtime.encode_images_now, [torch.zeros(3, int(h), int(w))])
