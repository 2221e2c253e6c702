"""Reading an existing index: is it one this code reads, built for the caller's bundle, and do
its manifest rows and faiss file belong together?

A reader loads the generation the manifest names inside one read transaction; a file that has
vanished by then means a newer commit deleted it, so it reads again. A file missing while the
manifest still names it, or one that disagrees with the manifest, is damage, and is reported as
:class:`IndexCorruptError` rather than searched.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from index.encoding import Encoding, check
from index.errors import IndexCorruptError, IndexMismatchError, IndexStoreError
from index.faiss import backend as faiss_backend
from index.faiss.layout import FORMAT, VERSION, vectors_file
from index.faiss.manifest import Manifest
from index.faiss.snapshot import Labels

_LOAD_ATTEMPTS = 20


@dataclass(frozen=True)
class Expected:
    """What the caller's bundle makes; ``None`` accepts whatever the index was built with."""

    fingerprint: str | None = None
    dim: int | None = None
    encoding: Encoding | None = None  # how the caller encodes queries


@dataclass(frozen=True)
class Committed:
    """A committed generation as read from disk, checked but not yet made searchable."""

    meta: dict[str, Any]
    generation: int
    master: faiss.Index
    labels: Labels


def check_meta(folder: Path, meta: dict[str, str], expected: Expected) -> None:
    """Refuse other formats, other versions, and indexes built by another bundle or encoded
    otherwise than the caller encodes (see index/encoding.py)."""
    if meta.get("format") != FORMAT:
        raise IndexCorruptError(f"{folder}: not a gallery index (format {meta.get('format')!r})")
    if meta.get("version") != str(VERSION):
        raise IndexStoreError(
            f"{folder}: index format version {meta.get('version')}, this code reads "
            f"version {VERSION}; rebuild the index"
        )
    if expected.fingerprint is not None and meta["fingerprint"] != expected.fingerprint:
        raise IndexMismatchError(
            f"{folder} was built with bundle {meta['fingerprint'][:12]}, not "
            f"{expected.fingerprint[:12]}: search it with that bundle, or re-encode the gallery "
            "with `python -m index rebuild`"
        )
    # The encoding before the width: it names the setting to change (see index/milvus/store.py).
    check(Encoding.from_meta(meta), expected.encoding, str(folder))
    if expected.dim is not None and int(meta["dim"]) != expected.dim:
        raise IndexMismatchError(
            f"{folder} holds {meta['dim']}-dimensional vectors, the bundle makes {expected.dim}"
        )


def load_committed(folder: Path, manifest: Manifest, expected: Expected) -> Committed:
    """Read the committed generation: manifest rows and faiss file that belong together."""
    for _ in range(_LOAD_ATTEMPTS):
        with manifest.snapshot():
            meta = manifest.meta()
            generation = int(meta["generation"])
            name = vectors_file(generation)
            try:
                handle = open(folder / name, "rb")  # noqa: SIM115 - closed below
            except FileNotFoundError:
                handle = None
            else:
                labels = manifest.labels()
        if handle is None:
            if manifest.generation() == generation:
                raise IndexCorruptError(
                    f"{folder / name} is missing but the manifest's committed generation "
                    f"{generation} needs it; restore it from a backup or rebuild the index"
                )
            continue  # a newer commit deleted it: read the manifest again
        with handle:
            check_meta(folder, meta, expected)
            size, recorded = os.fstat(handle.fileno()).st_size, int(meta.get("faiss_bytes", -1))
            if size != recorded:
                raise IndexCorruptError(
                    f"{folder / name} is {size} bytes but the manifest recorded "
                    f"{recorded}: the file is truncated or was replaced"
                )
            master = faiss_backend.read(handle, name, meta["kind"], int(meta["dim"]))
        check_consistent(master, labels, folder / name)
        return Committed(meta, generation, master, labels)
    raise IndexStoreError(f"{folder} kept changing while it was being read; retry")


def check_consistent(master: faiss.Index, labels: Labels, path: Path) -> None:
    """The faiss file holds exactly the ids the manifest lists."""
    ids = np.sort(faiss_backend.ids_of(master))
    expected = np.sort(np.fromiter(labels.keys(), dtype=np.int64, count=len(labels)))
    if len(ids) != master.ntotal or not np.array_equal(ids, expected):
        raise IndexCorruptError(
            f"{path} holds {master.ntotal} vectors but the manifest lists {len(labels)} items "
            "with other ids: the files do not belong together; rebuild the index"
        )
