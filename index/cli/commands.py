"""``python -m index``: build, update, inspect, query and migrate gallery stores.

A store is named the way the service's setting names it: a folder is the FAISS + SQLite index,
``milvus://HOST:PORT[/COLLECTION]`` a Milvus server, ``FILE.db`` a milvus-lite file. Results go
to stdout as JSON; logs and the progress bar go to stderr. A bad input ends with one
``error: ...`` line on stderr, a non-zero exit, and the store unchanged.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any

import index.cli.inputs as cli_inputs
from bundle.cli import OneLineParser, run_command, setup_logging
from bundle.format import BundleError
from bundle.runtimes import (
    PRECISION_HELP,
    PRECISIONS,
    RUNTIME_HELP,
    RUNTIMES,
    default_precision,
    default_runtime,
    runtime_precision,
)
from index.encoding import Encoding, encoding_of
from index.errors import IndexStoreError
from index.faiss.backend import KINDS, USE_GPU
from index.ingest.sources import ALL_SPLITS, DATASETS, GallerySourceError
from index.metadata_fields import TIME_HELP
from index.search.query_vector import DEFAULT_ALPHA, DEFAULT_BETA
from index.stores import store_kind

if TYPE_CHECKING:
    from bundle.encoders import Bundle
    from index.gallery_store import GalleryStore

log = logging.getLogger("index")

STORE_HELP = "index folder, milvus://HOST:PORT[/COLLECTION], or a milvus-lite FILE.db"
METADATA_HELP = (
    "per-image metadata: JSONL, or CSV by its .csv suffix, one row per image keyed by 'file' "
    "(its path relative to --images or --root, or its bare name when unique), with optional "
    "person_id (wins over the folder's or data set's), camera_id, captured_at "
    f"({TIME_HELP}) and tags (a JSON list in JSONL, ';'-separated in CSV)"
)


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
    parser.add_argument("--metadata", type=Path, metavar="FILE", help=METADATA_HELP)


def _add_store(parser: argparse.ArgumentParser, name: str = "index") -> None:
    parser.add_argument(name, metavar="STORE", help=STORE_HELP)


def _add_filter(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("filters (all must hold; a repeated flag matches any value)")
    group.add_argument("--camera", dest="cameras", action="append", metavar="ID")
    group.add_argument("--person", dest="persons", action="append", metavar="ID")
    group.add_argument(
        "--tag", dest="tags", action="append", metavar="T", help="images carrying every tag given"
    )
    group.add_argument("--after", metavar="TIME", help=f"captured at or after TIME: {TIME_HELP}")
    group.add_argument("--before", metavar="TIME", help="captured at or before TIME")


def _add_examples(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "search by example (query = text + alpha * mean(positives) - beta * mean(negatives))"
    )
    for flag, whose in (("--positive", "the person sought"), ("--negative", "someone else")):
        group.add_argument(
            flag,
            dest=f"{flag[2:]}s",
            action="append",
            default=[],
            metavar="ID",
            help=f"a gallery image of {whose} (repeatable)",
        )
    group.add_argument("--image", type=Path, metavar="PATH", help="a photo of the person sought")
    group.add_argument("--alpha", type=float, default=DEFAULT_ALPHA, help="positives' weight")
    group.add_argument("--beta", type=float, default=DEFAULT_BETA, help="negatives' weight")
    group.add_argument(
        "--keep-examples", action="store_true", help="let the example images appear in the results"
    )


def _add_encoding(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda (default: auto)")
    parser.add_argument("--runtime", choices=RUNTIMES, help=RUNTIME_HELP)
    parser.add_argument("--precision", choices=PRECISIONS, help=PRECISION_HELP)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="image decode processes")


def _add_parts(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--parts",
        action="store_true",
        help="parts mode: the bundle's part head adds M coarse and K fine blocks to every vector "
        "(a parts bundle, torch runtime; the index records the layout and needs it from then on)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m index", description=__doc__.splitlines()[0])
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings only, no progress")
    parser.add_argument(
        "--group-readable",
        action="store_true",
        help="files it creates are readable by the group too (default: the owner's alone)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    build = commands.add_parser("build", help="encode a gallery into a new index")
    build.add_argument("--bundle", type=Path, required=True)
    _add_source(build)
    build.add_argument("--out", required=True, metavar="STORE", help=f"the new store: {STORE_HELP}")
    build.add_argument("--kind", choices=KINDS, default="flat")
    _add_encoding(build)
    _add_parts(build)

    add = commands.add_parser("add", help="encode images and add them to an index")
    _add_store(add)
    add.add_argument("--bundle", type=Path, required=True)
    _add_source(add)
    _add_encoding(add)
    _add_parts(add)

    remove = commands.add_parser("remove", help="remove images by image_id")
    _add_store(remove)
    remove.add_argument("image_ids", nargs="+", metavar="IMAGE_ID")

    info = commands.add_parser("info", help="print an index's summary (and store kind) as JSON")
    _add_store(info)

    search = commands.add_parser(
        "search", help="rank the gallery for a sentence, example images, or both"
    )
    _add_store(search)
    search.add_argument("--bundle", type=Path, required=True)
    search.add_argument("--query", help="the description to search for")
    search.add_argument("-k", type=int, default=10, help="results to return (default: 10)")
    _add_examples(search)
    search.add_argument("--device", default="auto", help="text encoder device")
    search.add_argument("--runtime", choices=RUNTIMES, help=RUNTIME_HELP)
    search.add_argument("--precision", choices=PRECISIONS, help=PRECISION_HELP)
    search.add_argument("--use-gpu", choices=USE_GPU, default="auto", help="FAISS search on GPU")
    _add_parts(search)
    search.add_argument(
        "--weights",
        type=_part_weights,
        metavar="NAME=W,...",
        help="with --parts: part weights of this query, e.g. global=1,coarse=0.5,fine=2 "
        "(names left out keep the bundle's)",
    )
    _add_filter(search)

    rebuild = commands.add_parser("rebuild", help="re-encode every image with another bundle")
    _add_store(rebuild)
    rebuild.add_argument("--bundle", type=Path, required=True, help="the new bundle")
    rebuild.add_argument(
        "--out",
        metavar="STORE",
        help="write a new store here instead of in place (needed when Milvus is involved)",
    )
    rebuild.add_argument("--kind", choices=KINDS, help="change the index kind")
    rebuild.add_argument(
        "--drop-unreadable", action="store_true", help="drop items whose file is gone"
    )
    rebuild.add_argument(
        "--images-root",
        type=Path,
        help="the image folder that relative paths (uploads, migrated galleries) are under",
    )
    _add_encoding(rebuild)

    migrate = commands.add_parser("migrate", help="copy every item of one store into another")
    _add_store(migrate, "src")
    migrate.add_argument("dst", metavar="STORE", help="the store to copy into")
    migrate.add_argument(
        "--verify", type=int, default=100, metavar="N", help="items checked afterwards (0: none)"
    )
    migrate.add_argument("--batch-size", type=int, default=1000, metavar="B")
    migrate.add_argument(
        "--images-root",
        metavar="DIR",
        help="the source's image folder (TPS_IMAGE_DIR): image paths inside it are stored "
        "relative to it, and each host reads them from its own image folder",
    )
    from footage.cli import add_parser as add_footage  # the one command of the footage package

    add_footage(commands, STORE_HELP)
    return parser


# --- commands ---------------------------------------------------------------------------------


def _check_encoding(args: argparse.Namespace) -> None:
    if args.batch_size < 1:
        raise GallerySourceError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.workers < 0:
        raise GallerySourceError(f"--workers must be 0 or more, got {args.workers}")


def _encoding(args: argparse.Namespace) -> Encoding:
    """How the runtime these flags pick will encode, known before the model loads."""
    runtime = default_runtime(args.runtime)
    precision = runtime_precision(runtime, args.device, default_precision(args.precision))
    if not getattr(args, "parts", False):
        return Encoding(precision)
    from bundle.format import read_meta
    from bundle.parts_encoder import check_parts_runtime, layout_of

    check_parts_runtime(runtime)
    return Encoding(precision, layout_of(read_meta(args.bundle)).name)


def _load_bundle(
    path: Path,
    device: str,
    runtime: str | None = None,
    precision: str | None = None,
    parts: bool = False,
) -> Bundle:
    from bundle.encoders import Bundle

    bundle = Bundle(
        path,
        device=device,
        runtime=default_runtime(runtime),
        precision=default_precision(precision),
        parts=parts,
    )
    log.info(
        "bundle %s (%s, dim %d) on %s, runtime %s, %s",
        path,
        bundle.fingerprint[:12],
        bundle.dim,
        bundle.device,
        bundle.runtime_name,
        bundle.precision,
    )
    return bundle


def _open(spec: str, use_gpu: str = "never") -> GalleryStore:
    from index.stores import open_store

    return open_store(spec, use_gpu=use_gpu)


def _open_for(
    spec: str, bundle: Path, use_gpu: str = "never", encoding: Encoding | None = None
) -> GalleryStore:
    """Open a store checked against a bundle's metadata and the runtime's encoding, before
    loading the model itself."""
    from bundle.format import read_meta
    from index.stores import open_store

    meta = read_meta(bundle)
    dim = meta.embed_dim
    if encoding is not None and encoding.layout != "global":
        from bundle.parts_encoder import layout_of

        dim = layout_of(meta).dim
    return open_store(spec, meta.fingerprint, dim, use_gpu, encoding=encoding)


def _ingest_report(index: GalleryStore, report: Any) -> dict[str, Any]:
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
        "path": index.location,
        "added": len(report.added),
        "duplicates": report.duplicates,
        "failures": [{"path": p, "reason": r} for p, r in report.failures],
        "count": index.count(),
        "seconds": round(report.seconds, 3),
    }


def _nothing_readable(report: Any) -> bool:
    return not report.added and not report.duplicates and bool(report.failures)


def cmd_build(args: argparse.Namespace) -> Any:
    from index.store import GalleryIndex, check_new_location, staging

    _check_encoding(args)
    if store_kind(args.out) == "faiss":
        check_new_location(Path(args.out))
    entries = cli_inputs.entries(args)
    if store_kind(args.out) != "faiss":
        _check_absent(args.out)
    from index.ingest.add import ingest, ingest_new  # torch: only once the cheap checks have passed
    from index.stores import create_store

    bundle = _load_bundle(args.bundle, args.device, args.runtime, args.precision, args.parts)
    recorded = encoding_of(bundle)
    encoding = (args.batch_size, args.workers, not args.quiet)
    if store_kind(args.out) == "faiss":
        # Assembled aside and put in place whole: a failed build leaves nothing at --out.
        with (
            staging(Path(args.out)) as tmp,
            GalleryIndex.create(
                tmp, bundle.fingerprint, bundle.dim, args.kind, "never", encoding=recorded
            ) as index,
        ):
            report = ingest(index, bundle, entries, *encoding)
            if _nothing_readable(report):
                raise IndexStoreError(f"none of the {len(entries)} images could be read")
            summary = _ingest_report(index, report)
    else:
        store, report = ingest_new(
            lambda: create_store(
                args.out, bundle.fingerprint, bundle.dim, args.kind, encoding=recorded
            ),
            bundle,
            entries,
            *encoding,
        )
        with closing(store):
            summary = _ingest_report(store, report)
    summary["path"] = str(args.out)
    return summary


def _check_absent(spec: str) -> None:
    """Refuse a Milvus store that exists before encoding anything (creating it would)."""
    try:
        _open(spec).close()
    except IndexStoreError:
        return  # absent (or unreachable: creating it says so)
    raise IndexStoreError(f"{spec} already holds a gallery store")


def cmd_add(args: argparse.Namespace) -> Any:
    _check_encoding(args)
    entries = cli_inputs.entries(args)
    with closing(_open_for(args.index, args.bundle, encoding=_encoding(args))) as index:
        from index.ingest.add import ingest

        bundle = _load_bundle(args.bundle, args.device, args.runtime, args.precision, args.parts)
        report = ingest(index, bundle, entries, args.batch_size, args.workers, not args.quiet)
        if _nothing_readable(report):
            raise IndexStoreError(f"none of the {len(entries)} images could be read")
        return _ingest_report(index, report)


def cmd_remove(args: argparse.Namespace) -> Any:
    with closing(_open(args.index)) as index:
        missing = [i for i in dict.fromkeys(args.image_ids) if index.get(i) is None]
        if missing:
            raise IndexStoreError(f"not in the index: {', '.join(missing)} (nothing removed)")
        removed = index.remove(args.image_ids)
        return {"removed": removed, "count": index.count()}


def cmd_info(args: argparse.Namespace) -> Any:
    with closing(_open(args.index)) as index:
        stats = index.stats()
    # "store" is the engine's own name; "store_kind" how the spec was read (milvus-lite is the
    # Milvus engine in a local file).
    return {**stats, "store_kind": store_kind(args.index)}


def _part_weights(text: str) -> dict[str, float]:
    """``global=1,coarse=0.5`` → {"global": 1.0, "coarse": 0.5} (checked later, with the rest)."""
    weights: dict[str, float] = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        try:
            weights[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise argparse.ArgumentTypeError(f"not NAME=NUMBER: {item!r}")
    return weights


def cmd_search(args: argparse.Namespace) -> Any:
    from index.cli.example_search import ExampleQuery, search_by_example

    if args.k < 1:
        raise GallerySourceError(f"-k must be at least 1, got {args.k}")
    query = ExampleQuery(
        text=args.query,
        positive_ids=tuple(args.positives),
        negative_ids=tuple(args.negatives),
        image=args.image,
        alpha=args.alpha,
        beta=args.beta,
        keep_examples=args.keep_examples,
        weights=args.weights,
    )
    if args.weights is not None and not args.parts:
        raise GallerySourceError("--weights apply in parts mode only: add --parts")
    query.check()
    where = cli_inputs.search_filter(args)
    with closing(_open_for(args.index, args.bundle, args.use_gpu, _encoding(args))) as index:
        bundle = _load_bundle(args.bundle, args.device, args.runtime, args.precision, args.parts)
        hits = search_by_example(index, bundle, query, args.k, where)
    return [{"image_id": h.image_id, "person_id": h.person_id, "score": h.score} for h in hits]


def cmd_rebuild(args: argparse.Namespace) -> Any:
    from index.store import check_new_location, rebuild

    _check_encoding(args)
    with closing(_open(args.index)) as source:  # fail on a bad store before the model loads
        if source.encoding.layout != "global":
            # Re-encoding in parts mode would need the new bundle's head to match the layout;
            # a global rebuild would silently turn a parts gallery into a global one.
            raise IndexStoreError(
                f"{args.index} holds parts vectors ({source.encoding.layout}); rebuild "
                "re-encodes global galleries only: build a new index with --parts instead"
            )
    kinds = {store_kind(args.index), store_kind(args.out or args.index)}
    if args.out is None and kinds != {"faiss"}:
        raise IndexStoreError("a Milvus store is rebuilt into a new store: give --out")
    if args.out is not None and store_kind(args.out) == "faiss":
        check_new_location(Path(args.out))
    bundle = _load_bundle(args.bundle, args.device, args.runtime, args.precision)
    options = {
        "kind": args.kind,
        "batch_size": args.batch_size,
        "workers": args.workers,
        "progress": not args.quiet,
        "drop_unreadable": args.drop_unreadable,
        "images_root": args.images_root,
    }
    if kinds == {"faiss"}:
        out = None if args.out is None else Path(args.out)
        with rebuild(Path(args.index), bundle, out, use_gpu="never", **options) as index:
            return index.stats()
    from index.cli.rebuild_store import rebuild_into

    with closing(rebuild_into(args.index, bundle, args.out, **options)) as store:
        return store.stats()


def cmd_migrate(args: argparse.Namespace) -> Any:
    if args.verify < 0:
        raise GallerySourceError(f"--verify must be 0 or more, got {args.verify}")
    if args.batch_size < 1:
        raise GallerySourceError(f"--batch-size must be at least 1, got {args.batch_size}")
    try:
        from index.cli.migrate import migrate  # the Milvus client: only for this command
    except ModuleNotFoundError as err:
        if err.name != "index.cli.migrate":
            raise
        raise IndexStoreError("this installation has no store migration (index.migrate)") from None
    images = None if args.images_root is None else Path(args.images_root)
    return migrate(
        args.src, args.dst, verify=args.verify, batch_size=args.batch_size, images_root=images
    )


def cmd_footage(args: argparse.Namespace) -> Any:
    from footage.cli import run

    return run(args, progress=not args.quiet)


COMMANDS = {
    "build": cmd_build,
    "add": cmd_add,
    "remove": cmd_remove,
    "info": cmd_info,
    "search": cmd_search,
    "rebuild": cmd_rebuild,
    "migrate": cmd_migrate,
    "footage": cmd_footage,
}


def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean bad input or a bad file, reported in one line (others keep a traceback)."""
    return (IndexStoreError, GallerySourceError, BundleError, OSError)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(quiet=args.quiet)

    def run() -> int:
        result = COMMANDS[args.command](args)
        json.dump(result, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
        return 0

    # A gallery holds footage of people and who they are: what this command creates (vectors,
    # index.json, the manifest) is its owner's alone, or with --group-readable its group's too.
    # Every file of the index package takes 0o666 less the umask (bundle/fsio.py, SQLite).
    private = 0o027 if args.group_readable else 0o077
    previous = os.umask(0o077)
    os.umask(previous | private)
    try:
        return run_command(run, _user_errors())
    finally:
        os.umask(previous)
