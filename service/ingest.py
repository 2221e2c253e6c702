"""Adding uploaded images to the gallery: all files of a request, or none of them.

Order of work: check every file (decode fully) → encode all → write the files → one atomic
index add. A failure before the index add removes the files this request created, so a failed
upload leaves neither a file nor an index row behind; a process killed in between leaves files
no item names, which the next start removes (see service/storage.py).
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from index.items import ItemMeta
from service.images import CheckedImage, ImageRejectedError, check_image
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


@dataclass(frozen=True)
class IngestResult:
    added: list[ItemMeta]
    duplicates: list[tuple[str, str, str]]  # (requested id, existing id, sha256)


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


def _write_and_add(
    runtime: Runtime,
    images: list[CheckedImage],
    vectors: np.ndarray,
    ids: list[str],
    person_id: str | None,
) -> IngestResult:
    created: list[Path] = []
    with runtime.images.writing():
        try:
            items = []
            for img, image_id in zip(images, ids, strict=True):
                path, was_created = runtime.images.write(img.sha256, img.suffix, img.data)
                if was_created:
                    created.append(path)
                items.append(ItemMeta(image_id, person_id, str(path), img.sha256, time.time()))
            outcome = runtime.index.add(vectors, items)
        except BaseException:
            for path in created:
                runtime.images.delete(path)
            raise
        by_id = {item.image_id: item for item in items}
        duplicates = []
        for new_id, existing_id in outcome.duplicates.items():
            duplicates.append((new_id, existing_id, by_id[new_id].sha256))
            # The same bytes are already served from the existing item's own file.
            path = Path(by_id[new_id].source_path)
            existing = runtime.index.get(existing_id)
            if path in created and (existing is None or Path(existing.source_path) != path):
                runtime.images.delete(path)
    return IngestResult([by_id[i] for i in outcome.added], duplicates)


async def ingest(
    runtime: Runtime, uploads: list[Upload], image_id: str | None, person_id: str | None
) -> IngestResult:
    s = runtime.settings
    validate_ids(len(uploads), image_id, person_id)
    images = await asyncio.to_thread(check_all, uploads, s.max_pixels, s.max_image_side)
    # Same bytes twice in one request: keep the first, report the rest as its duplicates.
    first_by_sha: dict[str, int] = {}
    unique, repeats = [], []
    for img in images:
        new_id = image_id or img.sha256[:GENERATED_ID_CHARS]
        if img.sha256 in first_by_sha:
            repeats.append((new_id, unique[first_by_sha[img.sha256]][1], img.sha256))
            continue
        first_by_sha[img.sha256] = len(unique)
        unique.append((img, new_id))
    vectors = await asyncio.to_thread(_encode, runtime, [img for img, _ in unique])
    async with runtime.write_lock:
        result = await asyncio.to_thread(
            _write_and_add,
            runtime,
            [img for img, _ in unique],
            vectors,
            [i for _, i in unique],
            person_id,
        )
    # A repeat of a file that was itself a duplicate points at the item that really exists.
    existing = {new: old for new, old, _ in result.duplicates}
    repeats = [(new, existing.get(first, first), sha) for new, first, sha in repeats]
    return IngestResult(result.added, result.duplicates + repeats)


async def remove(runtime: Runtime, image_id: str) -> bool:
    async with runtime.write_lock:
        return await asyncio.to_thread(_remove_now, runtime, image_id)


def _remove_now(runtime: Runtime, image_id: str) -> bool:
    item = runtime.index.get(image_id)
    if item is None:
        return False
    with runtime.images.writing():
        if image_id not in runtime.index.remove([image_id]):
            return False
        # The index dedupes by content, so no other item shares this file. Files outside the
        # image folder (a data set the index was built from) are never deleted.
        runtime.images.delete(Path(item.source_path))
    return True
