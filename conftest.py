"""Session fixtures shared by tests/ and api_tests/: built once per test run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

from support.builders import (
    make_onnx_bundle,
    make_random_bundle,
    make_synthetic,
    make_trained_bundle,
)


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 identities × 3 images in the CUHK-PEDES format, split train/val/test by identity."""
    return make_synthetic(tmp_path_factory.mktemp("synthetic"))


@pytest.fixture(scope="session")
def random_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_random_bundle(tmp_path_factory.mktemp("bundle") / "tiny")


@pytest.fixture(scope="session")
def onnx_bundle(tmp_path_factory: pytest.TempPathFactory, random_bundle: Path) -> Path:
    """``random_bundle`` (same fingerprint) with its towers exported to ONNX."""
    return make_onnx_bundle(random_bundle, tmp_path_factory.mktemp("bundle") / "tiny-onnx")


@pytest.fixture(scope="session")
def quality_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Enough identities (900 to train on, 50 held out for test) to judge ranking quality."""
    return make_synthetic(
        tmp_path_factory.mktemp("quality"), ids=1000, images_per_id=2, held_out=0.05
    )


@pytest.fixture(scope="session")
def trained_bundle(tmp_path_factory: pytest.TempPathFactory, quality_root: Path) -> Path:
    """The tiny model trained on ``quality_root`` for a few minutes of CPU."""
    return make_trained_bundle(quality_root, tmp_path_factory.mktemp("run"))
