"""``python -m training check-weights``: what a weights file holds, and how it does zero-shot.

Loads the file exactly as ``--pretrained PATH`` would, prints one JSON object (with the file's
SHA-256, named when it is a digest OpenAI publishes), and, given a dataset split, evaluates the
untouched CLIP towers on it (text→image R1/R5/R10/mAP/mINP).
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

import torch

from bundle.format import sha256_file
from bundle.openclip_import import import_open_clip
from training.model.activation import Activation
from training.model.towers import TowerError, TowerSpec, build_towers_with_report
from training.model.weights import Arch, WeightsReport

log = logging.getLogger(__name__)

METRIC_KEYS = ("R1", "R5", "R10", "mAP", "mINP")
# OpenAI's clip package downloads each model from a URL holding the file's SHA-256 and checks it
# (clip/clip.py: _MODELS and _download; open_clip's pretrained.py carries the same URL).
OPENAI_PUBLISHED = {
    "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f": (
        "OpenAI's CLIP ViT-B/16 (ViT-B-16.pt as OpenAI publishes it)"
    ),
}


def published_as(sha256: str) -> str | None:
    """The published file a digest belongs to, or None."""
    return OPENAI_PUBLISHED.get(sha256.lower())


def _arch_json(arch: Arch) -> dict:
    return {**asdict(arch), "description": arch.describe()}


def report_json(
    report: WeightsReport, spec: TowerSpec, activation: Activation, sha256: str
) -> dict:
    """The JSON body of check-weights for a loaded file (metrics are added by the caller)."""
    return {
        "path": report.path,
        "sha256": sha256,
        "published_as": published_as(sha256),
        "format": report.format,
        "tensors": report.tensors,
        "architecture": _arch_json(report.file_arch),
        "model": {
            "name": spec.model,
            "image_size": list(spec.resolved_image_size()),
            "quick_gelu": activation.quick_gelu,
            "quick_gelu_source": activation.source,
            "architecture": _arch_json(report.model_arch),
        },
        "parameters": report.parameters,
        "resized": [
            {"key": r.key, "from": list(r.source), "to": list(r.target), "describe": r.describe()}
            for r in report.resized
        ],
    }


def zero_shot(
    model: torch.nn.Module,
    spec: TowerSpec,
    dataset: str,
    root: Path,
    split: str,
    device: str = "auto",
    batch_size: int = 64,
    workers: int = 2,
    progress: bool = True,
) -> dict[str, float]:
    """Text→image metrics of ``model`` as loaded, with the towers' eval preprocessing."""
    from bundle.encoders import resolve_device
    from training.data.formats import load_records
    from training.data.transforms import build_eval_transform
    from training.evaluate import EvalSplit, evaluate_split

    open_clip = import_open_clip()
    dev = resolve_device(device)
    model = model.to(dev).eval()
    tokenizer = open_clip.get_tokenizer(spec.model)
    transform = build_eval_transform(
        spec.resolved_image_size(), open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD
    )
    # Same precision as a served bundle: bf16 autocast on CUDA, float32 on CPU.
    dtype = torch.bfloat16 if dev.type == "cuda" else None

    def run(fn, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
            return fn(x.to(dev)).float()

    records = load_records(dataset, root, split)
    return evaluate_split(
        EvalSplit.from_records(records),
        lambda images: run(model.encode_image, images),
        lambda texts: run(model.encode_text, tokenizer(texts)),
        transform,
        batch_size=batch_size,
        workers=workers,
        progress=progress,
    )


def check_weights(
    path: Path,
    model: str = "ViT-B-16",
    image_size: tuple[int, int] | None = None,
    quick_gelu: bool | None = None,
    dataset: str | None = None,
    root: Path | None = None,
    split: str = "test",
    device: str = "auto",
    batch_size: int = 64,
    workers: int = 2,
    progress: bool = True,
) -> dict:
    """Load ``path`` into ``model`` and describe it; zero-shot metrics when a split is given.

    ``quick_gelu``: None (auto) takes it from what the file records, else refuses."""
    if (dataset is None) != (root is None):
        raise ValueError("--dataset and --root go together")
    path = Path(path).expanduser()
    if not path.is_file():
        what = "a folder, not a file" if path.is_dir() else "no such file"
        raise TowerError(f"check-weights PATH {path}: {what} (give the weights file itself)")
    spec = TowerSpec(model, pretrained=str(path), image_size=image_size, quick_gelu=quick_gelu)
    towers = build_towers_with_report(spec)
    assert towers.report is not None  # a file path always yields a report
    result = report_json(towers.report, spec, towers.activation, sha256_file(path))
    _log_summary(result)
    if dataset is not None and root is not None:
        clip = towers.model
        metrics = zero_shot(clip, spec, dataset, root, split, device, batch_size, workers, progress)
        result["zero_shot"] = {"dataset": dataset, "split": split, **metrics}
        scores = ", ".join(f"{k} {metrics[k]:.2f}" for k in METRIC_KEYS)
        log.info("zero-shot on %s %s: %s", dataset, split, scores)
    return result


def _log_summary(result: dict) -> None:
    model = result["model"]
    log.info("%s is %s with %d tensors", result["path"], result["format"], result["tensors"])
    published = result["published_as"] or "not a file OpenAI publishes"
    log.info("  sha256 %s: %s", result["sha256"], published)
    log.info("  file looks like: %s", result["architecture"]["description"])
    log.info(
        "  loaded into %s at %dx%d (quick_gelu=%s: %s): %.1fM parameters",
        model["name"],
        *model["image_size"],
        model["quick_gelu"],
        model["quick_gelu_source"],
        result["parameters"] / 1e6,
    )
    for resize in result["resized"] or [{"describe": "nothing"}]:
        log.info("  resized: %s", resize["describe"])
