"""Small helpers shared by the service unit tests."""

from __future__ import annotations

import io
import struct
import time
import zlib

from fastapi.testclient import TestClient
from PIL import Image

API_KEY = "test-key-0123456789"
KEY = {"X-API-Key": API_KEY}


def wait_ready(client: TestClient, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reply = client.get("/readyz")
        if reply.status_code == 200:
            return
        if reply.json().get("status") == "failed":
            raise AssertionError(f"the service failed to start: {reply.json()}")
        time.sleep(0.05)
    raise AssertionError("the service did not become ready in time")


def jpeg(colour=(10, 120, 200), size=(64, 128)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "JPEG")
    return out.getvalue()


def count(client: TestClient) -> int:
    return client.get("/v1/info").json()["index"]["count"]


def _chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that announces width×height but carries almost no pixel data: decoding it would
    fail, so only a check made from the header can refuse it for its size."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + _chunk(b"IEND", b"")
    )
