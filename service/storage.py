"""Uploaded image files on disk, named by their SHA-256 (never by anything a client sent)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


class ImageStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()

    def path_for(self, sha256: str, suffix: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a SHA-256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / f"{sha256}{suffix}"

    def write(self, sha256: str, suffix: str, data: bytes) -> tuple[Path, bool]:
        """Write atomically and durably; returns (path, created). Same bytes, same name: an
        existing file is left as it is."""
        path = self.path_for(sha256, suffix)
        if path.is_file():
            return path, False
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)
        return path, True

    def owns(self, path: Path) -> bool:
        """Whether ``path`` is a file this store wrote (files elsewhere are never deleted)."""
        try:
            return Path(path).resolve().is_relative_to(self.root)
        except OSError:
            return False

    def delete(self, path: Path) -> bool:
        if not self.owns(path):
            return False
        try:
            Path(path).unlink()
        except FileNotFoundError:
            return False
        return True


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
