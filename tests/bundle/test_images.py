"""The shared decoder: what every path gets from awkward files, and how bad bytes fail."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from bundle.images import ImageDecodeError, decode_bytes


def _png(img: Image.Image, **kw) -> bytes:
    out = io.BytesIO()
    img.save(out, "PNG", **kw)
    return out.getvalue()


def test_exif_orientation_is_applied() -> None:
    out = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (80, 30), (10, 200, 10)).save(out, "JPEG", exif=exif)
    decoded = decode_bytes(out.getvalue(), "r.jpg")
    assert decoded.image.size == (30, 80) and (decoded.width, decoded.height) == (80, 30)


def test_sixteen_bit_grey_keeps_its_high_byte() -> None:
    grey = np.full((4, 4), 0x8040, dtype=np.uint16)
    decoded = decode_bytes(_png(Image.fromarray(grey)), "g.png")
    assert decoded.image.mode == "RGB" and np.asarray(decoded.image)[0, 0].tolist() == [128] * 3


def test_transparent_pixels_show_white_for_alpha_and_palette() -> None:
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert np.asarray(decode_bytes(_png(rgba), "a.png").image)[0, 0].tolist() == [255] * 3
    palette = Image.new("P", (4, 4), 1)
    palette.putpalette([0, 0, 0, 200, 0, 0] + [0] * 762)
    decoded = decode_bytes(_png(palette, transparency=1), "p.png").image
    assert np.asarray(decoded)[0, 0].tolist() == [255] * 3


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "empty"),
        (b"plain text, not an image", "unsupported"),
        (_png(Image.new("RGB", (100, 100)))[:60], "corrupt"),
        (_png(Image.new("L", (300, 200))), "too_large"),
    ],
)
def test_bad_bytes_fail_with_a_named_problem(data: bytes, problem: str) -> None:
    with pytest.raises(ImageDecodeError) as err:
        decode_bytes(data, "f", max_pixels=50_000)
    assert err.value.problem == problem and err.value.message.startswith("f: ")
