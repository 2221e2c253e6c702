"""Checking uploaded image bytes and making thumbnails, with the size checked before decoding."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

from bundle.images import ImageDecodeError, decode_bytes, open_header, to_rgb

# Pillow format name -> (media type, file suffix). Anything else is refused with 415.
FORMATS = {
    "JPEG": ("image/jpeg", ".jpg"),
    "PNG": ("image/png", ".png"),
    "WEBP": ("image/webp", ".webp"),
    "BMP": ("image/bmp", ".bmp"),
}
SUFFIX_MEDIA_TYPES = {suffix: media for media, suffix in FORMATS.values()} | {".jpeg": "image/jpeg"}
# What the image route may answer with: stored uploads, and data set files of other kinds.
IMAGE_MEDIA_TYPES = [*dict.fromkeys(SUFFIX_MEDIA_TYPES.values()), "application/octet-stream"]


class ImageRejectedError(Exception):
    """An upload that is not an acceptable image; ``status`` is the HTTP code to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class CheckedImage:
    data: bytes
    sha256: str
    format: str
    width: int
    height: int
    image: Image.Image  # decoded, EXIF-rotated, RGB (bundle.images.to_rgb)

    @property
    def suffix(self) -> str:
        return FORMATS[self.format][1]


_STATUS = {"empty": 422, "unsupported": 415, "too_large": 413, "corrupt": 422}


def _rejected(err: ImageDecodeError, name: str) -> ImageRejectedError:
    if err.problem == "unsupported":
        return ImageRejectedError(
            415, f"{name}: not a supported image; send JPEG, PNG, WebP or BMP"
        )
    return ImageRejectedError(_STATUS[err.problem], err.message)


def check_image(data: bytes, name: str, max_pixels: int, max_side: int) -> CheckedImage:
    """Identify, size-check (from the header, before decoding) and fully decode one upload, with
    the decoder every other path uses (bundle.images), so an upload and the same file indexed
    from disk give the same vector."""
    try:
        decoded = decode_bytes(data, name, max_pixels, max_side, formats=list(FORMATS))
    except ImageDecodeError as err:
        raise _rejected(err, name) from None
    return CheckedImage(
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        format=decoded.format,
        width=decoded.width,
        height=decoded.height,
        image=decoded.image,
    )


# A search photo is reduced to the towers' 384x128 anyway: a JPEG is decoded at the smallest
# DCT scale that keeps it at least this large, a fraction of the memory of a full decode.
QUERY_DRAFT = (768, 768)


def check_query_photo(
    data: bytes, name: str, max_pixels: int, max_side: int, max_file_pixels: int
) -> Image.Image:
    """A search photo, decoded (EXIF-rotated, RGB). ``max_pixels`` bounds what is decoded: a
    JPEG counts at the scale it is decoded at, so a phone's photo passes and a PNG of as many
    pixels does not; ``max_file_pixels`` (an upload's limit) bounds what the file declares."""
    try:
        header = open_header(data, name, max_file_pixels, formats=list(FORMATS))
        if header.format == "JPEG":
            header.draft("RGB", QUERY_DRAFT)  # reads no pixels: sets the scale and the size
        width, height = header.size
        if width * height > max_pixels:
            raise ImageRejectedError(
                413,
                f"{name}: {width}x{height} is {width * height:,} pixels to decode; a search "
                f"photo may have {max_pixels:,} (TPS_MAX_QUERY_PIXELS; a JPEG counts at the "
                "reduced scale it is decoded at)",
            )
        decoded = decode_bytes(
            data, name, max_file_pixels, max_side, formats=list(FORMATS), draft=QUERY_DRAFT
        )
    except ImageDecodeError as err:
        raise _rejected(err, name) from None
    return decoded.image


def media_type(path: Path) -> str:
    return SUFFIX_MEDIA_TYPES.get(path.suffix.lower(), "application/octet-stream")


def thumbnail(path: Path, size: int, max_pixels: int) -> bytes:
    """A JPEG no larger than ``size`` on its longer side (aspect kept)."""
    try:
        img = open_header(path.read_bytes(), path.name, max_pixels, formats=list(FORMATS))
    except ImageDecodeError as err:
        raise _rejected(err, path.name) from None
    if img.size[0] * img.size[1] > max_pixels:
        raise ImageRejectedError(413, f"{path.name} is too large to make a thumbnail of")
    img.draft("RGB", (size, size))  # JPEG: decode at reduced scale, much faster
    img = to_rgb(ImageOps.exif_transpose(img))
    img.thumbnail((size, size), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=85, optimize=True)
    return out.getvalue()
