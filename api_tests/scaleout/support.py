"""Shared by the scale-out tests: uploads with metadata, and the gallery read straight from
the Milvus server (a client of its own, never through the replicas being tested)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from api_tests.reliability.support import noise_image, sha256
from index.gallery_store import GalleryStore
from index.stores import open_store
from support.server import API_KEY

KEY = {"X-API-Key": API_KEY}


def upload(
    http: httpx.Client, seeds: list[int], **fields: str
) -> tuple[httpx.Response, dict[str, str]]:
    """Upload one noise image per seed; returns the reply and image_id -> sha256 sent."""
    images = [noise_image(seed) for seed in seeds]
    files = [
        ("files", (f"{seed}.jpg", data, "image/jpeg"))
        for seed, data in zip(seeds, images, strict=True)
    ]
    reply = http.post("/v1/gallery", files=files, data=fields, headers=KEY)
    return reply, {sha256(data)[:24]: sha256(data) for data in images}


@contextmanager
def direct(store: str) -> Iterator[GalleryStore]:
    """The gallery as the Milvus server holds it."""
    gallery = open_store(store)
    try:
        yield gallery
    finally:
        gallery.close()


def stored_files(root) -> dict[str, object]:
    """sha256 -> path of every image file in the shared folder (partial writes included)."""
    return {p.name.split(".")[0]: p for p in root.rglob("*") if p.is_file()}
