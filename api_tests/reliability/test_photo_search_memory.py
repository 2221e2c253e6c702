"""Search by photo under a flood of large photos: the server's memory stays bounded and text
searches are still answered. A solid-colour 6300x6330 PNG is 131 KB on the wire and 120 MB as
pixels; decoded 32 at a time it took the server past 2 GB."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import httpx
from PIL import Image

from api_tests.reliability.conftest import Launch
from api_tests.reliability.support import peak_rss_kib, rss_kib

GB_KIB = 1024 * 1024
FLOOD = 32


def solid_png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (90, 140, 200)).save(out, "PNG")
    return out.getvalue()


def test_a_flood_of_large_photos_keeps_the_server_under_1_gb(launch: Launch) -> None:
    server = launch()
    assert server.proc is not None
    hostile = solid_png(6300, 6330)  # over the search photo's pixel limit: refused unread
    largest = solid_png(2000, 1995)  # just under it: decoded, TPS_MAX_CONCURRENT_DECODES at once
    started_kib = rss_kib(server.proc.pid)

    def photo(data: bytes) -> int:
        files = {"image": ("p.png", data, "image/png")}
        with httpx.Client(base_url=server.url, timeout=600) as http:
            return http.post("/v1/search/image", files=files).status_code

    def text(n: int) -> int:
        with httpx.Client(base_url=server.url, timeout=600) as http:
            return http.post("/v1/search", json={"query": f"a person {n}"}).status_code

    with ThreadPoolExecutor(max_workers=2 * FLOOD + 4) as pool:
        photos = [pool.submit(photo, hostile if n % 2 else largest) for n in range(2 * FLOOD)]
        searches = [pool.submit(text, n) for n in range(4)]
        texts = [f.result() for f in searches]
        statuses = [f.result() for f in photos]
    peak_kib = peak_rss_kib(server.proc.pid)
    print(f"RSS at start {started_kib / 1024:.0f} MiB, peak {peak_kib / 1024:.0f} MiB")
    assert texts == [200] * 4, "text searches were not answered during the flood"
    assert sorted(set(statuses)) == [200, 413], statuses
    assert statuses.count(413) == FLOOD
    assert peak_kib < GB_KIB, f"peak RSS {peak_kib / 1024:.0f} MiB"
