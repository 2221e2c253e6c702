"""Servers for the reliability tests: `python -m service` processes over an untrained tiny
bundle and a small gallery (what these tests judge is behaviour under abuse, not ranking)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from api_tests.reliability.support import build_small_index
from support.server import ServiceProcess, service_env

Launch = Callable[..., ServiceProcess]

# The shared server's limits: large enough for a real 100-megapixel JPEG to reach the pixel
# check, small enough (JSON) that the body-limit tests send little.
UPLOAD_LIMIT = 24 * 1024 * 1024
JSON_LIMIT = 64 * 1024


@pytest.fixture(scope="session")
def small_index(
    tmp_path_factory: pytest.TempPathFactory, random_bundle: Path, synthetic_root: Path
) -> Path:
    return build_small_index(random_bundle, synthetic_root, tmp_path_factory.mktemp("rel") / "idx")


@pytest.fixture(scope="session")
def launch(
    tmp_path_factory: pytest.TempPathFactory, random_bundle: Path, small_index: Path
) -> Iterator[Launch]:
    """Start a ready server over a private copy of the small gallery; all stop at the end."""
    started: list[ServiceProcess] = []

    def start(**env: str) -> ServiceProcess:
        home = tmp_path_factory.mktemp("rel-served")
        index_dir = home / "index"
        shutil.copytree(small_index, index_dir)
        env = {"TPS_INDEX_REFRESH_S": "0", **env}
        service = ServiceProcess(service_env(random_bundle, index_dir, **env), home / "log.txt")
        started.append(service)
        return service.start().wait_ready()

    yield start
    for service in started:
        service.stop()


@pytest.fixture(scope="session")
def rel_server(launch: Launch) -> ServiceProcess:
    """One server for the hostile-input, security and concurrency tests (they run in turn and
    compare the gallery before and after, so sharing it is safe)."""
    return launch(
        TPS_MAX_UPLOAD_BYTES=str(UPLOAD_LIMIT),
        TPS_MAX_JSON_BYTES=str(JSON_LIMIT),
        TPS_MAX_TOP_K="2048",
        TPS_LOG_LEVEL="debug",
    )


@pytest.fixture
def rel_http(rel_server: ServiceProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=rel_server.url, timeout=60) as client:
        yield client
