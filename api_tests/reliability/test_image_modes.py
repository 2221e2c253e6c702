"""Images that are valid but unusual are accepted and encoded as the picture a person sees.

Decided behaviour (service/images.py, ``to_rgb``): EXIF orientation is applied before encoding
and in thumbnails, while the stored and served original keeps the client's exact bytes (its
SHA-256 is the dedupe key; browsers apply the EXIF tag themselves); CMYK, palette and 1-bit
images are converted to RGB; 16-bit grey keeps its high byte; transparent pixels show white.

Each case uploads the unusual file next to a plain 8-bit RGB PNG of what it should look like,
made here independently; identical vectors show as identical search scores for every query.
"""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
from PIL import Image

from api_tests.reliability.hostile import MULTIPART, multipart

QUERIES = ["a woman in a red coat", "a man with a black backpack", "someone in white shoes"]
ORIENTATION = 0x0112


def encoded(img: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **options)
    return out.getvalue()


def noise(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def decoded_rgb(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def png_rgb(pixels: np.ndarray) -> bytes:
    return encoded(Image.fromarray(pixels.astype(np.uint8), "RGB"), "PNG")


def on_white(rgb: np.ndarray, opaque: np.ndarray) -> np.ndarray:
    """Binary alpha composited onto white, exactly (no rounding to disagree about)."""
    return np.where(opaque[..., None], rgb, 255)


def half_opaque(h: int, w: int) -> np.ndarray:
    mask = np.zeros((h, w), bool)
    mask[:, : w // 2] = True
    return mask


def pairs() -> dict[str, tuple[bytes, bytes]]:
    """name -> (the unusual file, an 8-bit RGB PNG of what it shows)."""
    h, w = 96, 48
    rgb = noise(10, (h, w, 3))
    grey16 = np.random.default_rng(11).integers(0, 65536, (h, w)).astype(np.uint16)
    mask = half_opaque(h, w)
    alpha = np.where(mask, 255, 0).astype(np.uint8)
    rgba = np.dstack([noise(12, (h, w, 3)), alpha])
    rgba_webp = np.dstack([noise(17, (h, w, 3)), alpha])
    la = np.dstack([noise(13, (h, w)), np.where(mask, 255, 0).astype(np.uint8)])
    cmyk_jpeg = encoded(Image.fromarray(rgb).convert("CMYK"), "JPEG")
    palette = Image.fromarray(noise(14, (h, w, 3))).convert("P")
    bilevel = Image.fromarray(noise(15, (h, w))).convert("1")
    indices = np.asarray(palette)
    table = np.asarray(palette.getpalette(), np.uint8).reshape(-1, 3)
    grey_jpeg = encoded(Image.fromarray(noise(16, (h, w))), "JPEG", quality=100)
    return {
        "CMYK JPEG": (cmyk_jpeg, png_rgb(decoded_rgb(cmyk_jpeg))),
        "16-bit grey PNG": (
            encoded(Image.fromarray(grey16), "PNG"),
            png_rgb(np.repeat((grey16 >> 8)[..., None], 3, axis=2)),
        ),
        "palette PNG": (encoded(palette, "PNG"), png_rgb(table[indices])),
        "palette PNG with a transparent colour": (
            encoded(palette, "PNG", transparency=int(indices[0, 0])),
            png_rgb(on_white(table[indices], indices != indices[0, 0])),
        ),
        "RGBA PNG": (
            encoded(Image.fromarray(rgba, "RGBA"), "PNG"),
            png_rgb(on_white(rgba[..., :3], mask)),
        ),
        "grey + alpha PNG": (
            encoded(Image.fromarray(la, "LA"), "PNG"),
            png_rgb(on_white(np.repeat(la[..., :1], 3, axis=2), mask)),
        ),
        "RGBA WebP (lossless)": (
            encoded(Image.fromarray(rgba_webp, "RGBA"), "WEBP", lossless=True, exact=True),
            png_rgb(on_white(rgba_webp[..., :3], mask)),
        ),
        "1-bit PNG": (
            encoded(bilevel, "PNG"),
            png_rgb(np.repeat(np.asarray(bilevel, np.uint8)[..., None] * 255, 3, axis=2)),
        ),
        "8-bit grey JPEG": (grey_jpeg, png_rgb(decoded_rgb(grey_jpeg))),
    }


def upload(http: httpx.Client, key: dict, files: list[tuple[str, bytes]]) -> list[str]:
    body = multipart([(name.encode(), data) for name, data in files])
    reply = http.post("/v1/gallery", content=body, headers={**key, "content-type": MULTIPART})
    assert reply.status_code == 201, reply.text
    added = reply.json()["added"]
    assert len(added) == len(files), reply.json()
    return [item["image_id"] for item in added]


def scores(http: httpx.Client, query: str) -> dict[str, float]:
    reply = http.post("/v1/search", json={"query": query, "top_k": 2048})
    assert reply.status_code == 200, reply.text
    return {hit["image_id"]: hit["score"] for hit in reply.json()["results"]}


def test_modes_are_accepted_and_encoded_as_seen(rel_http: httpx.Client, key: dict) -> None:
    cases = pairs()
    files = [
        (f"{n}-{kind}.img", data)
        for n, pair in enumerate(cases.values())
        for kind, data in zip("ab", pair, strict=True)
    ]
    ids = upload(rel_http, key, files[:8]) + upload(rel_http, key, files[8:])
    try:
        for query in QUERIES:
            found = scores(rel_http, query)
            for n, name in enumerate(cases):
                unusual, plain = ids[2 * n], ids[2 * n + 1]
                assert found[unusual] == pytest.approx(found[plain], abs=1e-5), (name, query)
        for image_id in ids[::2]:
            thumb = rel_http.get(f"/v1/gallery/{image_id}/image", params={"size": 32})
            assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
            assert Image.open(io.BytesIO(thumb.content)).mode == "RGB"
    finally:
        for image_id in ids:
            rel_http.delete(f"/v1/gallery/{image_id}", headers=key)


def test_exif_orientation_is_applied_and_the_original_kept(
    rel_http: httpx.Client, key: dict
) -> None:
    sideways = Image.fromarray(noise(20, (48, 96, 3)))  # stored 96 wide, 48 high
    exif = Image.Exif()
    exif[ORIENTATION] = 6  # "rotate 90° clockwise to display": upright it is 48 x 96
    tagged = encoded(sideways, "JPEG", exif=exif.tobytes(), quality=95)
    decoded = np.asarray(Image.open(io.BytesIO(tagged)).convert("RGB"))
    upright = png_rgb(np.rot90(decoded, k=-1))  # what a person sees
    as_stored = png_rgb(decoded)  # what ignoring the tag would encode
    tagged_id, upright_id, stored_id = upload(
        rel_http, key, [("tagged.jpg", tagged), ("upright.png", upright), ("raw.png", as_stored)]
    )
    try:
        differs = False
        for query in QUERIES:
            found = scores(rel_http, query)
            assert found[tagged_id] == pytest.approx(found[upright_id], abs=1e-5), query
            differs |= abs(found[tagged_id] - found[stored_id]) > 1e-4
        assert differs, "the test images cannot tell rotated from not rotated"
        original = rel_http.get(f"/v1/gallery/{tagged_id}/image")
        assert original.content == tagged  # byte for byte, EXIF tag included
        thumb = rel_http.get(f"/v1/gallery/{tagged_id}/image", params={"size": 64})
        assert Image.open(io.BytesIO(thumb.content)).size == (32, 64)  # upright
    finally:
        for image_id in (tagged_id, upright_id, stored_id):
            rel_http.delete(f"/v1/gallery/{image_id}", headers=key)
