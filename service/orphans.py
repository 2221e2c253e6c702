"""Orphan files: image files no gallery item names, left by uploads killed (or cut off from the
store) between writing their file and committing their row. Never served, but never freed
either, so they are swept at start-up and then every ``TPS_ORPHAN_SWEEP_INTERVAL_S`` while the
service runs: a replica that lives for weeks beside others that crash still frees their files.
The sweep itself, and why it is safe beside other writers, is :meth:`ImageStore.sweep`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from functools import partial

from index.gallery_store import GalleryStore
from index.items import ItemMeta
from service.storage import ImageStore

log = logging.getLogger("service.runtime")


def sweep_orphans(images: ImageStore, store: GalleryStore, grace_s: float) -> list | None:
    """Remove orphans older than ``grace_s``. Best effort: a store that cannot answer now leaves
    them for the next sweep. Returns the removed paths (None: skipped or failed)."""
    try:
        removed = images.sweep(partial(named_sha256, store), grace_s)
    except Exception as err:  # OSError, IndexStoreError, or a Milvus client's own
        log.warning("cannot check %s for files of interrupted writes: %s", images.root, err)
        return None
    if removed is None:
        log.info("another process is writing to %s: left it as it is", images.root)
    elif removed:
        log.warning("removed %d file(s) of interrupted writes from %s", len(removed), images.root)
    return removed


def named_sha256(store: GalleryStore, shas: Sequence[str]) -> set[str]:
    """Which of these SHA-256s some gallery item holds, without reading the whole gallery: the
    store's own duplicate check (plan_add) answers it for probes under ids no item has."""
    probes = [ItemMeta(f".sweep-{sha}", None, "", sha, 0.0) for sha in shas]
    _, duplicates = store.plan_add(probes)
    return {probe.sha256 for probe in probes if probe.image_id in duplicates}


async def sweep_loop(get_runtime, every_s: float) -> None:
    """Sweep every ``every_s`` seconds while a runtime is served (the start-up sweep ran at
    load). ``get_runtime``: the runtime now, None once the service stops."""
    while True:
        await asyncio.sleep(every_s)
        runtime = get_runtime()
        if runtime is None:
            return
        await asyncio.to_thread(
            sweep_orphans, runtime.images, runtime.store, runtime.settings.sweep_grace_s
        )
