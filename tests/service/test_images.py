"""Upload checks: format, corruption and size, with the size refused before any decoding."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from service.images import ImageRejectedError, check_image, thumbnail
from tests.service.support import png_header_only

LIMITS = {"max_pixels": 1_000_000, "max_side": 4000}


def encoded(fmt: str, size: tuple[int, int] = (64, 128), colour=(200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, fmt)
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP"])
def test_supported_formats_are_decoded(fmt: str) -> None:
    data = encoded(fmt)
    img = check_image(data, "x", **LIMITS)
    assert (img.width, img.height) == (64, 128)
    assert img.image.mode == "RGB" and img.image.size == (64, 128)
    assert len(img.sha256) == 64
    assert img.suffix.startswith(".")


def test_pixel_limit_is_checked_from_the_header() -> None:
    # No pixel data exists: only a header-based check can reject this with 413.
    with pytest.raises(ImageRejectedError) as err:
        check_image(png_header_only(3000, 3000), "bomb.png", **LIMITS)
    assert err.value.status == 413
    assert "9,000,000 pixels" in err.value.message
    # Far beyond any sane size, Pillow's own header check answers first: still 413.
    with pytest.raises(ImageRejectedError) as err:
        check_image(png_header_only(20_000, 20_000), "bomb.png", **LIMITS)
    assert err.value.status == 413


def test_a_real_decompression_bomb_is_refused() -> None:
    big = encoded("PNG", size=(2000, 2000), colour=(0, 0, 0))
    assert len(big) < 100_000  # small on the wire, 4 MP once decoded
    with pytest.raises(ImageRejectedError) as err:
        check_image(big, "bomb.png", **LIMITS)
    assert err.value.status == 413


def test_side_limit() -> None:
    with pytest.raises(ImageRejectedError) as err:
        check_image(png_header_only(5000, 10), "strip.png", **LIMITS)
    assert err.value.status == 413


@pytest.mark.parametrize(
    "data",
    [b"definitely not an image", b"GIF89a" + b"\x00" * 40, encoded("TIFF")],
    ids=["text", "gif", "tiff"],
)
def test_unsupported_is_415(data: bytes) -> None:
    with pytest.raises(ImageRejectedError) as err:
        check_image(data, "f", **LIMITS)
    assert err.value.status == 415


def test_truncated_image_is_422() -> None:
    data = encoded("JPEG", size=(256, 256))
    with pytest.raises(ImageRejectedError) as err:
        check_image(data[: len(data) // 2], "cut.jpg", **LIMITS)
    assert err.value.status == 422
    assert "cut.jpg" in err.value.message


def test_empty_file_is_422() -> None:
    with pytest.raises(ImageRejectedError) as err:
        check_image(b"", "empty.jpg", **LIMITS)
    assert err.value.status == 422


def test_thumbnail_keeps_aspect(tmp_path) -> None:
    path = tmp_path / "p.png"
    path.write_bytes(encoded("PNG", size=(128, 384)))
    thumb = Image.open(io.BytesIO(thumbnail(path, 96, LIMITS["max_pixels"])))
    assert thumb.format == "JPEG"
    assert thumb.size == (32, 96)


def test_a_search_photo_has_its_own_lower_pixel_limit() -> None:
    from service.images import check_query_photo

    out = io.BytesIO()
    Image.new("RGB", (3000, 2000), (200, 10, 10)).save(out, "PNG")
    data = out.getvalue()
    assert check_image(data, "big.png", 40_000_000, 12_000).width == 3000  # an upload: fine
    with pytest.raises(ImageRejectedError) as refused:
        check_query_photo(data, "big.png", 5_000_000, 12_000, 40_000_000)
    assert refused.value.status == 413 and "TPS_MAX_QUERY_PIXELS" in refused.value.message


def test_a_large_jpeg_photo_is_decoded_at_reduced_scale() -> None:
    from service.images import QUERY_DRAFT, check_query_photo

    out = io.BytesIO()
    Image.new("RGB", (7000, 5000), (20, 90, 160)).save(out, "JPEG")  # 35 MP: passes 4 MP
    image = check_query_photo(out.getvalue(), "phone.jpg", 4_000_000, 12_000, 40_000_000)
    assert image.mode == "RGB" and image.size == (1750, 1250)  # decoded at 1/4 scale
    assert image.size[0] >= QUERY_DRAFT[0] and image.size[1] >= QUERY_DRAFT[1]
