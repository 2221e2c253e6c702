"""The stable import path of the gallery index: ``from index.store import GalleryIndex``.

The index used to live in this one module; it is now split by job in ``index/faiss/``
(``layout``, ``publish``, ``loading``, ``commit``, ``gpu_copies``, ``exclusive``, ``gallery``;
``inputs`` at the top, shared with the Milvus store). Callers across
the repository import from here, so this module re-exports their names and keeps ``rebuild``,
which imports the encoder (torch) only when called: searching must not need it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from index.errors import IndexCorruptError, IndexMismatchError, IndexStoreError, ItemExistsError
from index.faiss.gallery import GalleryIndex
from index.faiss.layout import FORMAT, INFO_FILE, LOCK_FILE, VERSION, vectors_file
from index.faiss.publish import check_new_location, staging
from index.items import AddResult, Hit, ItemMeta

if TYPE_CHECKING:
    from bundle.encoders import Bundle

__all__ = [
    "FORMAT",
    "INFO_FILE",
    "LOCK_FILE",
    "VERSION",
    "AddResult",
    "GalleryIndex",
    "Hit",
    "IndexCorruptError",
    "IndexMismatchError",
    "IndexStoreError",
    "ItemExistsError",
    "ItemMeta",
    "check_new_location",
    "rebuild",
    "staging",
    "vectors_file",
]


def rebuild(
    path: Path,
    bundle: Bundle,
    out: Path | None = None,
    *,
    kind: str | None = None,
    batch_size: int = 64,
    workers: int = 2,
    progress: bool = True,
    drop_unreadable: bool = False,
    use_gpu: str = "auto",
    images_root: Path | None = None,
) -> GalleryIndex:
    """Re-encode every manifest source path with ``bundle`` and swap the result in atomically.

    In place (``out=None``) the new vectors, fingerprint and dimension are one new generation:
    readers see the old index or the new one. With ``out`` the original is left untouched.
    Items keep their ids. Unreadable sources fail the rebuild unless ``drop_unreadable``.
    """
    from index.faiss.rebuild import rebuild_index  # encoding needs torch; searching does not

    return rebuild_index(
        Path(path),
        bundle,
        None if out is None else Path(out),
        kind=kind,
        batch_size=batch_size,
        workers=workers,
        progress=progress,
        drop_unreadable=drop_unreadable,
        use_gpu=use_gpu,
        images_root=images_root,
    )
