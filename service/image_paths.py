"""Where a gallery item's image file is on this host. A stored path is absolute (an index built
from a data set, an upload stored before paths were relative), or relative to the image folder
(an upload, a gallery migrated with ``--images-root``): then it is read from this host's own
folder (TPS_IMAGE_DIR), wherever each host mounts it."""

from __future__ import annotations

from pathlib import Path

from index.source_files import source_file
from service.storage import ImageStore


def image_path(images: ImageStore, source_path: str) -> Path:
    """The file of ``source_path`` here; a relative path never leaves the image folder (one
    that would names a file that cannot exist)."""
    return source_file(source_path, images.root)
