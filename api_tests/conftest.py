"""A real server for the API tests: `python -m service` in a subprocess on a free local port,
serving a briefly trained tiny bundle and an index built by `python -m index build`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

from support.server import API_KEY, REPO, ServiceProcess, service_env
from support.shared import built_once


@pytest.fixture(scope="session")
def built_index(
    tmp_path_factory: pytest.TempPathFactory, trained_bundle: Path, quality_root: Path
) -> Path:
    """The synthetic test split, indexed by the index CLI (as a user would); once per run."""

    def build(folder: Path) -> Path:
        out = folder / "index"
        if (folder / "done").exists():
            return out
        shutil.rmtree(out, ignore_errors=True)
        command = [sys.executable, "-m", "index", "-q", "build", "--bundle", str(trained_bundle)]
        command += ["--dataset", "cuhk-pedes", "--root", str(quality_root), "--split", "test"]
        command += ["--out", str(out), "--workers", "0", "--device", "cpu"]
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"index build failed:\n{done.stdout}\n{done.stderr}"
        (folder / "done").touch()
        return out

    return built_once(tmp_path_factory, "built-index", build)


@pytest.fixture(scope="session")
def server(
    tmp_path_factory: pytest.TempPathFactory, trained_bundle: Path, built_index: Path
) -> Iterator[ServiceProcess]:
    """One server for the whole API suite, over a copy of the built index."""
    home = tmp_path_factory.mktemp("served")
    index_dir = home / "index"
    shutil.copytree(built_index, index_dir)
    service = ServiceProcess(service_env(trained_bundle, index_dir), home / "service.log")
    service.start().wait_ready()
    yield service
    service.stop()


@pytest.fixture
def http(server: ServiceProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


@pytest.fixture
def key() -> dict[str, str]:
    return {"X-API-Key": API_KEY}
