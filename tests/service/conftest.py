"""Fixtures for the service unit tests: a small index from the random bundle, apps on copies."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from tests.service.support import API_KEY, wait_ready


def build_index(bundle_dir: Path, data_root: Path, out: Path, split: str = "test") -> Path:
    """Encode one split of the synthetic set into a new index (what `python -m index build`
    does, in-process to save a second torch start-up)."""
    from bundle.encoders import Bundle
    from index.ingest.add import ingest
    from index.ingest.sources import from_dataset
    from index.store import GalleryIndex

    bundle = Bundle(bundle_dir, device="cpu")
    entries = from_dataset("cuhk-pedes", data_root, split)
    with GalleryIndex.create(out, bundle.fingerprint, bundle.dim, "flat", "never") as index:
        ingest(index, bundle, entries, workers=0, progress=False)
    return out


@pytest.fixture(scope="session")
def base_index(tmp_path_factory: pytest.TempPathFactory, random_bundle: Path, synthetic_root: Path):
    return build_index(random_bundle, synthetic_root, tmp_path_factory.mktemp("index") / "idx")


@pytest.fixture(scope="session")
def make_settings(
    tmp_path_factory: pytest.TempPathFactory, random_bundle: Path, base_index: Path
) -> Callable[..., Settings]:
    """Settings over a private copy of the index per call, so tests may write to it."""

    def make(**overrides) -> Settings:
        index_dir = tmp_path_factory.mktemp("served") / "index"
        shutil.copytree(base_index, index_dir)
        values = {
            "bundle": random_bundle,
            "index_dir": index_dir,
            "api_key": API_KEY,  # an admin key: writes, audit, retention
            # Reads without a key, as the local demo serves them (honoured on loopback only;
            # tests of access control pass open_reads=False).
            "open_reads": True,
            "device": "cpu",
            "index_gpu": "never",
            "index_refresh_s": 0,
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture(scope="module")
def client(make_settings: Callable[..., Settings]) -> Iterator[TestClient]:
    """One ready app per test module."""
    with TestClient(create_app(make_settings())) as c:
        wait_ready(c)
        yield c
