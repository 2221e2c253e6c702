"""``python -m bundle``: work on an existing bundle folder (today: export its towers to ONNX).

    python -m bundle export-onnx BUNDLE
    python -m bundle export-onnx BUNDLE --int8 --check-captions Q.txt --check-images DIR

The INT8 text tower is kept only if its top-10 rankings agree with fp32's and a caption's vector
is the same alone and in a batch (bundle/int8.py), over the check captions (one per line) against
the check images (a folder, searched recursively): take both from the model's own data set.
``python -m training export --bundle BUNDLE --onnx-int8 --check-root DIR`` reads them from a data
set's test split instead. One JSON object on stdout; errors in one ``error:`` line, exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bundle.cli import OneLineParser, run_command, setup_logging
from bundle.format import BundleError

# Shared with `python -m training export`: the batch sizes the INT8 check encodes at.
CHECK_BATCH_SIZES_ARG: dict[str, Any] = {
    "type": int,
    "nargs": "+",
    "metavar": "N",
    "default": None,
    "help": "batch sizes the INT8 check encodes the captions at, each compared with batch 1 "
    "(default 1 8 64: one query, TPS_BATCH_MAX_SIZE, TPS_MAX_BATCH_QUERIES)",
}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def encode_image_files(bundle: Any, paths: Sequence[Path], batch: int = 32) -> Any:
    """Normalised vectors of image files, decoded the one way every path decodes them."""
    import numpy as np
    import torch

    from bundle.images import decode_file

    parts = []
    for start in range(0, len(paths), batch):
        images = [bundle.preprocess(decode_file(p)) for p in paths[start : start + batch]]
        parts.append(bundle.encode_images(torch.stack(images)))
    return np.concatenate(parts) if parts else np.zeros((0, bundle.dim), np.float32)


def export_with_checks(
    bundle_dir: Path,
    int8: bool = False,
    captions: Sequence[str] = (),
    image_paths: Sequence[Path] = (),
    min_overlap: float | None = None,
    batch_sizes: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Export both towers; with ``int8`` also the INT8 text tower, checked on these captions
    against these images at these batch sizes (default: the service's, CHECK_BATCHES).
    Returns what was written and the checks' figures."""
    from bundle.encoders import Bundle
    from bundle.int8 import CHECK_BATCHES, MIN_OVERLAP, quantize_text
    from bundle.onnx_export import export_onnx

    record = export_onnx(bundle_dir)
    result: dict[str, Any] = {
        "bundle": str(bundle_dir),
        "exported_from": record.exported_from,
        "graphs": record.to_json()["graphs"],
        "check": record.extra["check"],
    }
    if int8:
        if not captions or not image_paths:
            raise BundleError("the INT8 check needs captions and images to rank")
        bundle = Bundle(bundle_dir, device="cpu", runtime="onnx")
        gallery = encode_image_files(bundle, list(image_paths))
        threshold = MIN_OVERLAP if min_overlap is None else min_overlap
        sizes = CHECK_BATCHES if batch_sizes is None else tuple(batch_sizes)
        result["int8"] = quantize_text(
            bundle, list(captions), gallery, threshold, batch_sizes=sizes
        )
    return result


def _images_under(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise BundleError(f"--check-images {folder}: no such folder")
    found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not found:
        raise BundleError(f"--check-images {folder}: no images in it")
    return found


def _export_onnx(args: argparse.Namespace) -> int:
    captions: list[str] = []
    images: list[Path] = []
    if args.int8:
        if args.check_captions is None or args.check_images is None:
            raise BundleError(
                "--int8 needs --check-captions FILE and --check-images DIR to check the INT8 "
                "rankings (or use `python -m training export --bundle B --onnx-int8`, which "
                "checks on the synthetic test split)"
            )
        captions = [c for c in args.check_captions.read_text().splitlines() if c.strip()]
        images = _images_under(args.check_images)
    result = export_with_checks(
        args.bundle, args.int8, captions, images, args.min_overlap, args.check_batch_sizes
    )
    print(json.dumps(result))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m bundle", description=__doc__.splitlines()[0])
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings only")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    export = sub.add_parser(
        "export-onnx", help="write the towers as ONNX graphs into the bundle (JSON)"
    )
    export.add_argument("bundle", type=Path, metavar="BUNDLE")
    export.add_argument("--int8", action="store_true", help="also an INT8 text tower (CPU)")
    export.add_argument("--check-captions", type=Path, metavar="FILE", help="one per line")
    export.add_argument("--check-images", type=Path, metavar="DIR", help="the check gallery")
    export.add_argument(
        "--min-overlap",
        type=float,
        default=None,
        help="top-10 overlap with fp32 the INT8 tower must reach (default 0.99)",
    )
    export.add_argument("--check-batch-sizes", **CHECK_BATCH_SIZES_ARG)
    export.set_defaults(func=_export_onnx)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(quiet=args.quiet)
    from bundle.images import ImageDecodeError

    user_errors = (BundleError, ImageDecodeError, OSError, ValueError)
    return run_command(lambda: args.func(args), user_errors)


if __name__ == "__main__":
    sys.exit(main())
