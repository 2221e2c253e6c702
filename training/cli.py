"""Command line: ``python -m training train|evaluate|export``; a thin shell over the functions."""

from __future__ import annotations

import argparse
import json
import types
import typing
from pathlib import Path

from pydantic import ValidationError

from bundle.cli import OneLineParser, run_command, setup_logging
from bundle.commands import CHECK_BATCH_SIZES_ARG
from bundle.format import BundleError
from bundle.runtimes import RUNTIME_HELP, RUNTIMES, default_runtime
from training.config import TrainConfig, load_config
from training.data.records import DatasetError
from training.model.towers import TowerError

USER_ERRORS = (
    BundleError,
    DatasetError,
    TowerError,
    FileNotFoundError,
    ValueError,
    ValidationError,
)


def _flag_type(annotation: object) -> object:
    """argparse type for a config field: scalars parse as themselves, the rest as strings."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    base = args[0] if isinstance(annotation, types.UnionType) and len(args) == 1 else annotation
    if base is bool:
        return lambda s: s.lower() in ("1", "true", "yes", "on")
    if base in (int, float):
        return base
    return str


QUICK_GELU_CHOICES = ("auto", "true", "false")
QUICK_GELU_HELP = (
    "the towers' activation: auto takes it from what the weights record (OpenAI's formats: "
    "QuickGELU; an open_clip tag; an open_clip_config.json beside the file) and otherwise asks "
    "for true (QuickGELU) or false (GELU)"
)


def _add_train_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="YAML file of settings; flags override it")
    for name, field in TrainConfig.model_fields.items():
        flag = "--" + name.replace("_", "-")
        kwargs: dict = {"dest": name, "default": None, "help": field.description}
        if name == "image_size":
            kwargs.update(nargs=2, type=int, metavar=("H", "W"))
        elif name == "adam_betas":
            kwargs.update(nargs=2, type=float, metavar=("BETA1", "BETA2"))
        elif name == "quick_gelu":
            kwargs.update(type=str.lower, choices=QUICK_GELU_CHOICES, help=QUICK_GELU_HELP)
        else:
            kwargs["type"] = _flag_type(field.annotation)
        parser.add_argument(flag, **kwargs)


def _train(args: argparse.Namespace) -> int:
    from training.train import train

    overrides = {k: v for k, v in vars(args).items() if k in TrainConfig.model_fields}
    cfg = load_config(args.config, overrides)
    bundle = train(cfg)
    if bundle is not None:
        print(json.dumps({"bundle": str(bundle), "run": str(cfg.out)}))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from bundle.encoders import Bundle
    from bundle.format import read_meta
    from training.data.formats import load_records
    from training.evaluate import EvalSplit, evaluate_parts, evaluate_split

    runtime = default_runtime(args.runtime)
    # A parts bundle reports both scores (global-only and parts) side by side.
    parts = "parts" in read_meta(args.bundle).extra and runtime == "torch"
    bundle = Bundle(args.bundle, device=args.device, runtime=runtime, parts=parts)
    records = load_records(args.dataset, args.root, args.split)
    split = EvalSplit.from_records(records)
    if parts:
        metrics: dict = evaluate_parts(
            split, bundle, batch_size=args.batch_size, workers=args.workers, progress=not args.quiet
        )
    else:
        metrics = evaluate_split(
            split,
            lambda x: bundle.encode_images(x),
            lambda texts: bundle.encode_text(texts),
            bundle.preprocess,
            batch_size=args.batch_size,
            workers=args.workers,
            progress=not args.quiet,
        )
    metrics.update(
        split=args.split,
        dataset=args.dataset,
        fingerprint=bundle.fingerprint,
        selected_on=bundle.meta.extra.get("selected_on"),
        losses=bundle.meta.extra.get("losses"),
    )
    print(json.dumps(metrics))
    return 0


def _export(args: argparse.Namespace) -> int:
    from training.export import export_bundle, export_onnx_towers

    if args.checkpoint is not None:
        if args.out is None:
            raise ValueError("--checkpoint needs --out (the bundle folder to write)")
        # An INT8 export without its check set is refused before the bundle is written.
        given = not args.onnx_int8 or args.check_root is not None
        out = export_bundle(
            args.checkpoint, args.out, parts=args.parts, int8_check_root_given=given
        )
    else:
        if args.out is not None:
            raise ValueError("--out goes with --checkpoint; --bundle exports in place")
        if not (args.onnx or args.onnx_int8):
            raise ValueError("--bundle without --onnx or --onnx-int8 has nothing to export")
        out = args.bundle
    result: dict = {"bundle": str(out)}
    if args.onnx or args.onnx_int8:
        result["onnx"] = export_onnx_towers(
            out,
            int8=args.onnx_int8,
            check_root=args.check_root,
            min_overlap=args.min_overlap,
            batch_sizes=args.check_batch_sizes,
        )
    print(json.dumps(result))
    return 0


def _check_weights(args: argparse.Namespace) -> int:
    from training.check_weights import check_weights

    result = check_weights(
        args.path,
        model=args.model,
        image_size=tuple(args.image_size) if args.image_size else None,
        quick_gelu=None if args.quick_gelu == "auto" else args.quick_gelu == "true",
        dataset=args.dataset,
        root=args.root,
        split=args.split,
        device=args.device,
        batch_size=args.batch_size,
        workers=args.workers,
        progress=not args.quiet,
    )
    print(json.dumps(result))
    return 0


CHECK_WEIGHTS_HELP = """\
Load a CLIP weights file exactly as --pretrained PATH does (OpenAI's TorchScript ViT-B-16.pt,
a state dict, an open_clip checkpoint or .safetensors) and print one JSON object: its format,
its SHA-256 (named when it is the file OpenAI publishes), the architecture it holds, the model it
was loaded into with its activation (--quick-gelu) and why, the parameter count and the tensors
resized. With --dataset and --root it also reports the zero-shot text→image R1/R5/R10/mAP/mINP
of the untouched weights on --split. With OpenAI's real ViT-B-16 weights expect about 12.6 R1
on the CUHK-PEDES test split (the zero-shot CLIP figure of the VFE-TPS paper); far below that
points at the wrong file, preprocessing or QuickGELU setting."""


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m training", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    train_p = sub.add_parser("train", help="train VFE-TPS and export a bundle")
    _add_train_args(train_p)
    train_p.set_defaults(func=_train)

    eval_p = sub.add_parser("evaluate", help="text→image metrics of a bundle on a split (JSON)")
    eval_p.add_argument("--bundle", type=Path, required=True)
    eval_p.add_argument("--dataset", required=True)
    eval_p.add_argument("--root", type=Path, required=True)
    eval_p.add_argument("--split", default="test")
    eval_p.add_argument("--device", default="auto")
    eval_p.add_argument("--runtime", choices=RUNTIMES, help=RUNTIME_HELP)
    eval_p.add_argument("--batch-size", type=int, default=64)
    eval_p.add_argument("--workers", type=int, default=2)
    eval_p.add_argument("--quiet", action="store_true", help="no progress bars")
    eval_p.set_defaults(func=_evaluate)

    export_p = sub.add_parser(
        "export", help="write a bundle from any training checkpoint, and its ONNX graphs"
    )
    source = export_p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, help="training checkpoint (with --out)")
    source.add_argument("--bundle", type=Path, help="an existing bundle: add ONNX graphs to it")
    export_p.add_argument("--out", type=Path, help="the bundle folder to write (--checkpoint)")
    export_p.add_argument(
        "--parts",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="carry the part head (parts-mode inference); default: the run's --parts-export",
    )
    export_p.add_argument(
        "--onnx", action="store_true", help="also write text.onnx and image.onnx into the bundle"
    )
    export_p.add_argument(
        "--onnx-int8",
        action="store_true",
        help="as --onnx, plus an INT8 text tower kept only if its top-10 rankings agree with "
        "fp32's (≥ --min-overlap) on the test split of --check-root, at every batch size the "
        "service encodes at",
    )
    export_p.add_argument(
        "--check-root",
        type=Path,
        help="the bundle's own data set (its test split is ranked, read in the format the bundle "
        "was trained on); required unless the bundle is synthetic or untrained, where a "
        "synthetic set is the default",
    )
    export_p.add_argument("--min-overlap", type=float, default=None, help="default 0.99")
    export_p.add_argument("--check-batch-sizes", **CHECK_BATCH_SIZES_ARG)
    export_p.set_defaults(func=_export)

    check_p = sub.add_parser(
        "check-weights",
        help="describe a weights file and its zero-shot metrics (JSON)",
        description=CHECK_WEIGHTS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check_p.add_argument("path", type=Path, help="the weights file")
    check_p.add_argument("--model", default="ViT-B-16", help="architecture to load it into")
    check_p.add_argument(
        "--image-size",
        nargs=2,
        type=int,
        metavar=("H", "W"),
        help="model input size (default: the model's own, 384 128 for ViT-B-16)",
    )
    check_p.add_argument(
        "--quick-gelu",
        type=str.lower,
        choices=QUICK_GELU_CHOICES,
        default="auto",
        help=QUICK_GELU_HELP,
    )
    check_p.add_argument("--dataset", help="evaluate zero-shot on this dataset (with --root)")
    check_p.add_argument("--root", type=Path)
    check_p.add_argument("--split", default="test")
    check_p.add_argument("--device", default="auto", help="auto, cpu or cuda (zero-shot only)")
    check_p.add_argument("--batch-size", type=int, default=64)
    check_p.add_argument("--workers", type=int, default=2, help="image decoding processes")
    check_p.add_argument("--quiet", action="store_true", help="no progress bars")
    check_p.set_defaults(func=_check_weights)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(quiet=getattr(args, "quiet", False))
    return run_command(lambda: args.func(args), USER_ERRORS)
