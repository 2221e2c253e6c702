"""What footage/live.py shows of a camera's URL, and which sources it reads as streams."""

from __future__ import annotations

import pytest

from footage.live import is_stream, looks_like_url, redact


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("rtsp://admin:hunter2@10.0.0.5:554/s1", "rtsp://admin:***@10.0.0.5:554/s1"),
        ("rtsp://admin:hunter2@[fe80::1]:554/s1", "rtsp://admin:***@[fe80::1]:554/s1"),
        ("rtsp://admin:p%40ss@cam/s1", "rtsp://admin:***@cam/s1"),
        (
            "http://cam/video.cgi?user=admin&pwd=hunter2&res=hd",
            "http://cam/video.cgi?user=***&pwd=***&res=hd",
        ),
        ("rtsp://10.0.0.5/s1", "rtsp://10.0.0.5/s1"),
    ],
)
def test_credentials_are_blanked(url: str, shown: str) -> None:
    assert redact(url) == shown
    message = f"Connection refused: '{url}' (user admin)"
    blanked = redact(url, message)
    assert "hunter2" not in blanked and "p%40ss" not in blanked


def test_streams_are_urls_of_the_schemes_ffmpeg_reads_live() -> None:
    assert is_stream("rtsp://cam/s1") and is_stream("HTTPS://nvr/live.ts")
    assert not is_stream("rec.mp4") and not is_stream("/data/rec:1.mp4")
    assert looks_like_url("rstp://cam/s1") and not is_stream("rstp://cam/s1")
