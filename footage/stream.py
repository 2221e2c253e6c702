"""A live camera stream (RTSP, RTMP, HTTP, SRT) into a gallery store, track by track.

A recording is read whole before anything is written; a stream never ends, so each track is
added as soon as it is finished (the tracker has let the person go), a few seconds after they
leave the view, in one atomic batch (footage/stream_session.py). A following session has its
own key: its ids are ``KEY-tTRACK-fFRAME`` and ``track:CAMERA:KEY:N`` as for recordings, and its
crops and ``tracks.jsonl`` lie under ``CROPS/KEY``.

Times come from this machine's clock: the first frame of each connection was taken when the
stream was opened, later frames add their stream time. When the stream breaks off (a camera
reboots, the network drops) the open tracks are added, and the stream is opened again after 1,
2, 4, ... (at most 30) seconds, for as long as it takes or ``reconnect_tries`` times in a row. A
stream that cannot be opened at all, or ends before its first frame, is an error at once: most
likely a wrong URL, password or camera.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from footage.analysis import AnalysisOptions, TrackBuilder
from footage.detectors import Detector, make_detector
from footage.errors import FootageError
from footage.job import check_camera_and_options
from footage.live import live_frames, redact
from footage.stream_session import StreamSession
from footage.video import Frame

if TYPE_CHECKING:
    from bundle.encoders import Bundle
    from index.gallery_store import GalleryStore

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 30.0


@dataclass(frozen=True)
class StreamJob:
    url: str
    camera: str
    detector: str = "hog"
    options: AnalysisOptions = field(default_factory=AnalysisOptions)
    duration: float | None = None  # seconds of this machine's clock; None: until stopped
    reconnect_tries: int | None = None  # None: for as long as it takes
    device: str = "cpu"  # of an ONNX detector
    batch_size: int = 64


@dataclass(frozen=True)
class StreamReport:
    stream: str  # the URL without its credentials
    session: str
    tracks: list[dict[str, Any]]
    crops: int
    added: int
    sampled_frames: int
    connections: int
    ended: str  # duration | stopped | stream ended

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_stream_job(job: StreamJob) -> StreamJob:
    """The job with its camera id in its one form; FootageError on bad values."""
    camera = check_camera_and_options(job.camera, job.options)
    if job.duration is not None and not job.duration > 0:
        raise FootageError(f"--duration must be above 0 seconds, got {job.duration}")
    if job.reconnect_tries is not None and job.reconnect_tries < 0:
        raise FootageError(f"--reconnect-tries must be 0 or more, got {job.reconnect_tries}")
    if job.batch_size < 1:
        raise FootageError(f"--batch-size must be at least 1, got {job.batch_size}")
    return dataclasses.replace(job, camera=camera)


def session_key(job: StreamJob, began: float) -> str:
    """16 hex digits naming this following of the stream (its start makes it unique)."""
    settings = {
        "stream": redact(job.url),
        "camera": job.camera,
        "began": round(began, 6),
        "detector": job.detector,
        "sample_fps": job.options.sample_fps,
        "crops_per_track": job.options.crops_per_track,
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _next_frame(frames: Iterator[Frame]) -> tuple[Frame | None, str | None]:
    """(the next frame, None), (None, None) at the stream's end, (None, why) when it broke."""
    try:
        return next(frames, None), None
    except FootageError as err:
        return None, str(err)


def follow_stream(
    store: Callable[[], GalleryStore],
    bundle: Bundle,
    job: StreamJob,
    crops_root: Path,
    stop: threading.Event | None = None,
    progress: bool = True,
    guard: Callable[[], AbstractContextManager[Any]] = nullcontext,
    detector: Detector | None = None,
) -> StreamReport:
    """Follow ``job``'s stream until its duration is over, ``stop`` is set, or it stays
    unreachable ``reconnect_tries`` times in a row. ``store()`` gives the store when the
    stream has delivered its first frame: a stream that cannot be opened changes nothing."""
    job = check_stream_job(job)
    detector = detector or make_detector(job.detector, job.device)
    stop = stop or threading.Event()
    began = time.time()
    key = session_key(job, began)
    session: StreamSession | None = None
    bar: tqdm | None = None  # made at the first frame: an error line stays alone
    sampled = connections = failures = 0

    def over() -> str:
        if stop.is_set():
            return "stopped"
        if job.duration is not None and time.time() - began >= job.duration:
            return "duration"
        return ""

    ended = ""
    while not ended:
        builder = TrackBuilder(job.options)
        # A camera sends its first frame as the stream is opened, but FFmpeg hands it over
        # only after probing the stream (about a second): the opening is its time.
        anchor = time.time()
        frames = live_frames(job.url, job.options.sample_fps, job.options.max_pixels)
        seen, reason = 0, "the stream ended"
        while not ended:
            frame, broke = _next_frame(frames)
            if broke is not None and connections == 0:
                raise FootageError(broke, "unreachable")  # a wrong URL, password or camera
            if frame is None:
                reason = broke or reason
                break
            if seen == 0:
                connections, failures = connections + 1, 0
                if session is None:
                    folder = Path(crops_root) / key
                    session = StreamSession(
                        job.camera, key, folder, store(), bundle, guard, job.batch_size
                    )
                    bar = tqdm(unit="frame", desc=job.camera, disable=not progress)
            seen += 1
            assert session is not None and bar is not None
            builder.add(frame, detector.detect(frame.rgb))
            for _, track in builder.take_finished():
                session.add(track, anchor)
                bar.set_postfix(tracks=len(session.tracks))
            session.flush(time.monotonic())
            sampled += 1
            bar.update(1)
            ended = over()
        frames.close()  # closes the connection
        if session is None:  # it opened, and ended without a frame
            raise FootageError(f"{redact(job.url)}: the stream ended before its first frame")
        for _, track in builder.take_all():
            session.add(track, anchor)
        if ended:
            break
        failures += 1
        if job.reconnect_tries is not None and failures > job.reconnect_tries:
            ended = "stream ended"
            break
        wait = min(MAX_BACKOFF_S, 2.0 ** (failures - 1))
        tries = "" if job.reconnect_tries is None else f" of {job.reconnect_tries}"
        log.warning(
            "%s: %s; opening it again in %.0f s (try %d%s)",
            *(job.camera, reason, wait, failures, tries),
        )
        stop.wait(wait)
        ended = over()
    assert session is not None and bar is not None
    bar.close()
    session.flush()
    session.write_pending()
    if session.pending:
        raise FootageError(
            f"{len(session.pending)} track(s) could not be added: the store is still "
            f"unavailable; their crops and tracks.jsonl are in {session.folder}"
        )
    return StreamReport(
        redact(job.url),
        key,
        session.tracks,
        session.crops,
        session.added,
        sampled,
        connections,
        ended,
    )
