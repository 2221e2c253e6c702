"""One recording into a gallery store: analyse it (or reuse a finished analysis), write the
chosen crops, encode them with the bundle and add them in atomic batches.

Ids are deterministic: the recording key is a hash of the file's bytes and of the analysis
settings, an image id is key + track + frame, and a person id is the track's id. Re-running a
recording adds nothing; a run killed while encoding resumes where its batches stopped (the
analysis and the crops are kept beside the crops, ``tracks.json`` written last).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from bundle.fsio import replace_atomic, write_json_atomic
from footage.analysis import AnalysisOptions, analyse
from footage.detectors import Detector, make_detector
from footage.errors import FootageError
from footage.spans import span_tags, track_person_id
from index.ingest.sources import GalleryEntry
from index.metadata_fields import parse_id

if TYPE_CHECKING:
    from bundle.encoders import Bundle
    from index.gallery_store import GalleryStore

log = logging.getLogger(__name__)

MANIFEST = "tracks.json"
# Phase, done, total: for progress reports (the service's job status).
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class FootageJob:
    video: Path
    camera: str
    start: float  # seconds since the epoch of the recording's first frame
    detector: str = "hog"
    options: AnalysisOptions = field(default_factory=AnalysisOptions)
    device: str = "cpu"  # of an ONNX detector (the key does not depend on it)


@dataclass(frozen=True)
class FootageReport:
    recording: str
    tracks: list[dict[str, Any]]
    crops: int
    added: int
    already_present: int
    sampled_frames: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def recording_key(job: FootageJob) -> str:
    """16 hex digits naming the recording and how it was analysed."""
    detector = job.detector
    kind, _, rest = detector.partition(":")
    if kind == "onnx" and rest and Path(rest).is_file():
        detector = f"onnx:{file_sha256(Path(rest))}"  # the model, not where it lies
    settings = {
        "video": file_sha256(job.video),
        "detector": detector,
        "sample_fps": job.options.sample_fps,
        "crops_per_track": job.options.crops_per_track,
        "min_track_frames": job.options.min_track_frames,
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def check_camera_and_options(camera: str, opts: AnalysisOptions) -> str:
    """The camera id in its one form; FootageError on a bad id or analysis setting (recordings
    and live streams alike)."""
    try:
        camera = parse_id(camera)
    except ValueError as err:
        raise FootageError(f"camera id: {err}") from None
    if not opts.sample_fps > 0 or opts.sample_fps > 120:
        raise FootageError(f"the sampling rate must be in (0, 120] frames/s, got {opts.sample_fps}")
    if opts.crops_per_track < 1:
        raise FootageError(f"crops per track must be at least 1, got {opts.crops_per_track}")
    return camera


def crop_file(track: int, frame: int) -> str:
    return f"t{track:04d}_f{frame:07d}.jpg"


def crop_image_id(key: str, track: int, frame: int) -> str:
    """A crop's image id: the recording's (or stream session's) key, its track, its frame."""
    return f"{key}-t{track:04d}-f{frame:07d}"


def save_crop(path: Path, rgb: np.ndarray) -> None:
    image = Image.fromarray(rgb)
    replace_atomic(path, lambda tmp: image.save(tmp, "JPEG", quality=95))


def check_job(job: FootageJob) -> FootageJob:
    """The job with its camera id in its one form; FootageError on bad values."""
    camera = check_camera_and_options(job.camera, job.options)
    if not Path(job.video).is_file():
        raise FootageError(f"{job.video}: no such file")
    return FootageJob(Path(job.video), camera, job.start, job.detector, job.options, job.device)


def prepare(
    job: FootageJob, crops_root: Path, progress: bool = True, on_progress: Progress | None = None
) -> tuple[str, list[GalleryEntry], list[dict[str, Any]], int]:
    """(recording key, gallery entries of the crops, tracks, sampled frames), analysing the
    recording unless a finished analysis of it is kept under ``crops_root``."""
    job = check_job(job)
    detector = make_detector(job.detector, job.device)  # a wrong file fails before decoding
    key = recording_key(job)
    folder = Path(crops_root) / key
    manifest = folder / MANIFEST
    if manifest.is_file():
        log.info("reusing the analysis of %s in %s", job.video, folder)
        saved = json.loads(manifest.read_text())
    else:
        saved = _analyse_and_save(job, detector, folder, progress, on_progress)
    entries = []
    tracks = []
    for track in saved["tracks"]:
        person = track_person_id(job.camera, key, track["track"])
        first, last = job.start + track["first_time"], job.start + track["last_time"]
        tags = span_tags(first, last)
        tracks.append({"person_id": person, "first": first, "last": last, **track})
        for crop in track["crops"]:
            entries.append(
                GalleryEntry(
                    path=folder / crop["file"],
                    image_id=crop_image_id(key, track["track"], crop["frame"]),
                    person_id=person,
                    camera_id=job.camera,
                    captured_at=job.start + crop["time"],
                    tags=tags,
                )
            )
    return key, entries, tracks, int(saved["sampled_frames"])


def _analyse_and_save(
    job: FootageJob,
    detector: Detector,
    folder: Path,
    progress: bool,
    on_progress: Progress | None,
) -> dict[str, Any]:
    def frame_done(done: int, total: int) -> None:
        if on_progress is not None:
            on_progress("detecting", done, total)

    analysis = analyse(job.video, detector, job.options, progress, frame_done)
    folder.mkdir(parents=True, exist_ok=True)
    saved: dict[str, Any] = {"sampled_frames": analysis.sampled, "tracks": []}
    for track in analysis.tracks:
        crops = []
        for crop in track.crops:
            name = crop_file(track.number, crop.frame)
            save_crop(folder / name, crop.rgb)
            crops.append({"file": name, "frame": crop.frame, "time": crop.time, "box": crop.box})
        saved["tracks"].append(
            {
                "track": track.number,
                "first_time": track.first_time,
                "last_time": track.last_time,
                "frames": track.frames,
                "crops": crops,
            }
        )
    write_json_atomic(folder / MANIFEST, saved)  # last: its presence means the analysis is whole
    return saved


def add_entries(
    store: GalleryStore,
    bundle: Bundle,
    entries: list[GalleryEntry],
    batch_size: int = 64,
    progress: bool = True,
    on_progress: Progress | None = None,
    guard: Callable[[], AbstractContextManager[Any]] = nullcontext,
) -> tuple[int, int]:
    """Encode and add ``entries`` in atomic batches, each under ``guard()`` (a writer's lock);
    entries already in the store are skipped without encoding. (added, already present)."""
    from index.ingest.add import ingest

    added = already = 0
    for begin in range(0, len(entries), batch_size):
        batch = entries[begin : begin + batch_size]
        with guard():
            report = ingest(store, bundle, batch, batch_size, 0, progress)
        if report.failures:
            path, reason = report.failures[0]
            raise FootageError(f"crop {path} cannot be read ({reason})", "damaged")
        added += len(report.added)
        already += len(report.duplicates)
        if on_progress is not None:
            on_progress("encoding", begin + len(batch), len(entries))
    return added, already


def summary(tracks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What a report says of each track."""
    return [
        {
            "track": t["track"],
            "person_id": t["person_id"],
            "first": t["first"],
            "last": t["last"],
            "crops": len(t["crops"]),
        }
        for t in tracks
    ]


def ingest_recording(
    store: GalleryStore,
    bundle: Bundle,
    job: FootageJob,
    crops_root: Path,
    batch_size: int = 64,
    progress: bool = True,
    on_progress: Progress | None = None,
) -> FootageReport:
    key, entries, tracks, sampled = prepare(job, crops_root, progress, on_progress)
    added, already = add_entries(store, bundle, entries, batch_size, progress, on_progress)
    return FootageReport(key, summary(tracks), len(entries), added, already, sampled)
