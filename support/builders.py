"""Builders shared by the unit tests, API tests and benchmarks: synthetic data, tiny bundles."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def make_synthetic(
    root: Path, ids: int = 24, images_per_id: int = 3, seed: int = 0, held_out: float = 0.2
) -> Path:
    """A synthetic set; ``held_out`` is the test fraction of identities (val gets half of it)."""
    from training.synthetic import generate

    if not (root / "reid_raw.json").is_file():
        generate(
            root,
            ids=ids,
            images_per_id=images_per_id,
            seed=seed,
            val_fraction=held_out / 2,
            test_fraction=held_out,
        )
    return root


def make_random_bundle(out: Path, seed: int = 0) -> Path:
    """An untrained tiny bundle: enough for anything that does not judge ranking quality."""
    from training.export import export_untrained

    if (out / "bundle.json").is_file():
        return out
    return export_untrained(out, "tiny", seed)


def make_trained_bundle(data_root: Path, run_dir: Path, epochs: int = 3) -> Path:
    """The tiny model trained for a fixed number of epochs (not a time budget, so a busy machine
    gives the same model): on the quality set it ranks test captions' persons far above chance."""
    from training.config import TrainConfig
    from training.train import train

    bundle = run_dir / "bundle"
    if (bundle / "bundle.json").is_file():
        return bundle
    cfg = TrainConfig(
        dataset="cuhk-pedes",
        root=data_root,
        model="tiny",
        epochs=epochs,
        batch_size=64,
        instances_per_id=4,
        lr=5e-4,
        tau=0.05,
        warmup_epochs=1,
        grad_clip=5.0,
        val_split="none",
        workers=0,
        out=run_dir,
        losses=["cmpm"],
    )
    train(cfg)
    return bundle


def make_cast_bundle(cast: list, run_dir: Path, images_per_id: int = 16, epochs: int = 4) -> Path:
    """The tiny model trained on ``cast`` alone (the people of a synthetic recording, drawn
    with other poses, lights and occluders than the recording's): a model that certainly tells
    these people apart, so a test of the footage pipeline judges the pipeline, not the model
    (the suite's open-set model is far too weak to separate three strangers reliably)."""
    from training.config import TrainConfig
    from training.synthetic.generate import generate
    from training.train import train

    bundle = run_dir / "run" / "bundle"
    if (bundle / "bundle.json").is_file():
        return bundle
    data = run_dir / "people"
    if not (data / "reid_raw.json").is_file():
        generate(
            data,
            ids=len(cast),
            images_per_id=images_per_id,
            seed=7,
            val_fraction=0.0,
            test_fraction=0.0,
            cast=cast,
        )
    cfg = TrainConfig(
        dataset="cuhk-pedes",
        root=data,
        model="tiny",
        epochs=epochs,
        batch_size=4 * min(len(cast), 16),
        instances_per_id=4,
        lr=1e-3,
        tau=0.05,
        warmup_epochs=1,
        grad_clip=5.0,
        val_split="none",
        workers=0,
        out=run_dir / "run",
        losses=["cmpm"],
    )
    train(cfg)
    return bundle


def make_onnx_bundle(source: Path, out: Path) -> Path:
    """A copy of ``source`` with its towers exported to ONNX: same weights, same fingerprint, so
    an index built with ``source`` serves with it too."""
    import shutil

    from bundle.onnx_export import export_onnx

    if (out / "bundle.json").is_file() and (out / "text.onnx").is_file():
        return out
    shutil.copytree(source, out, dirs_exist_ok=True)
    export_onnx(out)
    return out
