"""Durable file replacement: temp file in the same folder, fsync, rename, fsync the folder."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in ``path`` survive a power cut."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_sibling(path: Path) -> Path:
    """A fresh empty file next to ``path`` (same filesystem, so the final rename is atomic).

    Unlike ``mkstemp`` (mode 0600) it gets the usual umask-based mode, so a service running as
    another user can still read the index.
    """
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"no free temporary name next to {path}")


def temp_dir(parent: Path, prefix: str) -> Path:
    """A fresh folder in ``parent`` with the usual umask-based mode (``mkdtemp`` uses 0700)."""
    for _ in range(100):
        tmp = parent / f"{prefix}{secrets.token_hex(6)}"
        try:
            tmp.mkdir(mode=0o777)
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"no free temporary folder name in {parent}")


def replace_atomic(path: Path, write: Callable[[Path], None]) -> int:
    """Call ``write(tmp)``, then move ``tmp`` over ``path`` durably; return the final size."""
    tmp = temp_sibling(path)
    try:
        write(tmp)
        fsync_file(tmp)
        size = tmp.stat().st_size
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return size


def write_json_atomic(path: Path, obj: Any) -> None:
    text = json.dumps(obj, indent=2, sort_keys=True) + "\n"
    replace_atomic(path, lambda tmp: tmp.write_text(text))
