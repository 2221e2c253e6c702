"""``python -m index footage``: ingest recordings into a gallery store (see docs/footage.md)."""

from __future__ import annotations

import argparse
import logging
from contextlib import closing
from pathlib import Path
from typing import Any

from footage.analysis import AnalysisOptions
from footage.detectors import DETECTOR_HELP
from footage.errors import FootageError
from footage.job import FootageJob, FootageReport, add_entries, prepare, summary
from index.errors import IndexStoreError
from index.metadata_fields import TIME_HELP, parse_time
from index.stores import store_kind

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
        required=True,
        metavar="TIME",
        help=f"when the first frame was taken: {TIME_HELP}",
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
    footage.add_argument("videos", nargs="+", type=Path, metavar="VIDEO")
    return footage


def _crops_root(args: argparse.Namespace) -> Path:
    if args.crops is not None:
        return args.crops
    if store_kind(args.out) == "milvus":
        raise FootageError("a Milvus server store needs --crops DIR for the crop images")
    return Path(str(args.out).rstrip("/") + ".crops")


def run(args: argparse.Namespace, progress: bool) -> dict[str, Any]:
    try:
        start = parse_time(args.start)
    except ValueError as err:
        raise FootageError(f"--start: {err}") from None
    if args.batch_size < 1:
        raise FootageError(f"--batch-size must be at least 1, got {args.batch_size}")
    options = AnalysisOptions(sample_fps=args.sample_fps, crops_per_track=args.crops_per_track)
    jobs = [FootageJob(v, args.camera, start, args.detector, options) for v in args.videos]
    crops = _crops_root(args)
    # Every recording is read and checked before the store is touched.
    prepared = [prepare(job, crops, progress) for job in jobs]
    from bundle.encoders import Bundle
    from index.stores import create_store, open_store

    bundle = Bundle(args.bundle, device=args.device)
    try:
        store = open_store(args.out, bundle.fingerprint, bundle.dim, "never")
    except IndexStoreError:
        if store_kind(args.out) == "faiss" and Path(args.out).exists():
            raise
        store = create_store(args.out, bundle.fingerprint, bundle.dim, use_gpu="never")
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
