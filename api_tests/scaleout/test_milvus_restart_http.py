"""SIGKILL the real Milvus server under two replicas while clients search and upload, then start
it again on the same ports and data: what clients see, and what survives.

While it is down: /readyz says 503 on both replicas, and every request that needs the store is
answered 503 with Retry-After and a message naming no address; never a 500. Once it is back,
both replicas serve again within 30 s with no replica restart, and every upload answered 201,
before or after the outage, is in the collection and served by both.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from api_tests.reliability.support import sha256
from api_tests.scaleout.conftest import start_replicas
from api_tests.scaleout.support import direct, upload
from support.milvus import MilvusStandaloneServer
from support.server import ServiceProcess

BACK_WITHIN_S = 30.0
DOWN_FOR_S = 4.0  # traffic while the server is gone


@dataclass
class Traffic:
    """What the clients saw; filled by their threads until ``stop`` is set."""

    stop: threading.Event = field(default_factory=threading.Event)
    codes: Counter = field(default_factory=Counter)
    acknowledged: dict[str, str] = field(default_factory=dict)  # image_id -> sha256 (201)
    bad: list[str] = field(default_factory=list)  # any reply breaking the rules above
    lock: threading.Lock = field(default_factory=threading.Lock)

    def judge(self, what: str, reply: httpx.Response, ok: set[int], port: int) -> None:
        with self.lock:
            self.codes[(what, reply.status_code)] += 1
            if reply.status_code == 503:
                if not reply.headers.get("Retry-After", "").isdigit():
                    self.bad.append(f"{what}: 503 without Retry-After")
                if "127.0.0.1" in reply.text or str(port) in reply.text:
                    self.bad.append(f"{what}: 503 naming an address: {reply.text[:200]}")
            elif reply.status_code not in ok:
                self.bad.append(f"{what}: {reply.status_code} {reply.text[:200]}")


def searcher(url: str, traffic: Traffic, port: int) -> None:
    with httpx.Client(base_url=url, timeout=60) as http:
        while not traffic.stop.is_set():
            reply = http.post("/v1/search", json={"query": "a person walking", "top_k": 10})
            traffic.judge("search", reply, {200}, port)
            time.sleep(0.05)


def uploader(url: str, traffic: Traffic, first_seed: int, port: int) -> None:
    seed = first_seed
    with httpx.Client(base_url=url, timeout=60) as http:
        while not traffic.stop.is_set():
            reply, sent = upload(http, [seed], camera_id="restart")
            seed += 1
            traffic.judge("upload", reply, {201}, port)
            if reply.status_code == 201:
                with traffic.lock:
                    traffic.acknowledged.update(sent)
            time.sleep(0.05)


@pytest.fixture(scope="module")
def replicas(
    milvus_server: MilvusStandaloneServer,
    random_bundle: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ServiceProcess, ServiceProcess]]:
    a, b = start_replicas(
        milvus_server, random_bundle, tmp_path_factory.mktemp("restart"), shared_images=True
    )
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()


def ready(replica: ServiceProcess) -> int:
    return httpx.get(f"{replica.url}/readyz", timeout=10).status_code


def wait_until(condition, within_s: float, what: str) -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < within_s, f"{what} not within {within_s:.0f} s"
        time.sleep(0.2)
    return time.monotonic() - started


def test_a_milvus_restart_is_503s_then_service_again_with_nothing_lost(
    milvus_server: MilvusStandaloneServer, replicas: tuple[ServiceProcess, ServiceProcess]
) -> None:
    port = milvus_server.port
    traffic = Traffic()
    threads = [
        threading.Thread(target=fn, args=args, daemon=True)
        for replica, seed in zip(replicas, (10_000, 20_000), strict=True)
        for fn, args in (
            (searcher, (replica.url, traffic, port)),
            (uploader, (replica.url, traffic, seed, port)),
        )
    ]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: len(traffic.acknowledged) >= 4, 60, "uploads before the kill")
        milvus_server.kill()
        wait_until(lambda: all(ready(r) == 503 for r in replicas), 15, "readiness false")
        body = httpx.get(f"{replicas[0].url}/readyz", timeout=10).text
        assert "127.0.0.1" not in body and str(port) not in body, body
        time.sleep(DOWN_FOR_S)
        assert all(ready(r) == 503 for r in replicas), "ready while Milvus is down"
        milvus_server.start()
        back_s = wait_until(
            lambda: all(ready(r) == 200 for r in replicas), BACK_WITHIN_S, "both replicas ready"
        )
        acknowledged_before = len(traffic.acknowledged)
        wait_until(
            lambda: len(traffic.acknowledged) >= acknowledged_before + 2,
            BACK_WITHIN_S,
            "uploads after the restart",
        )
    finally:
        traffic.stop.set()
        for thread in threads:
            thread.join(90)
    print(f"ready again {back_s:.1f} s after Milvus served; replies: {dict(traffic.codes)}")
    assert not traffic.bad, traffic.bad[:10]
    assert traffic.codes[("search", 503)] + traffic.codes[("upload", 503)] > 0, traffic.codes
    for replica in replicas:  # no replica was restarted
        assert replica.proc is not None and replica.proc.poll() is None
    with direct(milvus_server.store("gallery")) as gallery:
        stored = gallery.get_many(list(traffic.acknowledged))
    lost = set(traffic.acknowledged) - set(stored)
    assert not lost, f"acknowledged uploads lost: {sorted(lost)}"
    assert all(stored[i].sha256 == sha for i, sha in traffic.acknowledged.items())
    for replica in replicas:
        with httpx.Client(base_url=replica.url, timeout=60) as http:
            for image_id, sha in list(traffic.acknowledged.items())[::3]:
                image = http.get(f"/v1/gallery/{image_id}/image")
                assert image.status_code == 200 and sha256(image.content) == sha, image_id
