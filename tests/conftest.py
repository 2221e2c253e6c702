"""Session fixtures: one synthetic set and bundles, built once per test run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

from tests.helpers import make_random_bundle, make_synthetic, make_trained_bundle


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 identities × 3 images in the CUHK-PEDES format, split train/val/test by identity."""
    return make_synthetic(tmp_path_factory.mktemp("synthetic"))


@pytest.fixture(scope="session")
def random_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_random_bundle(tmp_path_factory.mktemp("bundle") / "tiny")


@pytest.fixture(scope="session")
def trained_bundle(tmp_path_factory: pytest.TempPathFactory, synthetic_root: Path) -> Path:
    return make_trained_bundle(synthetic_root, tmp_path_factory.mktemp("run"), minutes=0.5)
