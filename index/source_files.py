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
    return [
        path if path.is_absolute() else _inside(root, path)  # type: ignore[arg-type]
        for path in (Path(item.source_path) for item in items)
    ]


def _inside(root: Path, path: Path) -> Path:
    """``root / path``, never outside ``root`` (such a path names a file that cannot exist)."""
    found = (root / path).resolve()
    return found if found.is_relative_to(root) else root / ".outside"
