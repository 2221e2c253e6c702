"""Session fixtures shared by tests/ and api_tests/: built once per test run.

`make test` runs the suite in parallel processes (pytest-xdist), each with its own session. The
expensive, read-only builds (synthetic sets, tiny bundles, the trained model) are made once for
the whole run: the first worker to need one builds it in a folder all workers share, under a
file lock, and the others wait for it and reuse it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
# Exact-search calibrations (index/search/engine_calibration.py) go to a cache of this run's
# own, not the user's: servers the tests start inherit it.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="tps-test-cache-")
# Parallel workers share the cores: each worker (and the servers it starts) gets its share of
# OpenMP threads instead of every one of them spreading over all cores.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _WORKERS)))

# After the environment above: these import torch, which reads OMP_NUM_THREADS once.
from support.builders import (  # noqa: E402
    make_cast_bundle,
    make_onnx_bundle,
    make_random_bundle,
    make_synthetic,
    make_trained_bundle,
)
from support.shared import built_once  # noqa: E402


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 identities × 3 images in the CUHK-PEDES format, split train/val/test by identity."""
    return built_once(tmp_path_factory, "synthetic", make_synthetic)


@pytest.fixture(scope="session")
def random_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built_once(tmp_path_factory, "bundle", lambda d: make_random_bundle(d / "tiny"))


@pytest.fixture(scope="session")
def onnx_bundle(tmp_path_factory: pytest.TempPathFactory, random_bundle: Path) -> Path:
    """``random_bundle`` (same fingerprint) with its towers exported to ONNX."""
    return built_once(tmp_path_factory, "onnx-bundle", lambda d: make_onnx_bundle(random_bundle, d))


@pytest.fixture(scope="session")
def quality_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Enough identities (900 to train on, 50 held out for test) to judge ranking quality."""
    return built_once(
        tmp_path_factory,
        "quality",
        lambda d: make_synthetic(d, ids=1000, images_per_id=2, held_out=0.05),
    )


@pytest.fixture(scope="session")
def tiny_footage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic recording (support/synthetic_footage.py): 2 people, 24 frames of
    320x240 at 8 frames/s, with MOT ground truth. Seed 2: both walk in clear view, so the HOG
    detector finds each of them in most frames."""
    from support.synthetic_footage import make_footage

    return built_once(
        tmp_path_factory,
        "footage-tiny",
        lambda d: make_footage(
            d, people=2, frames=24, fps=8, size=(240, 320), seed=2, pillar=False
        ),
    )


@pytest.fixture(scope="session")
def cast_footage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic recording of three people who differ in top and bottom colour: 40 frames of
    480x360 at 8 frames/s. Seed 7: all three walk where the HOG detector finds them."""
    from support.synthetic_footage import distinct_people, make_footage

    return built_once(
        tmp_path_factory,
        "footage-cast",
        lambda d: make_footage(
            d,
            people=3,
            frames=40,
            fps=8,
            size=(360, 480),
            seed=7,
            pillar=False,
            cast=distinct_people(3, seed=3),
        ),
    )


@pytest.fixture(scope="session")
def cast_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model trained on ``cast_footage``'s three people (support/builders.py)."""
    from support.synthetic_footage import distinct_people

    return built_once(
        tmp_path_factory, "cast-run", lambda d: make_cast_bundle(distinct_people(3, seed=3), d)
    )


@pytest.fixture(scope="session")
def hostile_footage(tmp_path_factory: pytest.TempPathFactory, tiny_footage: Path) -> dict:
    """Recordings every footage check must refuse: name → file (support/synthetic_footage.py)."""
    from support.synthetic_footage import hostile_recordings

    made: dict = {}

    def build(folder: Path) -> Path:
        made.update(hostile_recordings(tiny_footage / "video.mp4", folder))
        return folder

    built_once(tmp_path_factory, "footage-hostile", build)
    return made


@pytest.fixture(scope="session")
def trained_bundle(tmp_path_factory: pytest.TempPathFactory, quality_root: Path) -> Path:
    """The tiny model trained on ``quality_root`` for a fixed number of epochs: one per run."""
    return built_once(tmp_path_factory, "run", lambda d: make_trained_bundle(quality_root, d))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Order for parallel workers (``--dist loadfile --no-loadscope-reorder`` keeps it): the file
    that first needs the trained model goes first (its worker builds the model, the run's
    longest fixture, while the others test everything that does not need it), the other files
    that need it go last, and within each group the files with most tests go first, so the
    run does not end on one long file."""

    def needs_model(item: pytest.Item) -> bool:
        return "trained_bundle" in getattr(item, "fixturenames", ())

    # What runs on the real Milvus standalone server is marked for `make test-milvus-server`.
    # (The store contract picks its server through a parameter, not a fixture name.)
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        on_server = "milvus" in (params.get("spec"), params.get("filtered"))
        if "milvus_server" in getattr(item, "fixturenames", ()) or on_server:
            item.add_marker(pytest.mark.milvus_server)

    files: dict[object, list[pytest.Item]] = {}
    for item in items:
        files.setdefault(item.path, []).append(item)
    first = next((item.path for item in items if needs_model(item)), None)
    later = {
        path for path, tests in files.items() if path != first and any(map(needs_model, tests))
    }
    groups = (
        [first] if first is not None else [],
        sorted((p for p in files if p != first and p not in later), key=lambda p: -len(files[p])),
        sorted(later, key=lambda p: -len(files[p])),
    )
    items[:] = [item for group in groups for path in group for item in files[path]]
