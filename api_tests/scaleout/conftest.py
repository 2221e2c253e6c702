"""Two `python -m service` replicas over one Milvus server and one shared image folder.

The server is `milvus-lite server` on a free 127.0.0.1 port (the Milvus gRPC API over the
embedded engine); the replicas reach it as ``milvus://127.0.0.1:PORT/gallery``, as they would a
Milvus standalone or cluster. Both start at once with ``TPS_CREATE_STORE=true``, so they race to
create the collection; the untrained tiny bundle is enough, since what these tests judge is
sharing, filtering and crash safety, not ranking quality.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.milvus import MilvusLiteServer, MilvusStandaloneServer
from support.milvus_standalone import serve_for_tests
from support.server import ServiceProcess, store_env


@dataclass(frozen=True)
class Replicas:
    a: ServiceProcess
    b: ServiceProcess
    store: str  # the TPS_STORE both use
    image_dir: Path  # the TPS_IMAGE_DIR both use
    bundle: Path


@pytest.fixture(scope="session")
def milvus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MilvusLiteServer]:
    home = tmp_path_factory.mktemp("milvus")
    server = MilvusLiteServer(home / "data", home / "milvus.log").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def replicas(
    milvus: MilvusLiteServer, random_bundle: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Replicas]:
    home = tmp_path_factory.mktemp("replicas")
    store, images = milvus.store("gallery"), home / "uploads"
    # Grace 0: a restart sweeps the orphans a kill left at once (the default for a Milvus server
    # keeps files younger than 15 minutes; tests/service/test_storage.py covers that).
    env = store_env(random_bundle, store, images, TPS_CREATE_STORE="true", TPS_ORPHAN_GRACE_S="0")
    a = ServiceProcess(env, home / "a.log").start()
    b = ServiceProcess(env, home / "b.log").start()
    try:
        a.wait_ready(180)
        b.wait_ready(180)
        yield Replicas(a, b, store, images, random_bundle)
    finally:
        a.stop()
        b.stop()


@pytest.fixture(scope="module")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MilvusStandaloneServer]:
    """The real Milvus standalone server, one per module (the fault tests kill it), stopped
    after, also when a test fails."""
    yield from serve_for_tests(tmp_path_factory.mktemp("milvus-standalone"))


def start_replicas(
    server: MilvusStandaloneServer, bundle: Path, home: Path, *, shared_images: bool, **env: str
) -> tuple[ServiceProcess, ServiceProcess]:
    """Two replicas on ``server`` (the collection ``gallery``), with one image folder or one
    each; ready when this returns. The caller stops them."""
    replicas = []
    for name in ("a", "b"):
        images = home / ("uploads" if shared_images else f"uploads-{name}")
        values = {"TPS_CREATE_STORE": "true", "TPS_ORPHAN_GRACE_S": "0"} | env
        replica = ServiceProcess(
            store_env(bundle, server.store("gallery"), images, **values), home / f"{name}.log"
        )
        replicas.append(replica.start())
    try:
        for replica in replicas:
            replica.wait_ready(180)
    except BaseException:
        for replica in replicas:
            replica.stop()
        raise
    return replicas[0], replicas[1]
