"""Reading a recording with PyAV: checks before decoding, then frames at a sampling rate.

A recording is refused, with :class:`FootageError`, when it is not a video FFmpeg can read, has
no video stream, declares or delivers frames larger than the limit, has no frames, or ends
before the frames its header declares (a truncated file). Callers read every frame before they
write anything, so a refused recording changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from footage.errors import FootageError

# 8K UHD: anything larger is far beyond what a camera records and would exhaust memory.
DEFAULT_MAX_PIXELS = 7680 * 4320
# A header that declares N frames may deliver a few less (edit lists, B-frame reordering).
_TRUNCATION_SLACK = 0.02


@dataclass(frozen=True)
class Frame:
    index: int  # position among all decoded frames
    time: float  # seconds from the start of the recording
    rgb: np.ndarray  # (H, W, 3) uint8


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    declared_frames: int  # 0 when the container does not say
    fps: float  # 0 when unknown
    format: str  # FFmpeg's names of the container format, e.g. "mov,mp4,m4a,3gp,3g2,mj2"


def probe(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> VideoInfo:
    """What the container says, checked before any frame is decoded."""
    with _open(path) as container:
        stream = video_stream(container, path)
        info = VideoInfo(
            width=int(stream.codec_context.width or 0),
            height=int(stream.codec_context.height or 0),
            declared_frames=int(stream.frames or 0),
            fps=float(stream.average_rate or 0),
            format=container.format.name,
        )
    check_size(path, info.width, info.height, max_pixels)
    return info


class Sampler:
    """Which frames to keep at ``sample_fps``: the first one at or after each 1/sample_fps
    step of the stream's time."""

    def __init__(self, sample_fps: float) -> None:
        self.step = 1.0 / sample_fps
        self.next_time = 0.0

    def due(self, t: float) -> bool:
        if t + 1e-6 < self.next_time:
            return False
        self.next_time = (int((t + 1e-6) / self.step) + 1) * self.step
        return True


def sampled_frames(
    path: Path, sample_fps: float, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Iterator[Frame]:
    """The frames at ``sample_fps`` (the first one at or after each 1/sample_fps step); every
    frame is decoded (codecs need them), only the sampled ones are converted."""
    if not sample_fps > 0:
        raise FootageError(f"the sampling rate must be above 0 frames/s, got {sample_fps}")
    info = probe(path, max_pixels)
    sampler = Sampler(sample_fps)
    decoded = 0
    with _open(path) as container:
        stream = video_stream(container, path)
        stream.thread_type = "AUTO"
        start = None
        try:
            for frame in container.decode(stream):
                check_size(path, frame.width, frame.height, max_pixels)
                seconds = frame_seconds(frame, decoded, info.fps)
                start = seconds if start is None else start
                t = seconds - start
                decoded += 1
                if sampler.due(t):
                    yield Frame(decoded - 1, t, frame.to_ndarray(format="rgb24"))
        except av.FFmpegError as err:
            raise FootageError(
                f"{path}: the recording is damaged or truncated ({err})", "damaged"
            ) from None
    _check_count(path, decoded, info.declared_frames)


def scan(path: Path, formats: tuple[str, ...], max_pixels: int = DEFAULT_MAX_PIXELS) -> VideoInfo:
    """A quick check of a whole recording without decoding it: its container is one of
    ``formats`` (FFmpeg's short names: mp4, matroska, avi, ...), and its video packets can all
    be read and are as many as its header declares. Reads the file once, at disk speed."""
    info = probe(path, max_pixels)
    if not set(info.format.split(",")) & set(formats):
        raise FootageError(
            f"{path}: a {info.format.split(',')[0]} file; accepted: {', '.join(formats)}",
            "not_video",
        )
    packets = 0
    with _open(path) as container:
        stream = video_stream(container, path)
        try:
            for packet in container.demux(stream):
                packets += packet.size > 0
        except av.FFmpegError as err:
            raise FootageError(
                f"{path}: the recording is damaged or truncated ({err})", "damaged"
            ) from None
    _check_count(path, packets, info.declared_frames)
    return info


def _check_count(path: Path, frames: int, declared: int) -> None:
    if frames == 0:
        raise FootageError(f"{path}: the recording has no video frames", "damaged")
    if declared and frames < declared * (1 - _TRUNCATION_SLACK) - 1:
        raise FootageError(
            f"{path}: the recording ends after {frames} of the {declared} frames it declares "
            "(truncated)",
            "damaged",
        )


def _open(path: Path) -> av.container.InputContainer:
    if not Path(path).is_file():
        raise FootageError(f"{path}: no such file")
    try:
        return av.open(str(path), mode="r")
    except av.FFmpegError as err:
        raise FootageError(f"{path}: not a video FFmpeg can read ({err})", "not_video") from None


def video_stream(container: av.container.InputContainer, path: Path | str) -> av.VideoStream:
    if not container.streams.video:
        raise FootageError(f"{path}: the file has no video stream", "not_video")
    return container.streams.video[0]


def check_size(path: Path | str, width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise FootageError(f"{path}: the video stream has no frame size", "damaged")
    if width * height > max_pixels:
        raise FootageError(
            f"{path}: frames of {width}x{height} exceed the limit of {max_pixels} pixels",
            "too_large",
        )


def frame_seconds(frame: av.VideoFrame, n: int, fps: float) -> float:
    if frame.pts is not None and frame.time_base is not None:
        return float(frame.pts * frame.time_base)
    return n / fps if fps > 0 else float(n)
