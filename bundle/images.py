"""The one image decoder: bytes → the RGB picture a person would see, for every path.

Training, evaluation, gallery encoding and uploads all decode here, so one file always gives
one vector: EXIF orientation applied, 16-bit grey scaled (not clipped), palette and alpha
composited on white, and the pixel count checked from the header before any pixel is decoded.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Pillow's own decompression-bomb ceiling is ~179 M pixels; ours is lower and explicit.
DEFAULT_MAX_PIXELS = 40_000_000
DEFAULT_MAX_SIDE = 20_000

Problem = Literal["empty", "unsupported", "too_large", "corrupt"]


class ImageDecodeError(Exception):
    """Bytes that do not give an acceptable image; ``problem`` says which way they fail."""

    def __init__(self, problem: Problem, message: str) -> None:
        super().__init__(message)
        self.problem = problem
        self.message = message


@dataclass(frozen=True)
class DecodedImage:
    image: Image.Image  # RGB, EXIF-rotated
    format: str  # Pillow's name of the file format, e.g. "JPEG"
    width: int  # as stored in the file (before EXIF rotation)
    height: int


def to_rgb(img: Image.Image) -> Image.Image:
    """The picture as 8-bit RGB: 16-bit grey keeps its high byte (Pillow's own conversion clips
    at 255, which turns a 16-bit photo white), and transparent pixels show white (not whatever
    colour the file keeps under them)."""
    if img.mode.startswith("I"):  # I;16, I;16B, I: 16-bit grey from PNG
        grey = np.asarray(img).astype(np.int64) >> 8
        img = Image.fromarray(grey.clip(0, 255).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def open_header(
    data: bytes | io.BytesIO,
    name: str,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    formats: Sequence[str] | None = None,
) -> Image.Image:
    """Identify the file from its header only (no pixels decoded); ``formats`` limits the kinds."""
    stream = io.BytesIO(data) if isinstance(data, bytes) else data
    try:
        with warnings.catch_warnings():
            # Pillow warns on large images; our own limit decides instead.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(stream, formats=list(formats) if formats else None)
    except Image.DecompressionBombError:
        raise ImageDecodeError(
            "too_large", f"{name}: the image is over the limit of {max_pixels:,} pixels"
        ) from None
    except UnidentifiedImageError:
        kinds = ", ".join(formats) if formats else "a format Pillow reads"
        raise ImageDecodeError(
            "unsupported", f"{name}: not a supported image; send {kinds}"
        ) from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageDecodeError("corrupt", f"{name}: the image header is corrupt ({err})") from None


def check_size(img: Image.Image, name: str, max_pixels: int, max_side: int) -> None:
    width, height = img.size
    if width < 1 or height < 1:
        raise ImageDecodeError("corrupt", f"{name}: the image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        pixels = f"{width}x{height} is {width * height:,} pixels"
        raise ImageDecodeError("too_large", f"{name}: {pixels}; the limit is {max_pixels:,}")
    if max(width, height) > max_side:
        raise ImageDecodeError(
            "too_large", f"{name}: {width}x{height} has a side over the limit of {max_side} pixels"
        )


def decode_bytes(
    data: bytes,
    name: str,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_side: int = DEFAULT_MAX_SIDE,
    formats: Sequence[str] | None = None,
    draft: tuple[int, int] | None = None,
) -> DecodedImage:
    """Identify, size-check (from the header, before decoding) and fully decode one image.

    ``draft``: a JPEG may be decoded at 1/2, 1/4 or 1/8 scale, as long as it stays at least this
    large (Pillow's ``draft``), which costs that much less memory and time; other formats are
    decoded whole. Gallery paths leave it out, so one file always gives one vector."""
    if not data:
        raise ImageDecodeError("empty", f"{name}: the file is empty")
    img = open_header(data, name, max_pixels, formats)
    check_size(img, name, max_pixels, max_side)
    width, height = img.size
    try:
        if draft is not None:
            img.draft("RGB", draft)
        img.load()
        rgb = to_rgb(ImageOps.exif_transpose(img))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ImageDecodeError("corrupt", f"{name}: the image data is corrupt ({err})") from None
    return DecodedImage(rgb, img.format or "", width, height)


def decode_file(
    path: Path, max_pixels: int = DEFAULT_MAX_PIXELS, max_side: int = DEFAULT_MAX_SIDE
) -> Image.Image:
    """A data set or gallery file as RGB (OSError when it cannot be read)."""
    return decode_bytes(Path(path).read_bytes(), str(path), max_pixels, max_side).image
