"""Hostile upload bodies, built byte by byte: broken and oversized images, and multipart bodies
with whatever file names and fields an attacker may send (httpx would sanitise some of them)."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image

from api_tests.reliability.support import noise_image

BOUNDARY = "reliability-b0undary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


def multipart(files: list[tuple[bytes, bytes]], fields: list[tuple[bytes, bytes]] = ()) -> bytes:
    """A multipart body of raw (filename, data) file parts in the field 'files' and raw
    (name, value) text fields, nothing escaped."""
    out = io.BytesIO()
    for name, value in fields:
        out.write(f"--{BOUNDARY}\r\n".encode())
        out.write(b'Content-Disposition: form-data; name="' + name + b'"\r\n\r\n' + value + b"\r\n")
    for filename, data in files:
        out.write(f"--{BOUNDARY}\r\n".encode())
        out.write(b'Content-Disposition: form-data; name="files"; filename="' + filename + b'"\r\n')
        out.write(b"Content-Type: application/octet-stream\r\n\r\n" + data + b"\r\n")
    out.write(f"--{BOUNDARY}--\r\n".encode())
    return out.getvalue()


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def png_claiming(width: int, height: int) -> bytes:
    """A valid PNG header announcing width×height, with almost no pixel data behind it."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + _chunk(b"IEND", b"")
    )


def bilevel_bomb(width: int, height: int) -> bytes:
    """A real, fully decodable black PNG: tens of KB on the wire, width×height pixels decoded."""
    out = io.BytesIO()
    Image.new("1", (width, height), 0).save(out, "PNG", optimize=True)
    return out.getvalue()


def big_jpeg(width: int, height: int) -> bytes:
    """A real JPEG photo-sized canvas (a smooth gradient keeps it to a couple of MB)."""
    out = io.BytesIO()
    Image.linear_gradient("L").resize((width, height)).save(out, "JPEG", quality=80)
    return out.getvalue()


def good_files(count: int, seed: int) -> list[tuple[bytes, bytes]]:
    return [(f"ok{i}.jpg".encode(), noise_image(seed + i)) for i in range(count)]
