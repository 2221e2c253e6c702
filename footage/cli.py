"""``python -m index footage``: ingest recordings into a gallery store (see docs/footage.md)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from contextlib import closing
from pathlib import Path
from signal import SIGINT, SIGTERM
from typing import TYPE_CHECKING, Any

from footage.analysis import AnalysisOptions
from footage.detectors import DETECTOR_HELP, make_detector
from footage.errors import FootageError
from footage.job import FootageJob, FootageReport, add_entries, prepare, summary
from footage.live import STREAM_SCHEMES, is_stream, looks_like_url, redact
from footage.stream import StreamJob, check_stream_job, follow_stream
from index.errors import IndexStoreError, StoreUnavailableError
from index.metadata_fields import TIME_HELP, parse_time
from index.stores import store_kind

if TYPE_CHECKING:
    from bundle.encoders import Bundle
    from index.gallery_store import GalleryStore

log = logging.getLogger("footage")


def add_parser(commands: Any, store_help: str) -> argparse.ArgumentParser:
    footage = commands.add_parser(
        "footage", help="find, track and add the people of camera recordings"
    )
    footage.add_argument("--bundle", type=Path, required=True)
    footage.add_argument(
        "--out", required=True, metavar="STORE", help=f"{store_help} (created when absent)"
    )
    footage.add_argument("--camera", required=True, metavar="ID", help="the camera's id")
    footage.add_argument(
        "--start",
        metavar="TIME",
        help=f"recordings: when the first frame was taken: {TIME_HELP} (a live stream is "
        "timed by this machine's clock)",
    )
    footage.add_argument("--sample-fps", type=float, default=5.0, help="frames/s analysed (5)")
    footage.add_argument("--detector", default="hog", help=DETECTOR_HELP)
    footage.add_argument("--crops-per-track", type=int, default=3, metavar="N")
    footage.add_argument(
        "--crops",
        type=Path,
        metavar="DIR",
        help="where the crops are kept (the gallery shows them): default STORE.crops beside "
        "a folder or .db store",
    )
    footage.add_argument("--batch-size", type=int, default=64)
    footage.add_argument("--device", default="auto", help="auto | cpu | cuda (default: auto)")
    live = footage.add_argument_group("a live stream (rtsp://, rtmp://, http://, srt://)")
    live.add_argument(
        "--duration",
        type=float,
        metavar="SECONDS",
        help="follow the stream this long (default: until stopped with Ctrl-C or SIGTERM)",
    )
    live.add_argument(
        "--reconnect-tries",
        type=int,
        metavar="N",
        help="times in a row a broken stream is opened again before giving up (default: "
        "for as long as it takes, every 30 s at most: a camera may take minutes to reboot)",
    )
    footage.add_argument(
        "sources",
        nargs="+",
        metavar="VIDEO",
        help="recording files, or one live stream's URL; env:NAME reads it from the "
        "environment variable NAME (keeps a camera's password out of the process list)",
    )
    return footage


def _crops_root(args: argparse.Namespace) -> Path:
    if args.crops is not None:
        return args.crops
    if store_kind(args.out) == "milvus":
        raise FootageError("a Milvus server store needs --crops DIR for the crop images")
    return Path(str(args.out).rstrip("/") + ".crops")


def run(args: argparse.Namespace, progress: bool) -> dict[str, Any]:
    if args.batch_size < 1:
        raise FootageError(f"--batch-size must be at least 1, got {args.batch_size}")
    options = AnalysisOptions(sample_fps=args.sample_fps, crops_per_track=args.crops_per_track)
    args.sources = [_from_environment(s) for s in args.sources]
    for source in args.sources:
        if looks_like_url(source) and not is_stream(source):
            raise FootageError(
                f"{redact(source)}: not a stream this command reads (use one of "
                f"{', '.join(f'{s}://' for s in STREAM_SCHEMES)}, or a file)"
            )
    streams = [s for s in args.sources if is_stream(s)]
    if streams:
        return _follow(args, options, streams, progress)
    for flag, value in (("--duration", args.duration), ("--reconnect-tries", args.reconnect_tries)):
        if value is not None:
            raise FootageError(f"{flag} is for a live stream; a recording is read whole")
    if args.start is None:
        raise FootageError("--start is required for recordings: when their first frame was taken")
    try:
        start = parse_time(args.start)
    except ValueError as err:
        raise FootageError(f"--start: {err}") from None
    jobs = [
        FootageJob(Path(v), args.camera, start, args.detector, options, args.device)
        for v in args.sources
    ]
    crops = _crops_root(args)
    # Every recording is read and checked before the store is touched.
    prepared = [prepare(job, crops, progress) for job in jobs]
    bundle = _bundle(args)
    store = _open_store(args, bundle)
    reports = []
    with closing(store):
        for job, (key, entries, tracks, sampled) in zip(jobs, prepared, strict=True):
            added, already = add_entries(store, bundle, entries, args.batch_size, progress)
            log.info(
                "%s: %d tracks, %d crops, %d added", job.video, len(tracks), len(entries), added
            )
            report = FootageReport(key, summary(tracks), len(entries), added, already, sampled)
            reports.append({"video": str(job.video), **report.as_dict()})
        count = store.count()
    return {"store": str(args.out), "recordings": reports, "count": count}


def _from_environment(source: str) -> str:
    """``env:NAME`` → the value of the environment variable NAME; anything else as it is."""
    if not source.startswith("env:"):
        return source
    name = source.removeprefix("env:")
    value = os.environ.get(name, "").strip()
    if not value:
        raise FootageError(f"{source}: the environment variable {name} is not set")
    return value


def _bundle(args: argparse.Namespace) -> Bundle:
    from bundle.encoders import Bundle

    return Bundle(args.bundle, device=args.device)


def _open_store(args: argparse.Namespace, bundle: Bundle) -> GalleryStore:
    """The store, created when absent."""
    from index.stores import create_store, open_store

    try:
        store = open_store(args.out, bundle.fingerprint, bundle.dim, "never")
    except StoreUnavailableError:
        raise  # a server that is down now: creating a store would fail the same way
    except IndexStoreError:
        if store_kind(args.out) == "faiss" and Path(args.out).exists():
            raise
        store = create_store(args.out, bundle.fingerprint, bundle.dim, use_gpu="never")
    return store


def _follow(
    args: argparse.Namespace, options: AnalysisOptions, streams: list[str], progress: bool
) -> dict[str, Any]:
    """One live stream, followed until its duration is over or SIGINT/SIGTERM arrives: then the
    open tracks are added and the report printed."""
    if len(args.sources) > 1:
        raise FootageError("a live stream is followed alone: one stream per command")
    if args.start is not None:
        raise FootageError("--start is for recordings: a live stream is timed by this clock")
    job = check_stream_job(
        StreamJob(
            url=streams[0],
            camera=args.camera,
            detector=args.detector,
            options=options,
            duration=args.duration,
            reconnect_tries=args.reconnect_tries,
            device=args.device,
            batch_size=args.batch_size,
        )
    )
    detector = make_detector(job.detector, job.device)  # a wrong file fails before the bundle
    crops = _crops_root(args)
    bundle = _bundle(args)
    opened: list[GalleryStore] = []

    def store() -> GalleryStore:  # once the stream has delivered a frame
        if not opened:
            opened.append(_open_store(args, bundle))
        return opened[0]

    stop = threading.Event()

    def on_signal(*_: object) -> None:
        # Set from another thread: a handler runs in the main thread, which may hold the
        # Event's (non-reentrant) lock at that very moment.
        threading.Thread(target=stop.set, daemon=True).start()

    previous = {s: signal.signal(s, on_signal) for s in (SIGINT, SIGTERM)}
    try:
        report = follow_stream(store, bundle, job, crops, stop, progress, detector=detector)
        count = store().count()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for gallery in opened:
            gallery.close()
    return {"store": str(args.out), "stream": report.as_dict(), "count": count}
