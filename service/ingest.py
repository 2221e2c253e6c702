"""Adding uploaded images to the gallery: all files of a request, or none of them.

Order of work: check the form's fields (ids, camera, capture time, tags: they apply to every
file) → check every file (decode fully) → settle duplicates and id conflicts by content
hash, within the request and against the store, by the store's own rule (like the CLI's ingest,
which settles re-added files before its encoder runs) → encode only what is new → write its
files → one atomic store add. A duplicate is neither encoded nor written (and keeps the
metadata it has). A failure before the store add removes the files this request created, so a
failed upload leaves neither a file nor a store row behind; a process killed in between leaves
files no item names, which the orphan sweep removes (service/orphans.py). So does a store that
went away during the add (the rows may have landed or not; the client is told 503).
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from index.errors import StoreUnavailableError
from index.gallery_store import GalleryStore
from index.items import ItemMeta
from service.image_paths import image_path
from service.images import CheckedImage, ImageRejectedError, check_image
from service.metadata import MetadataError, check_camera_id, parse_time, split_tags
from service.runtime import Runtime
from service.schemas import IMAGE_ID_REGEX, PERSON_ID_REGEX

IMAGE_ID_PATTERN = re.compile(IMAGE_ID_REGEX)
PERSON_ID_PATTERN = re.compile(PERSON_ID_REGEX)
GENERATED_ID_CHARS = 24  # hex digits of the SHA-256: 96 bits, collision-free in practice


class UploadError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Upload:
    name: str  # only for messages: the client's file name is never used on disk
    data: bytes


DuplicateRow = tuple[str, str, str]  # (requested id, existing id, sha256)
Pending = tuple[CheckedImage, str]  # a checked upload and the image_id it is to get


@dataclass(frozen=True)
class IngestResult:
    added: list[ItemMeta]
    duplicates: list[DuplicateRow]


@dataclass(frozen=True)
class UploadFields:
    """The upload form's text fields, checked; all but image_id apply to every file."""

    image_id: str | None = None
    person_id: str | None = None
    camera_id: str | None = None
    captured_at: float | None = None  # seconds since the epoch, UTC
    tags: tuple[str, ...] = ()


def check_fields(
    count: int,
    image_id: str | None = None,
    person_id: str | None = None,
    camera_id: str | None = None,
    captured_at: str | None = None,
    tags: list[str] | None = None,
) -> UploadFields:
    """The form's values (stripped; blank is absent) as the store will keep them; the first bad
    one is a 422 that names its field."""
    validate_ids(count, image_id, person_id)
    try:
        return UploadFields(
            image_id=image_id,
            person_id=person_id,
            camera_id=None if camera_id is None else check_camera_id(camera_id),
            captured_at=None if captured_at is None else parse_time(captured_at),
            tags=split_tags(tags or []),
        )
    except MetadataError as err:
        raise UploadError(422, str(err)) from None


def validate_ids(count: int, image_id: str | None, person_id: str | None) -> None:
    if count == 0:
        raise UploadError(422, "no files: send one or more images in the form field 'files'")
    if image_id is not None:
        if count != 1:
            raise UploadError(422, f"image_id can only name a single file; {count} were sent")
        if not IMAGE_ID_PATTERN.fullmatch(image_id):
            raise UploadError(
                422,
                "image_id must be 1-128 letters, digits, '.', '_' or '-', starting with a "
                "letter or digit",
            )
    if person_id is not None and not PERSON_ID_PATTERN.fullmatch(person_id):
        raise UploadError(422, "person_id must be 1-128 printable characters")


def check_all(uploads: list[Upload], max_pixels: int, max_side: int) -> list[CheckedImage]:
    """Every file checked before anything is written; the first bad one rejects the request."""
    checked = []
    for upload in uploads:
        try:
            checked.append(check_image(upload.data, upload.name, max_pixels, max_side))
        except ImageRejectedError as err:
            raise UploadError(err.status, err.message) from None
    return checked


def _encode(runtime: Runtime, images: list[CheckedImage]) -> np.ndarray:
    return runtime.encode_images_now([runtime.bundle.preprocess(img.image) for img in images])


def _item(fields: UploadFields, image_id: str, path: str, sha256: str) -> ItemMeta:
    return ItemMeta(
        image_id,
        fields.person_id,
        path,
        sha256,
        time.time(),
        camera_id=fields.camera_id,
        captured_at=fields.captured_at,
        tags=fields.tags,
    )


def _write_and_add(
    runtime: Runtime,
    images: list[CheckedImage],
    vectors: np.ndarray,
    ids: list[str],
    fields: UploadFields,
) -> IngestResult:
    created: list[Path] = []
    with runtime.images.writing():
        try:
            items = []
            for img, image_id in zip(images, ids, strict=True):
                path, was_created = runtime.images.write(img.sha256, img.suffix, img.data)
                if was_created:
                    created.append(path)
                # Stored relative to the image folder: each host reads it from its own mount.
                items.append(_item(fields, image_id, runtime.images.relative(path), img.sha256))
            outcome = runtime.store.add(vectors, items)
        except StoreUnavailableError:
            # The server went away mid-request: the rows may have landed, so their files stay;
            # the orphan sweep removes them if no row names them (service/orphans.py).
            raise
        except BaseException:
            for path in created:
                runtime.images.delete(path)
            raise
        by_id = {item.image_id: item for item in items}
        duplicates = []
        for new_id, existing_id in outcome.duplicates.items():
            duplicates.append((new_id, existing_id, by_id[new_id].sha256))
            # The same bytes are already served from the existing item's own file.
            path = image_path(runtime.images, by_id[new_id].source_path)
            existing = runtime.store.get(existing_id)
            kept = None if existing is None else image_path(runtime.images, existing.source_path)
            if path in created and kept != path:
                runtime.images.delete(path)
    return IngestResult([by_id[i] for i in outcome.added], duplicates)


def _split_repeats(
    images: list[CheckedImage], image_id: str | None
) -> tuple[list[Pending], list[DuplicateRow]]:
    """Same bytes twice in one request: keep the first, report the rest as its duplicates."""
    first_by_sha: dict[str, str] = {}
    unique: list[Pending] = []
    repeats: list[DuplicateRow] = []
    for img in images:
        new_id = image_id or img.sha256[:GENERATED_ID_CHARS]
        if img.sha256 in first_by_sha:
            repeats.append((new_id, first_by_sha[img.sha256], img.sha256))
            continue
        first_by_sha[img.sha256] = new_id
        unique.append((img, new_id))
    return unique, repeats


def settle_known(
    store: GalleryStore, pending: list[Pending]
) -> tuple[list[Pending], list[DuplicateRow]]:
    """Settle what the store already holds before the encoder runs (hashing is far cheaper than
    encoding), by the rule the store's add applies (GalleryStore.plan_add): an id already stored
    with the same bytes is a duplicate of itself, with other bytes a conflict
    (:class:`ItemExistsError`, nothing added); bytes already stored under another id are a
    duplicate of that item. Returns (still to add, duplicates). Blocking (SQLite or Milvus)."""
    provisional = [ItemMeta(new_id, None, "", img.sha256, 0.0) for img, new_id in pending]
    keep, duplicates = store.plan_add(provisional)
    sha_of = {new_id: img.sha256 for img, new_id in pending}
    known = [(new_id, old_id, sha_of[new_id]) for new_id, old_id in duplicates.items()]
    return [pending[n] for n in keep], known


async def _add_new(runtime: Runtime, todo: list[Pending], fields: UploadFields) -> IngestResult:
    """Encode, then write the files and add them to the store under the write lock."""
    if not todo:
        return IngestResult([], [])
    images = [img for img, _ in todo]
    vectors = await asyncio.to_thread(_encode, runtime, images)
    async with runtime.write_lock:
        return await asyncio.to_thread(
            _write_and_add, runtime, images, vectors, [i for _, i in todo], fields
        )


async def ingest(runtime: Runtime, uploads: list[Upload], fields: UploadFields) -> IngestResult:
    """Add the files with the form's (already checked) fields; all or nothing."""
    s = runtime.settings
    images = await asyncio.to_thread(check_all, uploads, s.max_pixels, s.max_image_side)
    unique, repeats = _split_repeats(images, fields.image_id)
    todo, known = await asyncio.to_thread(settle_known, runtime.store, unique)
    # The store still dedupes at the add, for bytes another writer added in the meantime.
    result = await _add_new(runtime, todo, fields)
    order = {new_id: n for n, (_, new_id) in enumerate(unique)}
    duplicates = sorted(known + result.duplicates, key=lambda d: order[d[0]])
    # A repeat of a file that was itself a duplicate points at the item that really exists.
    existing = {new: old for new, old, _ in duplicates}
    repeats = [(new, existing.get(first, first), sha) for new, first, sha in repeats]
    return IngestResult(result.added, duplicates + repeats)


async def remove(runtime: Runtime, image_id: str) -> bool:
    async with runtime.write_lock:
        return await asyncio.to_thread(_remove_now, runtime, image_id)


def _remove_now(runtime: Runtime, image_id: str) -> bool:
    item = runtime.store.get(image_id)
    if item is None:
        return False
    with runtime.images.writing():
        if image_id not in runtime.store.remove([image_id]):
            return False
        # The store dedupes by content, so no other item shares this file. Files outside the
        # image folder (a data set the index was built from) are never deleted.
        runtime.images.delete(image_path(runtime.images, item.source_path))
    return True
