"""Checking uploaded image bytes and making thumbnails, with the size checked before decoding."""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

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
    image: Image.Image  # decoded, EXIF-rotated, RGB (see to_rgb)

    @property
    def suffix(self) -> str:
        return FORMATS[self.format][1]


def to_rgb(img: Image.Image) -> Image.Image:
    """The picture a person would see, as 8-bit RGB: 16-bit grey keeps its high byte (Pillow's
    own conversion clips at 255, which turns a 16-bit photo white), and transparent pixels show
    white (not whatever colour the file keeps under them)."""
    if img.mode.startswith("I"):  # I;16, I;16B, I: 16-bit grey from PNG
        grey = np.asarray(img).astype(np.int64) >> 8
        img = Image.fromarray(grey.clip(0, 255).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def _open_header(data: io.BytesIO, name: str, max_pixels: int) -> Image.Image:
    try:
        with warnings.catch_warnings():
            # Pillow warns on large images; our own limit below decides instead.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(data, formats=list(FORMATS))
    except Image.DecompressionBombError:
        # Pillow's own header check, for sizes far beyond ours.
        raise ImageRejectedError(
            413, f"{name}: the image is over the limit of {max_pixels:,} pixels"
        ) from None
    except UnidentifiedImageError:
        raise ImageRejectedError(
            415, f"{name}: not a supported image; send JPEG, PNG, WebP or BMP"
        ) from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageRejectedError(422, f"{name}: the image header is corrupt ({err})") from None


def check_image(data: bytes, name: str, max_pixels: int, max_side: int) -> CheckedImage:
    """Identify, size-check (from the header, before decoding) and fully decode one upload."""
    if not data:
        raise ImageRejectedError(422, f"{name}: the file is empty")
    img = _open_header(io.BytesIO(data), name, max_pixels)
    width, height = img.size
    if width < 1 or height < 1:
        raise ImageRejectedError(422, f"{name}: the image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        pixels = f"{width}x{height} is {width * height:,} pixels"
        raise ImageRejectedError(413, f"{name}: {pixels}; the limit is {max_pixels:,}")
    if max(width, height) > max_side:
        raise ImageRejectedError(
            413, f"{name}: {width}x{height} has a side over the limit of {max_side} pixels"
        )
    fmt = img.format or ""
    try:
        img.load()
        rgb = to_rgb(ImageOps.exif_transpose(img))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ImageRejectedError(422, f"{name}: the image data is corrupt ({err})") from None
    return CheckedImage(
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        format=fmt,
        width=width,
        height=height,
        image=rgb,
    )


def media_type(path: Path) -> str:
    return SUFFIX_MEDIA_TYPES.get(path.suffix.lower(), "application/octet-stream")


def thumbnail(path: Path, size: int, max_pixels: int) -> bytes:
    """A JPEG no larger than ``size`` on its longer side (aspect kept)."""
    with open(path, "rb") as fh:
        img = _open_header(io.BytesIO(fh.read()), path.name, max_pixels)
    if img.size[0] * img.size[1] > max_pixels:
        raise ImageRejectedError(413, f"{path.name} is too large to make a thumbnail of")
    img.draft("RGB", (size, size))  # JPEG: decode at reduced scale, much faster
    img = to_rgb(ImageOps.exif_transpose(img))
    img.thumbnail((size, size), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=85, optimize=True)
    return out.getvalue()
