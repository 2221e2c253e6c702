"""Reading a live stream (an IP camera's RTSP, a recorder's HTTP or SRT feed) with PyAV, and
keeping the camera's credentials out of everything that is shown or written."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import av

from footage.errors import FootageError
from footage.video import (
    DEFAULT_MAX_PIXELS,
    Frame,
    Sampler,
    check_size,
    frame_seconds,
    video_stream,
)

# Sources read as live streams, not files: what IP cameras and video recorders serve.
STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "srt", "udp", "tcp")
# Seconds a camera may take to answer, and to deliver the next frame, before it is given up
# (the second stays inside the 10 s docker gives a container to stop before killing it).
STREAM_TIMEOUTS_S = (10.0, 5.0)
# Query parameters that carry credentials on HTTP cameras (…/video.cgi?user=admin&pwd=…).
_SECRET_PARAMS = re.compile(r"^(user(name)?|pass(word|wd)?|pwd|token|key|auth|secret)$", re.I)
# A jump of the stream's clock by more than this is a restart of its source, not time passing.
_CLOCK_JUMP_S = 10.0


def looks_like_url(source: str) -> bool:
    return re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", source) is not None


def is_stream(source: str) -> bool:
    return looks_like_url(source) and urlsplit(source).scheme.lower() in STREAM_SCHEMES


def redact(url: str, text: str | None = None) -> str:
    """The URL with its password and credential parameters blanked, for logs and reports; or
    ``text`` (e.g. FFmpeg's error message) with each of them blanked wherever it appears."""
    parts = urlsplit(url)
    secrets = [v for k, v in parse_qsl(parts.query) if _SECRET_PARAMS.match(k) and v]
    if parts.password:
        secrets.append(parts.password)
    if text is not None:
        for secret in sorted(secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text
    if not secrets:
        return url
    netloc = parts.netloc
    if parts.password:
        netloc = f"{parts.username}:***@{netloc.rsplit('@', 1)[1]}"
    query = urlencode(
        [(k, "***" if _SECRET_PARAMS.match(k) else v) for k, v in parse_qsl(parts.query)],
        safe="*",
    )
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def live_frames(
    url: str, sample_fps: float, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Iterator[Frame]:
    """A live stream's frames at ``sample_fps``, timed from its first frame, until the stream
    ends. FootageError when it cannot be opened, is not video, or breaks off; RTSP is read over
    TCP (lost UDP packets would tear frames). A jump of the stream's clock (its source
    restarted) continues the timing instead of skipping frames until the clock catches up."""
    # FFmpeg probes a stream for up to 5 s before the first frame; 1 s finds a camera's codec,
    # size and rate (measured: 3.5 s → 1.4 s to the first frame of an RTSP camera).
    options = {"analyzeduration": "1000000"}
    if url.lower().startswith("rtsp"):
        options["rtsp_transport"] = "tcp"
    shown = redact(url)
    try:
        container = av.open(url, options=options, timeout=STREAM_TIMEOUTS_S)
    except av.FFmpegError as err:
        reason = redact(url, str(err))
        raise FootageError(
            f"{shown}: the stream cannot be opened ({reason})", "unreachable"
        ) from None
    with container:
        stream = video_stream(container, shown)
        fps = float(stream.average_rate or 0)
        sampler, decoded = Sampler(sample_fps), 0
        start: float | None = None
        last = 0.0
        try:
            for frame in container.decode(stream):
                check_size(shown, frame.width, frame.height, max_pixels)
                seconds = frame_seconds(frame, decoded, fps)
                start = seconds if start is None else start
                if abs(seconds - start - last) > _CLOCK_JUMP_S:
                    start = seconds - last - (1.0 / fps if fps > 0 else sampler.step)
                t, decoded, last = seconds - start, decoded + 1, seconds - start
                if sampler.due(t):
                    yield Frame(decoded - 1, t, frame.to_ndarray(format="rgb24"))
        except av.FFmpegError as err:
            reason = redact(url, str(err))
            raise FootageError(f"{shown}: the stream broke off ({reason})", "damaged") from None
