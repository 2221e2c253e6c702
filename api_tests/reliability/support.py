"""Shared by the reliability tests: a small gallery, images that differ by seed, and the served
index's state read straight from its files (SQLite manifest, FAISS via the index's own open,
the image store on disk), never through the server being tested."""

from __future__ import annotations

import hashlib
import io
import os
import re
import sqlite3
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from support.server import ServiceProcess

_STORED = re.compile(r"^([0-9a-f]{64})\.[a-z]+$")


def env_int(name: str, default: int) -> int:
    """Sizes that `make fuzz` and `make crash-test` raise over the CI defaults."""
    return int(os.environ.get(name, default))


def index_dir_of(service: ServiceProcess) -> Path:
    return Path(service.env["TPS_INDEX_DIR"])


def build_small_index(bundle_dir: Path, data_root: Path, out: Path, split: str = "test") -> Path:
    """One split of the synthetic set encoded by ``bundle_dir`` (what `python -m index build`
    does, in-process to save a second torch start-up)."""
    from bundle.encoders import Bundle
    from index.ingest.add import ingest
    from index.ingest.sources import from_dataset
    from index.store import GalleryIndex

    bundle = Bundle(bundle_dir, device="cpu")
    entries = from_dataset("cuhk-pedes", data_root, split)
    with GalleryIndex.create(out, bundle.fingerprint, bundle.dim, "flat", "never") as index:
        ingest(index, bundle, entries, workers=0, progress=False)
    return out


def noise_image(seed: int, fmt: str = "JPEG", size: tuple[int, int] = (48, 96)) -> bytes:
    """A small image whose bytes (and so SHA-256 and image id) differ for every seed."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(out, fmt)
    return out.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest(index_dir: Path) -> dict[str, str]:
    """image_id -> sha256 of every committed item, read from the SQLite manifest itself."""
    conn = sqlite3.connect(f"file:{index_dir / 'manifest.sqlite'}?mode=ro", uri=True)
    try:
        return dict(conn.execute("SELECT image_id, sha256 FROM items").fetchall())
    finally:
        conn.close()


def faiss_count(index_dir: Path) -> int:
    """Vectors in the committed FAISS file; opening checks it against the manifest, row by row."""
    from index.store import GalleryIndex

    with GalleryIndex.open(index_dir, use_gpu="never") as index:
        return int(index.stats()["count"])


def store_files(index_dir: Path) -> set[Path]:
    root = index_dir / "images"
    return {p for p in root.rglob("*") if p.is_file()} if root.is_dir() else set()


def orphans(index_dir: Path) -> set[Path]:
    """Files in the image store that no committed item names (partial writes included)."""
    named = set(manifest(index_dir).values())
    found = set()
    for path in store_files(index_dir):
        match = _STORED.match(path.name)
        if match is None or match.group(1) not in named:
            found.add(path)
    return found


def served_count(http: httpx.Client) -> int:
    return int(http.get("/v1/info").json()["index"]["count"])


def rss_kib(pid: int) -> int:
    """Resident set size of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmHWM for process {pid}")


def requests_by_status(metrics_text: str) -> dict[str, int]:
    """Total HTTP requests per status code, from the server's own Prometheus counter."""
    totals: dict[str, int] = {}
    pattern = re.compile(r'^tps_http_requests_total\{[^}]*status="(\d+)"\} (\S+)$', re.M)
    for status, count in pattern.findall(metrics_text):
        totals[status] = totals.get(status, 0) + int(float(count))  # "3.0" from prometheus_client
    return totals
