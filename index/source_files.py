"""Where a gallery item's image file is read from when it is encoded again (rebuild).

A stored path is absolute (an index built from a data set on this host) or relative to the
image folder (an upload through the service, a gallery migrated with ``--images-root``): such a
path means nothing without the folder, which each host may mount in its own place."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from index.errors import IndexStoreError
from index.items import ItemMeta


def source_files(items: Sequence[ItemMeta], images_root: Path | None) -> list[Path]:
    """Each item's file: absolute paths as stored, relative ones under ``images_root``."""
    relative = [item.source_path for item in items if not Path(item.source_path).is_absolute()]
    if relative and images_root is None:
        raise IndexStoreError(
            f"{len(relative)} item(s) store image paths relative to the image folder (e.g. "
            f"{relative[0]!r}): pass --images-root, the folder the service serves them from "
            "(its TPS_IMAGE_DIR)"
        )
    root = None if images_root is None else Path(images_root).resolve()
    return [source_file(item.source_path, root) for item in items]  # type: ignore[arg-type]


def source_file(source_path: str, images_root: Path) -> Path:
    """One stored path as a file: absolute as it is; relative under ``images_root`` (resolved),
    never outside it (such a path names a file that cannot exist)."""
    path = Path(source_path)
    if path.is_absolute():
        return path
    found = (images_root / path).resolve()
    return found if found.is_relative_to(images_root) else images_root / ".outside"
