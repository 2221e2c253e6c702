"""``python -m index``: build, update, inspect and query gallery indices.

Results go to stdout as JSON; logs and the progress bar go to stderr. A bad input ends with one
``error: ...`` line on stderr, a non-zero exit, and the index unchanged.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bundle.cli import OneLineParser, run_command, setup_logging
from bundle.format import BundleError
from index.errors import IndexStoreError
from index.faiss_backend import KINDS, USE_GPU
from index.gallery_sources import ALL_SPLITS, DATASETS, GalleryEntry, GallerySourceError

if TYPE_CHECKING:
    from bundle.encoders import Bundle
    from index.store import GalleryIndex

log = logging.getLogger("index")


def _add_source(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", type=Path, help="folder of images (searched recursively)")
    source.add_argument("--dataset", choices=DATASETS, help="benchmark annotation format")
    parser.add_argument("--root", type=Path, help="dataset root (with --dataset)")
    parser.add_argument(
        "--split", default="test", help=f"dataset split, or {ALL_SPLITS!r} (default: test)"
    )
    parser.add_argument(
        "--person-from-dir",
        action="store_true",
        help="with --images: person_id = the name of each image's folder",
    )


def _add_encoding(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda (default: auto)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="image decode processes")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m index", description=__doc__.splitlines()[0])
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings only, no progress")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    build = commands.add_parser("build", help="encode a gallery into a new index")
    build.add_argument("--bundle", type=Path, required=True)
    _add_source(build)
    build.add_argument("--out", type=Path, required=True, help="new index folder")
    build.add_argument("--kind", choices=KINDS, default="flat")
    _add_encoding(build)

    add = commands.add_parser("add", help="encode images and add them to an index")
    add.add_argument("index", type=Path)
    add.add_argument("--bundle", type=Path, required=True)
    _add_source(add)
    _add_encoding(add)

    remove = commands.add_parser("remove", help="remove images by image_id")
    remove.add_argument("index", type=Path)
    remove.add_argument("image_ids", nargs="+", metavar="IMAGE_ID")

    info = commands.add_parser("info", help="print an index's summary as JSON")
    info.add_argument("index", type=Path)

    search = commands.add_parser("search", help="rank the gallery for a sentence")
    search.add_argument("index", type=Path)
    search.add_argument("--bundle", type=Path, required=True)
    search.add_argument("--query", required=True, help="the description to search for")
    search.add_argument("-k", type=int, default=10, help="results to return (default: 10)")
    search.add_argument("--device", default="auto", help="text encoder device")
    search.add_argument("--use-gpu", choices=USE_GPU, default="auto", help="FAISS search on GPU")

    rebuild = commands.add_parser("rebuild", help="re-encode every image with another bundle")
    rebuild.add_argument("index", type=Path)
    rebuild.add_argument("--bundle", type=Path, required=True, help="the new bundle")
    rebuild.add_argument("--out", type=Path, help="write a new index here instead of in place")
    rebuild.add_argument("--kind", choices=KINDS, help="change the index kind")
    rebuild.add_argument(
        "--drop-unreadable", action="store_true", help="drop items whose file is gone"
    )
    _add_encoding(rebuild)
    return parser


# --- commands ---------------------------------------------------------------------------------


def _entries(args: argparse.Namespace) -> list[GalleryEntry]:
    from index.gallery_sources import from_dataset, from_folder

    if args.images is not None:
        if args.root is not None:
            raise GallerySourceError("--root goes with --dataset, not --images")
        return from_folder(args.images, person_from_dir=args.person_from_dir)
    if args.root is None:
        raise GallerySourceError("--dataset needs --root")
    if args.person_from_dir:
        raise GallerySourceError("--person-from-dir goes with --images")
    return from_dataset(args.dataset, args.root, args.split)


def _check_encoding(args: argparse.Namespace) -> None:
    if args.batch_size < 1:
        raise GallerySourceError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.workers < 0:
        raise GallerySourceError(f"--workers must be 0 or more, got {args.workers}")


def _load_bundle(path: Path, device: str) -> Bundle:
    from bundle.encoders import Bundle

    bundle = Bundle(path, device=device)
    log.info(
        "bundle %s (%s, dim %d) on %s", path, bundle.fingerprint[:12], bundle.dim, bundle.device
    )
    return bundle


def _open_for(index: Path, bundle: Path, use_gpu: str = "never") -> GalleryIndex:
    """Open an index checked against a bundle's metadata, before loading the model itself."""
    from bundle.format import read_meta
    from index.store import GalleryIndex

    meta = read_meta(bundle)
    return GalleryIndex.open(index, meta.fingerprint, meta.embed_dim, use_gpu)


def _ingest_report(index: GalleryIndex, report: Any) -> dict[str, Any]:
    for path, reason in report.failures:
        log.warning("unreadable: %s (%s)", path, reason)
    log.info(
        "added %d, duplicates %d, unreadable %d in %.1fs",
        len(report.added),
        len(report.duplicates),
        len(report.failures),
        report.seconds,
    )
    return {
        "path": str(index.path),
        "added": len(report.added),
        "duplicates": report.duplicates,
        "failures": [{"path": p, "reason": r} for p, r in report.failures],
        "count": index.stats()["count"],
        "seconds": round(report.seconds, 3),
    }


def _nothing_readable(report: Any) -> bool:
    return not report.added and not report.duplicates and bool(report.failures)


def cmd_build(args: argparse.Namespace) -> Any:
    from index.store import GalleryIndex, check_new_location, staging

    _check_encoding(args)
    check_new_location(args.out)
    entries = _entries(args)
    from index.ingest import ingest  # torch: only once the cheap checks have passed

    bundle = _load_bundle(args.bundle, args.device)
    with (
        staging(args.out) as tmp,
        GalleryIndex.create(tmp, bundle.fingerprint, bundle.dim, args.kind, "never") as index,
    ):
        report = ingest(index, bundle, entries, args.batch_size, args.workers, not args.quiet)
        if _nothing_readable(report):
            raise IndexStoreError(f"none of the {len(entries)} images could be read")
        summary = _ingest_report(index, report)
    summary["path"] = str(args.out)
    return summary


def cmd_add(args: argparse.Namespace) -> Any:
    _check_encoding(args)
    entries = _entries(args)
    with _open_for(args.index, args.bundle) as index:
        from index.ingest import ingest

        bundle = _load_bundle(args.bundle, args.device)
        report = ingest(index, bundle, entries, args.batch_size, args.workers, not args.quiet)
        if _nothing_readable(report):
            raise IndexStoreError(f"none of the {len(entries)} images could be read")
        return _ingest_report(index, report)


def cmd_remove(args: argparse.Namespace) -> Any:
    from index.store import GalleryIndex

    with GalleryIndex.open(args.index, use_gpu="never") as index:
        missing = [i for i in dict.fromkeys(args.image_ids) if index.get(i) is None]
        if missing:
            raise IndexStoreError(f"not in the index: {', '.join(missing)} (nothing removed)")
        removed = index.remove(args.image_ids)
        return {"removed": removed, "count": index.stats()["count"]}


def cmd_info(args: argparse.Namespace) -> Any:
    from index.store import GalleryIndex

    with GalleryIndex.open(args.index, use_gpu="never") as index:
        return index.stats()


def cmd_search(args: argparse.Namespace) -> Any:
    if args.k < 1:
        raise GallerySourceError(f"-k must be at least 1, got {args.k}")
    if not args.query.strip():
        raise GallerySourceError("--query is empty")
    with _open_for(args.index, args.bundle, args.use_gpu) as index:
        bundle = _load_bundle(args.bundle, args.device)
        hits = index.search(bundle.encode_text([args.query]), args.k)[0]
    return [{"image_id": h.image_id, "person_id": h.person_id, "score": h.score} for h in hits]


def cmd_rebuild(args: argparse.Namespace) -> Any:
    from index.store import GalleryIndex, check_new_location, rebuild

    _check_encoding(args)
    GalleryIndex.open(args.index, use_gpu="never").close()  # fail on a bad index before the model
    if args.out is not None:
        check_new_location(args.out)
    bundle = _load_bundle(args.bundle, args.device)
    with rebuild(
        args.index,
        bundle,
        args.out,
        kind=args.kind,
        batch_size=args.batch_size,
        workers=args.workers,
        progress=not args.quiet,
        drop_unreadable=args.drop_unreadable,
        use_gpu="never",
    ) as index:
        return index.stats()


COMMANDS = {
    "build": cmd_build,
    "add": cmd_add,
    "remove": cmd_remove,
    "info": cmd_info,
    "search": cmd_search,
    "rebuild": cmd_rebuild,
}


def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean bad input or a bad file, reported in one line (others keep a traceback)."""
    return (IndexStoreError, GallerySourceError, BundleError, OSError)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(quiet=args.quiet)

    def run() -> int:
        result = COMMANDS[args.command](args)
        json.dump(result, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0

    return run_command(run, _user_errors())
