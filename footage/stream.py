"""A live camera stream (RTSP, RTMP, HTTP, SRT) into a gallery store, track by track.

A recording is read whole before anything is written; a stream never ends, so each track is
added as soon as it is finished (the tracker has let the person go), a few seconds after they
leave the view, in one atomic batch. A following session has its own key: its ids are
``KEY-tTRACK-fFRAME`` and ``track:CAMERA:KEY:N`` as for recordings, and its crops and
``tracks.json`` (rewritten whole after each track) lie under ``CROPS/KEY``.

Times come from this machine's clock: the first frame of each connection was taken when the
stream was opened, later frames add their stream time. When the stream breaks off (a camera
reboots, the network drops) the open tracks are added, and the stream is opened again after 1,
2, 4, ... (at most 30) seconds, ``reconnect_tries`` times in a row before the session ends. A
stream that cannot be opened at all is an error at once: most likely a wrong URL or password.
While the store is unavailable (a Milvus restart) finished tracks wait and are tried again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image
from tqdm import tqdm

from bundle.fsio import replace_atomic, write_json_atomic
from footage.analysis import AnalysisOptions, Track, TrackBuilder
from footage.detectors import make_detector
from footage.errors import FootageError
from footage.job import MANIFEST, add_entries, summary
from footage.spans import span_tags, track_person_id
from footage.video import live_frames, redact
from index.errors import StoreUnavailableError
from index.ingest.sources import GalleryEntry
from index.metadata_fields import parse_id

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
    reconnect_tries: int = 5
    device: str = "cpu"  # of an ONNX detector


@dataclass(frozen=True)
class StreamReport:
    stream: str  # the URL without its password
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
    try:
        camera = parse_id(job.camera)
    except ValueError as err:
        raise FootageError(f"camera id: {err}") from None
    opts = job.options
    if not opts.sample_fps > 0 or opts.sample_fps > 120:
        raise FootageError(f"the sampling rate must be in (0, 120] frames/s, got {opts.sample_fps}")
    if opts.crops_per_track < 1:
        raise FootageError(f"crops per track must be at least 1, got {opts.crops_per_track}")
    if job.duration is not None and not job.duration > 0:
        raise FootageError(f"--duration must be above 0 seconds, got {job.duration}")
    if job.reconnect_tries < 0:
        raise FootageError(f"--reconnect-tries must be 0 or more, got {job.reconnect_tries}")
    return StreamJob(
        job.url, camera, job.detector, opts, job.duration, job.reconnect_tries, job.device
    )


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


class _Session:
    """Where a session's finished tracks go: crops on disk, then the store, then the
    manifest."""

    def __init__(
        self,
        job: StreamJob,
        key: str,
        folder: Path,
        store: GalleryStore,
        bundle: Bundle,
        guard: Callable[[], AbstractContextManager[Any]],
    ) -> None:
        self.job, self.key, self.folder = job, key, folder
        self.store, self.bundle, self.guard = store, bundle, guard
        self.tracks: list[dict[str, Any]] = []
        self.added = 0
        self.crops = 0
        # Tracks whose crops the store could not take yet (a Milvus restart): tried again.
        self.pending: list[tuple[dict[str, Any], list[GalleryEntry]]] = []
        self._next_try = 0.0

    def add(self, track: Track, anchor: float) -> None:
        number = len(self.tracks) + 1
        person = track_person_id(self.job.camera, self.key, number)
        first, last = anchor + track.first_time, anchor + track.last_time
        self.folder.mkdir(parents=True, exist_ok=True)
        crops, entries = [], []
        for crop in track.crops:
            name = f"t{number:04d}_f{crop.frame:07d}.jpg"
            image = Image.fromarray(crop.rgb)
            replace_atomic(self.folder / name, lambda t, im=image: im.save(t, "JPEG", quality=95))
            crops.append({"file": name, "frame": crop.frame, "time": crop.time, "box": crop.box})
            entries.append(
                GalleryEntry(
                    path=self.folder / name,
                    image_id=f"{self.key}-t{number:04d}-f{crop.frame:07d}",
                    person_id=person,
                    camera_id=self.job.camera,
                    captured_at=anchor + crop.time,
                    tags=span_tags(first, last),
                )
            )
        record = {"track": number, "person_id": person, "first": first, "last": last}
        self.tracks.append({**record, "crops": crops, "added": False})
        self.crops += len(entries)
        self.pending.append((self.tracks[-1], entries))
        self.flush()

    def flush(self, now: float | None = None) -> None:
        """Add the pending tracks, oldest first; while the store is unavailable they wait,
        and are tried again at most once per its retry delay (``now`` given: only when due)."""
        if not self.pending or (now is not None and now < self._next_try):
            return
        while self.pending:
            track, entries = self.pending[0]
            try:
                added, _ = add_entries(
                    self.store, self.bundle, entries, progress=False, guard=self.guard
                )
            except StoreUnavailableError as err:
                self._next_try = time.monotonic() + err.retry_after_s
                log.warning(
                    "%s: the store is unavailable (%s): %d track(s) wait to be added",
                    self.job.camera,
                    err,
                    len(self.pending),
                )
                break
            self.pending.pop(0)
            self.added += added
            track["added"] = True
            log.info(
                "%s: track %d added (%s to %s, %d crops)",
                self.job.camera,
                track["track"],
                _clock_time(track["first"]),
                _clock_time(track["last"]),
                len(entries),
            )
        write_json_atomic(
            self.folder / MANIFEST,
            {"stream": redact(self.job.url), "camera": self.job.camera, "tracks": self.tracks},
        )


def _clock_time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%H:%M:%S")


def follow_stream(
    store: Callable[[], GalleryStore],
    bundle: Bundle,
    job: StreamJob,
    crops_root: Path,
    stop: threading.Event | None = None,
    progress: bool = True,
    guard: Callable[[], AbstractContextManager[Any]] = nullcontext,
    clock: Callable[[], float] = time.time,
) -> StreamReport:
    """Follow ``job``'s stream until its duration is over, ``stop`` is set, or it stays
    unreachable ``reconnect_tries`` times in a row. ``store()`` gives the store when the
    stream has delivered its first frame: a stream that cannot be opened changes nothing."""
    job = check_stream_job(job)
    detector = make_detector(job.detector, job.device)
    stop = stop or threading.Event()
    began = clock()
    key = session_key(job, began)
    session: _Session | None = None
    sampled = connections = failures = 0
    ended = ""
    # Made at the first frame: a stream that cannot be opened prints its one error line alone.
    bar: tqdm | None = None

    def over() -> str:
        if stop.is_set():
            return "stopped"
        if job.duration is not None and clock() - began >= job.duration:
            return "duration"
        return ""

    while not ended:
        builder = TrackBuilder(job.options)
        anchor: float | None = None
        reason = "the stream ended"
        # A camera sends its first frame as the stream is opened, but FFmpeg hands it over
        # only after probing the stream (seconds): the opening is its time, not its arrival.
        opening = clock()
        try:
            for frame in live_frames(job.url, job.options.sample_fps, job.options.max_pixels):
                if anchor is None:
                    anchor = opening
                    connections += 1
                    failures = 0
                    if session is None:
                        session = _Session(job, key, Path(crops_root) / key, store(), bundle, guard)
                        bar = tqdm(unit="frame", desc=job.camera, disable=not progress)
                builder.add(frame, detector.detect(frame.rgb))
                session.flush(time.monotonic())  # type: ignore[union-attr]  # set above
                sampled += 1
                bar.update(1)  # type: ignore[union-attr]  # made with the session
                for _, track in builder.take_finished():
                    session.add(track, anchor)
                    bar.set_postfix(tracks=len(session.tracks))  # type: ignore[union-attr]
                ended = over()
                if ended:
                    break
        except FootageError as err:
            if connections == 0:
                raise  # never reached: a wrong URL, password or camera
            reason = str(err)
        if anchor is not None and session is not None:
            for _, track in builder.take_all():
                session.add(track, anchor)
        ended = ended or over()
        if ended:
            break
        failures += 1
        if failures > job.reconnect_tries:
            ended = "stream ended"
            break
        wait = min(MAX_BACKOFF_S, 2.0 ** (failures - 1))
        log.warning(
            "%s: %s; opening it again in %.0f s (try %d of %d)",
            job.camera,
            reason,
            wait,
            failures,
            job.reconnect_tries,
        )
        stop.wait(wait)
        ended = over()
    if bar is not None:
        bar.close()
    assert session is not None  # a session that never connected raised above
    session.flush()
    if session.pending:
        raise FootageError(
            f"{len(session.pending)} track(s) could not be added: the store is still "
            f"unavailable; their crops and tracks.json are in {session.folder}"
        )
    return StreamReport(
        redact(job.url),
        key,
        summary(session.tracks),
        session.crops,
        session.added,
        sampled,
        connections,
        ended,
    )
