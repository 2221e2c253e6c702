"""The gallery: add images (multipart upload), read their metadata and pixels, delete them.

The reads are plain ``def`` routes: FastAPI runs them in its threadpool, so their store look-ups
(SQLite, or a Milvus query) and file reads never block the event loop. The writes are ``async``
for the multipart parsing and hand every store and file call to a worker thread
(service/ingest.py).
"""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from fastapi.responses import FileResponse, JSONResponse
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from index.errors import ItemExistsError
from index.items import ItemMeta
from index.metadata_fields import normalise_id
from service.access import audit_events
from service.access.retention import is_expired, past_retention, read_cutoff
from service.access.security import require_read_key, require_write_key
from service.deps import RuntimeDep
from service.image_paths import image_path
from service.images import IMAGE_MEDIA_TYPES, ImageRejectedError, media_type, thumbnail
from service.ingest import Upload, UploadError, UploadFields, check_fields, ingest, remove
from service.metadata import as_utc
from service.runtime import Runtime
from service.schemas import (
    UPLOAD_REQUEST_BODY,
    Duplicate,
    ErrorResponse,
    GalleryItem,
    GalleryItemDetail,
    UploadResponse,
)

router = APIRouter(prefix="/v1/gallery", tags=["gallery"])

UPLOAD_DESCRIPTION = """\
Add one or more images to the gallery in a `multipart/form-data` body: files in the field
`files`, optionally `person_id`, `camera_id`, `captured_at` (ISO 8601; no zone means UTC) and
`tags` (comma-separated, or the field repeated), which apply to every file, and `image_id`
(only with one file; by default the id is derived from the file's SHA-256). Searches can filter
on camera, capture time, person and tags.

**All or nothing:** every file is decoded and checked before anything is written. If any file
is rejected (unsupported or corrupt image, too many pixels, body too large), the whole request
fails and neither files nor index entries are added. When the reply arrives, the images are
stored on disk and searchable.

Files whose exact bytes are already in the gallery are not added again (and keep their own
metadata); they are listed under `duplicates`. The status is 201 when anything was added,
200 when every file was a duplicate. Needs a writer key in the `X-API-Key` header.
"""

NOT_READY = {503: {"model": ErrorResponse, "description": "Model and index are still loading."}}

UPLOAD_ERRORS = {
    400: {"model": ErrorResponse, "description": "The multipart body cannot be parsed."},
    401: {"model": ErrorResponse, "description": "Missing, unknown or revoked API key."},
    403: {"model": ErrorResponse, "description": "The key's role may not write, or no keys exist."},
    409: {"model": ErrorResponse, "description": "image_id is taken by a different image."},
    413: {
        "model": ErrorResponse,
        "description": "Body, file count, form field or pixel count too large.",
    },
    415: {"model": ErrorResponse, "description": "Not a JPEG, PNG, WebP or BMP image."},
    422: {"model": ErrorResponse, "description": "Corrupt image, or bad form fields."},
} | NOT_READY


def _form_text(form, name: str) -> str | None:
    value = form.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise HTTPException(422, f"the form field '{name}' must be text, not a file")
    return normalise_id(value) or None  # stored as filters look for it


FORM_FIELDS = ("files", "person_id", "image_id", "camera_id", "captured_at", "tags")


async def _read_uploads(request: Request, runtime: Runtime) -> tuple[list[Upload], UploadFields]:
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            "send the images as multipart/form-data, in the field 'files'",
        )
    form = await _parse_form(request, runtime.settings.max_files)
    try:
        extra = sorted({k for k in form if k not in FORM_FIELDS})
        if extra:
            raise HTTPException(422, f"unknown form field(s): {', '.join(extra)}")
        uploads = []
        for part in form.getlist("files"):
            if not isinstance(part, UploadFile):
                raise HTTPException(422, "the field 'files' must hold files, not text")
            name = (part.filename or "upload")[:100]
            uploads.append(Upload(name=name, data=await part.read()))
        tags = form.getlist("tags")
        if not all(isinstance(t, str) for t in tags):
            raise HTTPException(422, "the form field 'tags' must be text, not a file")
        try:
            fields = check_fields(
                len(uploads),
                image_id=_form_text(form, "image_id"),
                person_id=_form_text(form, "person_id"),
                camera_id=_form_text(form, "camera_id"),
                captured_at=_form_text(form, "captured_at"),
                tags=[str(t) for t in tags],
            )
        except UploadError as err:
            runtime.metrics.rejected.labels(reason=f"upload_{err.status}").inc()
            raise HTTPException(err.status, err.message) from None
        if (why := past_retention(fields.captured_at, runtime.settings)) is not None:
            runtime.metrics.rejected.labels(reason="upload_422").inc()
            raise HTTPException(422, why)
        return uploads, fields
    finally:
        await form.close()


MAX_FORM_FIELDS = 8  # text fields: five names mean something, tags may repeat
MAX_FIELD_BYTES = 4096


async def _parse_form(request: Request, max_files: int) -> FormData:
    """Parse the multipart body; the body limit middleware cuts the stream at max_upload_bytes
    while this runs."""
    try:
        return await request.form(
            max_files=max_files, max_fields=MAX_FORM_FIELDS, max_part_size=MAX_FIELD_BYTES
        )
    except StarletteHTTPException as err:
        if err.status_code != 400:
            raise
        # Starlette answers 400 for every multipart problem; the limits among them are answered
        # like the other limits (413 for sizes, 422 for fields), and 400 is left for a body that
        # cannot be parsed at all.
        detail = str(err.detail)
        if detail.startswith("Too many files"):
            raise HTTPException(413, f"at most {max_files} files per request") from None
        if "exceeded maximum size" in detail:
            raise HTTPException(
                413, f"a form field is over the limit of {MAX_FIELD_BYTES} bytes"
            ) from None
        if detail.startswith("Too many fields"):
            raise HTTPException(422, f"at most {MAX_FORM_FIELDS} text form fields") from None
        raise HTTPException(400, f"the multipart body cannot be parsed: {detail}") from None


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=UploadResponse,
    summary="Add images to the gallery (all or nothing)",
    description=UPLOAD_DESCRIPTION,
    responses={200: {"model": UploadResponse, "description": "Every file was a duplicate."}}
    | UPLOAD_ERRORS,
    openapi_extra={"requestBody": UPLOAD_REQUEST_BODY},
    dependencies=[Depends(require_write_key)],
)
async def upload(request: Request, runtime: RuntimeDep) -> JSONResponse:
    uploads, fields = await _read_uploads(request, runtime)
    try:
        result = await ingest(runtime, uploads, fields)
    except UploadError as err:
        runtime.metrics.rejected.labels(reason=f"upload_{err.status}").inc()
        raise HTTPException(err.status, err.message) from None
    except ItemExistsError as err:
        raise HTTPException(status.HTTP_409_CONFLICT, str(err)) from None
    body = UploadResponse(
        added=[_gallery_item(i) for i in result.added],
        duplicates=[
            Duplicate(image_id=n, existing_image_id=e, sha256=h) for n, e, h in result.duplicates
        ],
    )
    code = status.HTTP_201_CREATED if result.added else status.HTTP_200_OK
    details = {
        "added": [i.image_id for i in result.added],
        "duplicates": [n for n, _, _ in result.duplicates],
    }
    await audit_events.record(request, "upload", details)
    return JSONResponse(body.model_dump(mode="json"), status_code=code)


def _gallery_item(item: ItemMeta) -> GalleryItem:
    return GalleryItem(
        image_id=item.image_id,
        person_id=item.person_id,
        sha256=item.sha256,
        camera_id=item.camera_id,
        captured_at=as_utc(item.captured_at),
        tags=list(item.tags),
    )


# No gallery id holds a control character (uploads: IMAGE_ID_REGEX; the index CLI: file paths),
# and a store's query language may have no way to spell one (milvus-lite refuses the escape), so
# such an id is answered 404 without a look-up.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def could_exist(image_id: str) -> bool:
    return _CONTROL.search(image_id) is None


def _item_or_404(runtime: Runtime, image_id: str) -> ItemMeta:
    """The stored item, unless it is missing or past the retention period (not yet swept)."""
    item = runtime.store.get(image_id) if could_exist(image_id) else None
    if item is None or is_expired(item, read_cutoff(runtime.settings)):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no gallery image with id {image_id!r}")
    return item


def _image_url(request: Request, image_id: str) -> str:
    return f"{request.scope.get('root_path', '')}/v1/gallery/{quote(image_id, safe='/')}/image"


# Declared before the plain item route: image ids may contain '/', so "{id}/image" must win.
@router.get(
    "/{image_id:path}/image",
    name="gallery_image",
    summary="The stored image, or a JPEG thumbnail",
    description="Serves only files recorded in the gallery store. `thumb=1` gives a thumbnail of "
    "the default size; `size=N` one whose longer side is at most N pixels.",
    responses={
        200: {"content": {media: {} for media in IMAGE_MEDIA_TYPES}},
        304: {"description": "The thumbnail named by If-None-Match has not changed."},
        404: {"model": ErrorResponse},
        413: {"model": ErrorResponse, "description": "Too many pixels to make a thumbnail of."},
        415: {"model": ErrorResponse, "description": "The stored file is not a readable image."},
    }
    | NOT_READY,
    response_class=Response,
    dependencies=[Depends(require_read_key)],
)
def gallery_image(
    request: Request,
    image_id: str,
    runtime: RuntimeDep,
    thumb: Annotated[
        bool, Query(description="Return a thumbnail instead of the original.")
    ] = False,
    size: Annotated[
        int | None, Query(ge=16, le=1024, description="Thumbnail size in pixels.")
    ] = None,
) -> Response:
    item = _item_or_404(runtime, image_id)
    # From the store only, never built from the request; a relative one from this host's folder.
    path = image_path(runtime.images, item.source_path)
    if not path.is_file():
        raise HTTPException(404, f"the file of gallery image {image_id!r} is missing on disk")
    # Recorded before any bytes go out, a thumbnail (or a 304 for one) as much as the original.
    details = {
        "image_id": item.image_id,
        "size": size or (runtime.settings.thumb_size if thumb else None),
    }
    audit_events.record_now(request, "view", details)
    headers = {
        "ETag": f'"{item.sha256}"',
        "Cache-Control": "private, max-age=300",
        "X-Content-Type-Options": "nosniff",
    }
    if not thumb and size is None:
        return FileResponse(path, media_type=media_type(path), headers=headers)
    side = size or runtime.settings.thumb_size
    headers["ETag"] = f'"{item.sha256}-{side}"'
    if request.headers.get("if-none-match") == headers["ETag"]:
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    data = runtime.thumbnails.get(item.sha256, side)
    if data is None:
        try:
            data = thumbnail(path, side, runtime.settings.max_pixels)
        except ImageRejectedError as err:
            raise HTTPException(err.status, err.message) from None
        runtime.thumbnails.put(item.sha256, side, data)
    return Response(data, media_type="image/jpeg", headers=headers)


@router.get(
    "/{image_id:path}",
    response_model=GalleryItemDetail,
    summary="Metadata of one gallery image",
    responses={404: {"model": ErrorResponse}} | NOT_READY,
    dependencies=[Depends(require_read_key)],
)
def gallery_item(request: Request, image_id: str, runtime: RuntimeDep) -> GalleryItemDetail:
    item = _item_or_404(runtime, image_id)
    audit_events.record_now(request, "view_metadata", {"image_id": item.image_id})
    url = _image_url(request, item.image_id)
    return GalleryItemDetail(
        **_gallery_item(item).model_dump(),
        added_at=item.added_at,
        image_url=url,
        thumbnail_url=f"{url}?thumb=1",
    )


@router.delete(
    "/{image_id:path}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Remove an image from the gallery",
    description="Removes the gallery entry and, for uploaded images, the stored file. "
    "Needs a writer key in the `X-API-Key` header.",
    responses={404: {"model": ErrorResponse}} | {k: UPLOAD_ERRORS[k] for k in (401, 403, 503)},
    dependencies=[Depends(require_write_key)],
)
async def delete_item(request: Request, image_id: str, runtime: RuntimeDep) -> Response:
    if not could_exist(image_id) or not await remove(runtime, image_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no gallery image with id {image_id!r}")
    await audit_events.record(request, "delete", {"image_id": image_id})
    return Response(status_code=status.HTTP_204_NO_CONTENT)
