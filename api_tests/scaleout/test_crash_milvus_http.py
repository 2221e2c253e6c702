"""SIGKILL a replica of a Milvus-backed service while it uploads and deletes; after its restart
every acknowledged write holds, on both replicas and on the server itself.

Acknowledged means: an upload answered 201 is in the collection with its metadata, served by
both replicas byte for byte; a delete answered 204 is gone. A request in flight at the kill may
have landed or not, but if it landed it is whole. No file in the shared image folder is unnamed
by the collection after the restart (the replicas here sweep with no grace period).
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from api_tests.reliability.support import env_int, noise_image, sha256
from api_tests.scaleout.conftest import Replicas, start_replicas
from api_tests.scaleout.support import KEY, direct, stored_files, upload
from support.milvus import MilvusStandaloneServer

CAMERA = "crash-cam"


@dataclass
class Ledger:
    live: dict[str, str] = field(default_factory=dict)  # image_id -> sha256, answered 201
    deleted: set[str] = field(default_factory=set)  # answered 204
    uncertain: dict[str, str] = field(default_factory=dict)  # sent, no answer before the kill
    acknowledged: int = 0


class Writer(threading.Thread):
    """Uploads (with metadata) and deletes through one replica until it dies."""

    def __init__(self, url: str, ledger: Ledger, seed: int, rng: random.Random) -> None:
        super().__init__(daemon=True)
        self.url, self.ledger, self.seed, self.rng = url, ledger, seed, rng
        self.error: BaseException | None = None

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as http:
            while True:
                try:
                    if self.ledger.live and self.rng.random() < 0.25:
                        self.delete_one(http)
                    else:
                        self.upload_some(http)
                    self.ledger.acknowledged += 1
                except httpx.TransportError:
                    return  # the replica was killed
                except BaseException as err:
                    self.error = err
                    return

    def upload_some(self, http: httpx.Client) -> None:
        seeds = list(range(self.seed, self.seed + self.rng.randint(1, 3)))
        self.seed += len(seeds)
        # Recorded before the request: a kill may land it unanswered.
        shas = [sha256(noise_image(seed)) for seed in seeds]
        self.ledger.uncertain.update({sha[:24]: sha for sha in shas})
        reply, sent = upload(
            http, seeds, camera_id=CAMERA, captured_at="2024-07-01T10:00:00Z", tags="crash"
        )
        assert reply.status_code == 201, reply.text
        for image_id, sha in sent.items():
            self.ledger.live[image_id] = self.ledger.uncertain.pop(image_id)
            assert sha == self.ledger.live[image_id]

    def delete_one(self, http: httpx.Client) -> None:
        image_id = self.rng.choice(sorted(self.ledger.live))
        self.ledger.uncertain[image_id] = self.ledger.live.pop(image_id)
        reply = http.delete(f"/v1/gallery/{image_id}", headers=KEY)
        assert reply.status_code == 204, reply.text
        del self.ledger.uncertain[image_id]
        self.ledger.deleted.add(image_id)


def check(replicas: Replicas, ledger: Ledger, before: set[str]) -> None:
    with direct(replicas.store) as gallery:
        rows = {item.image_id: item for item in gallery.items()}
    for image_id, sha in ledger.live.items():
        assert image_id in rows, f"acknowledged upload {image_id} was lost"
        item = rows[image_id]
        assert (item.sha256, item.camera_id, item.tags) == (sha, CAMERA, ("crash",))
    for image_id in ledger.deleted:
        assert image_id not in rows, f"acknowledged delete of {image_id} was undone"
    for image_id, sha in ledger.uncertain.items():
        if image_id in rows:  # landed: then whole
            assert rows[image_id].sha256 == sha
    unexplained = set(rows) - before - set(ledger.live) - set(ledger.uncertain)
    assert not unexplained, f"items nobody uploaded: {unexplained}"

    for replica in (replicas.a, replicas.b):
        with httpx.Client(base_url=replica.url, timeout=60) as http:
            for image_id, sha in ledger.live.items():
                image = http.get(f"/v1/gallery/{image_id}/image")
                assert image.status_code == 200 and sha256(image.content) == sha, image_id
            for image_id in ledger.deleted:
                assert http.get(f"/v1/gallery/{image_id}").status_code == 404
            found = http.post(
                "/v1/search",
                json={"query": "a person", "top_k": 100, "filters": {"camera_ids": [CAMERA]}},
            ).json()["results"]
            assert {r["image_id"] for r in found} == {
                i for i, item in rows.items() if item.camera_id == CAMERA
            }
    named = {item.sha256 for item in rows.values()}
    orphans = set(stored_files(replicas.image_dir)) - named
    assert not orphans, f"files no item names survived the restart: {orphans}"


def test_acknowledged_writes_survive_a_sigkill_of_a_replica(replicas: Replicas) -> None:
    sigkill_trials(replicas, env_int("TPS_MILVUS_CRASH_TRIALS", 2))


def test_acknowledged_writes_survive_a_sigkill_of_a_replica_on_the_milvus_server(
    milvus_server: MilvusStandaloneServer,
    random_bundle: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The same on the real server: its load state, segments and time tick, not milvus-lite's."""
    home = tmp_path_factory.mktemp("crash-server")
    a, b = start_replicas(milvus_server, random_bundle, home, shared_images=True)
    try:
        replicas = Replicas(a, b, milvus_server.store("gallery"), home / "uploads", random_bundle)
        sigkill_trials(replicas, env_int("TPS_MILVUS_CRASH_TRIALS", 2))
    finally:
        a.stop()
        b.stop()


def sigkill_trials(replicas: Replicas, trials: int) -> None:
    """``trials`` times: replica a writes, is SIGKILLed mid-request, restarts; then every
    acknowledged write holds on both replicas and in the store."""
    rng = random.Random(20240701)
    ledger = Ledger()
    with direct(replicas.store) as gallery:
        before = {item.image_id for item in gallery.items()}
    for trial in range(trials):
        writer = Writer(replicas.a.url, ledger, 50_000 + trial * 1_000, rng)
        start = ledger.acknowledged
        writer.start()
        deadline = time.monotonic() + 60
        while ledger.acknowledged < start + 3 and writer.is_alive():
            assert time.monotonic() < deadline, "the writer made no progress"
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.3))  # somewhere inside a later request
        replicas.a.kill()
        writer.join(30)
        assert writer.error is None, f"{writer.error!r}\n{replicas.a.logs()}"
        # What a kill between an upload's file and its commit leaves, for certain this time.
        planted = noise_image(90_000 + trial)
        orphan = replicas.image_dir / sha256(planted)[:2] / f"{sha256(planted)}.jpg"
        orphan.parent.mkdir(parents=True, exist_ok=True)
        orphan.write_bytes(planted)
        replicas.a.start().wait_ready(180)
        assert not orphan.exists(), "the restart's sweep left an orphan"
        check(replicas, ledger, before)
        with direct(replicas.store) as gallery:  # one client: new ones per item churn channels
            for image_id, sha in list(ledger.uncertain.items()):  # settled by what the store says
                if gallery.get(image_id) is not None:
                    ledger.live[image_id] = sha
                else:
                    ledger.deleted.add(image_id)
        ledger.uncertain.clear()
    assert len(ledger.live) >= trials * 2
