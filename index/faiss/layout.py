"""What an index folder holds, by name, and how it is kept tidy between commits.

    manifest.sqlite      items (faiss id ↔ image_id, person_id, source path, sha256, added time)
                         and meta (format, version, fingerprint, dim, kind, generation, ...)
    vectors.<gen>.faiss  the CPU master of the committed generation
    index.json           a readable summary; the manifest wins when they disagree
    .lock                held (flock) by the one process writing at a time

Only the generation the manifest names is live: faiss files of other generations are either
superseded or were written by a writer that died before its commit point, and temp files are
half-written replacements. Both are deleted, but only by the holder of the write lock, since
another writer's next generation looks exactly like a stale one.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from bundle.fsio import fsync_dir, write_json_atomic

log = logging.getLogger(__name__)

FORMAT = "tps-gallery-index"
VERSION = 1
INFO_FILE = "index.json"
LOCK_FILE = ".lock"
_VECTORS = re.compile(r"^vectors\.(\d+)\.faiss$")
_TEMP = re.compile(r"^\.(vectors\.\d+\.faiss|index\.json)\..*\.tmp$")


def vectors_file(generation: int) -> str:
    return f"vectors.{generation}.faiss"


def info(*, fingerprint: str, dim: int, kind: str, count: int, generation: int) -> dict[str, Any]:
    """The content of ``index.json`` for one committed generation."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "fingerprint": str(fingerprint),
        "dim": int(dim),
        "kind": str(kind),
        "count": int(count),
        "generation": int(generation),
        "vectors_file": vectors_file(int(generation)),
    }


def write_info_if_stale(folder: Path, content: dict[str, Any]) -> None:
    """Rewrite ``index.json`` unless it already says ``content``; never fails a commit."""
    path = folder / INFO_FILE
    try:
        if path.is_file() and _read_json(path) == content:
            return
        write_json_atomic(path, content)
    except OSError as err:
        # Informational only: the commit already happened, so this must not fail the write.
        log.warning("could not update %s: %s", path, err)


def sweep(folder: Path, generation: int) -> None:
    """Delete faiss files of other generations and temp files. Only under the write lock."""
    removed = False
    for entry in folder.iterdir():
        if _is_stale(entry.name, generation):
            entry.unlink(missing_ok=True)
            removed = True
    if removed:
        fsync_dir(folder)


def _is_stale(name: str, generation: int) -> bool:
    match = _VECTORS.match(name)
    if match is not None:
        return int(match.group(1)) != generation
    return bool(_TEMP.match(name))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except ValueError:
        return None
