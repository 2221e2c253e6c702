"""A parts run exported with its head: loads in both modes, fingerprints apart from its global
export, and evaluation reports the global-only and the parts scores side by side."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bundle.encoders import Bundle
from bundle.format import PARTS_FILE, read_meta
from training.config import TrainConfig
from training.data.formats import load_records
from training.evaluate import EvalSplit, evaluate_split
from training.export import export_bundle
from training.train import train

TEXTS = ["a man in a red coat and blue jeans", "a woman with a white bag"]


@pytest.fixture(scope="module")
def parts_run(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("parts-run") / "run"
    cfg = TrainConfig(
        root=synthetic_root,
        model="tiny",
        losses=["cmpm", "parts"],
        parts_export=True,
        parts_width=64,
        parts_dim=32,
        parts_stripes=4,
        batch_size=16,
        instances_per_id=2,
        lr=3e-4,
        epochs=1,
        workers=0,
        out=out,
    )
    assert train(cfg) == out / "bundle"
    return out


def test_parts_export_writes_a_parts_bundle(parts_run: Path, tmp_path: Path) -> None:
    bundle = parts_run / "bundle"
    assert (bundle / PARTS_FILE).is_file()
    assert read_meta(bundle).extra["parts"]["stripes"] == 4
    plain = export_bundle(parts_run / "checkpoints" / "best.pt", tmp_path / "g", parts=False)
    assert not (plain / PARTS_FILE).exists() and "parts" not in read_meta(plain).extra
    assert read_meta(plain).fingerprint != read_meta(bundle).fingerprint
    images = torch.randn(2, 3, 192, 64, generator=torch.Generator().manual_seed(1))
    as_global, reference = Bundle(bundle), Bundle(plain)
    assert np.array_equal(as_global.encode_text(TEXTS), reference.encode_text(TEXTS))
    assert np.array_equal(as_global.encode_images(images), reference.encode_images(images))
    parts = Bundle(bundle, parts=True)
    assert parts.dim == 128 + (4 + 4) * 32
    assert np.allclose(
        parts.encode_images(images)[:, :128], reference.encode_images(images), 0, 1e-5
    )


def test_parts_export_needs_the_parts_loss(synthetic_root: Path) -> None:
    with pytest.raises(ValueError, match="parts_export needs the parts loss"):
        TrainConfig(root=synthetic_root, losses=["cmpm"], parts_export=True)


def test_evaluate_reports_both_scores_for_a_parts_bundle(
    parts_run: Path, synthetic_root: Path, tmp_path: Path
) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "training", "evaluate", "--bundle", str(parts_run / "bundle"),
         "--dataset", "cuhk-pedes", "--root", str(synthetic_root), "--split", "test",
         "--quiet", "--workers", "0"],
        capture_output=True, text=True, timeout=600,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads(proc.stdout)
    for mode in ("global", "parts"):
        assert {"R1", "R5", "R10", "mAP", "mINP"} <= set(metrics[mode])
        assert 0 <= metrics[mode]["R1"] <= metrics[mode]["R10"] <= 100
    assert metrics["fingerprint"] == read_meta(parts_run / "bundle").fingerprint
    # The global score of a parts bundle is what its global-only export ranks by.
    plain = Bundle(
        export_bundle(parts_run / "checkpoints" / "best.pt", tmp_path / "g", parts=False)
    )
    split = EvalSplit.from_records(load_records("cuhk-pedes", synthetic_root, "test"))
    want = evaluate_split(split, plain.encode_images, plain.encode_text, plain.preprocess)
    for name in ("R1", "R5", "R10", "mAP", "mINP"):
        assert metrics["global"][name] == pytest.approx(want[name], abs=1e-3)
