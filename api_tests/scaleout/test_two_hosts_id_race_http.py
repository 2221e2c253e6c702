"""Two replicas as on two hosts: one real Milvus server, but an image folder each, so no shared
``flock`` serialises their writes. Racing uploads of different bytes under one image_id: at
most one is answered 201, and the collection holds exactly its bytes; the other is told 409.
Never two 201s with one image silently lost (index/milvus/claims.py)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api_tests.reliability.support import env_int, sha256
from api_tests.scaleout.conftest import start_replicas
from api_tests.scaleout.support import direct, upload
from support.milvus import MilvusStandaloneServer
from support.server import ServiceProcess


@pytest.fixture(scope="module")
def hosts(
    milvus_server: MilvusStandaloneServer,
    random_bundle: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ServiceProcess, ServiceProcess]]:
    home = tmp_path_factory.mktemp("two-hosts")
    a, b = start_replicas(milvus_server, random_bundle, home, shared_images=False)
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()


def race(hosts: tuple[ServiceProcess, ServiceProcess], image_id: str, seeds: tuple[int, int]):
    """Both uploads released at once; returns [(status, sha256 sent)] per host."""
    start = threading.Barrier(2)
    outcomes: list = [None, None]

    def send(n: int) -> None:
        with httpx.Client(base_url=hosts[n].url, timeout=120) as http:
            start.wait()
            reply, sent = upload(http, [seeds[n]], image_id=image_id)
            outcomes[n] = (reply.status_code, next(iter(sent.values())), reply.text[:200])

    threads = [threading.Thread(target=send, args=(n,)) for n in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    return outcomes


def test_racing_different_bytes_under_one_id_never_both_win(
    milvus_server: MilvusStandaloneServer, hosts: tuple[ServiceProcess, ServiceProcess]
) -> None:
    trials = env_int("TPS_ID_RACE_TRIALS", 20)
    tally: Counter = Counter()
    for trial in range(trials):
        image_id = f"contested-{trial}"
        outcomes = race(hosts, image_id, (40_000 + 2 * trial, 40_001 + 2 * trial))
        codes = sorted(code for code, _, _ in outcomes)
        assert set(codes) <= {201, 409}, outcomes
        assert codes != [201, 201], f"both won: one acknowledged upload was overwritten {outcomes}"
        with direct(milvus_server.store("gallery")) as gallery:
            item = gallery.get(image_id)
        winners = [sha for code, sha, _ in outcomes if code == 201]
        if winners:
            assert item is not None and item.sha256 == winners[0], (outcomes, item)
            for host in hosts:  # the winner's bytes, whichever host asks
                with httpx.Client(base_url=host.url, timeout=60) as http:
                    meta = http.get(f"/v1/gallery/{image_id}")
                    assert meta.status_code == 200 and meta.json()["sha256"] == winners[0]
        else:
            assert item is None, (outcomes, item)  # both lost: nothing written
        tally[tuple(codes)] += 1
    print(f"{trials} races: {dict(tally)}")
    assert tally[(201, 409)] > 0, tally  # the race is real, and one side wins it


def test_the_loser_can_take_another_id(hosts: tuple[ServiceProcess, ServiceProcess]) -> None:
    with httpx.Client(base_url=hosts[1].url, timeout=60) as http:
        reply, sent = upload(http, [49_999], image_id="contested-free")
        assert reply.status_code == 201, reply.text
        assert sha256(http.get("/v1/gallery/contested-free/image").content) in sent.values()
