"""SIGKILL the server while it uploads and deletes; after each restart every acknowledged write
holds and nothing half-written is visible.

Acknowledged means: an upload answered 201 is in the manifest, searchable and served byte for
byte; a delete answered 204 is gone. A request in flight at the kill may have landed or not, but
if it landed it is whole. No file in the image store is unnamed by the manifest: writes killed
between their files and their commit leave such files, and the next start removes them (see
service/storage.py); one trial kills exactly there, the others at random moments.
`make crash-test` runs many more trials than CI.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from api_tests.reliability.conftest import Launch
from api_tests.reliability.hostile import MULTIPART, multipart
from api_tests.reliability.support import (
    env_int,
    faiss_count,
    index_dir_of,
    manifest,
    noise_image,
    orphans,
    served_count,
    sha256,
    store_files,
)
from support.server import API_KEY, ServiceProcess

KEY = {"X-API-Key": API_KEY}


@dataclass
class Ledger:
    """What the clients were told, and what they were never told."""

    live: dict[str, str] = field(default_factory=dict)  # image_id -> sha256, answered 201
    deleted: set[str] = field(default_factory=set)  # answered 204
    uncertain: dict[str, str] = field(default_factory=dict)  # sent, no answer before the kill
    uploads: int = 0
    deletes: int = 0


class Writer(threading.Thread):
    """Uploads batches of new images and deletes some acknowledged ones until the server dies."""

    def __init__(self, url: str, ledger: Ledger, first_seed: int, rng: random.Random) -> None:
        super().__init__(daemon=True)
        self.url, self.ledger, self.seed, self.rng = url, ledger, first_seed, rng
        self.error: BaseException | None = None  # anything but the kill fails the test

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as http:
            while True:
                try:
                    if self.ledger.live and self.rng.random() < 0.3:
                        self.delete_one(http)
                    else:
                        self.upload_one(http)
                except httpx.TransportError:
                    return  # the server was killed
                except BaseException as err:
                    self.error = err
                    return

    def upload_one(self, http: httpx.Client) -> None:
        images = [noise_image(self.seed + i) for i in range(self.rng.randint(1, 4))]
        self.seed += len(images)
        pending = {sha256(d)[:24]: sha256(d) for d in images}
        self.ledger.uncertain.update(pending)
        body = multipart([(f"{i}.jpg".encode(), d) for i, d in enumerate(images)])
        reply = http.post("/v1/gallery", content=body, headers={**KEY, "content-type": MULTIPART})
        assert reply.status_code == 201, reply.text
        for image_id in pending:
            self.ledger.live[image_id] = self.ledger.uncertain.pop(image_id)
        self.ledger.uploads += 1

    def delete_one(self, http: httpx.Client) -> None:
        image_id = self.rng.choice(sorted(self.ledger.live))
        self.ledger.uncertain[image_id] = self.ledger.live.pop(image_id)
        reply = http.delete(f"/v1/gallery/{image_id}", headers=KEY)
        assert reply.status_code == 204, reply.text
        del self.ledger.uncertain[image_id]
        self.ledger.deleted.add(image_id)
        self.ledger.deletes += 1


def check_after_restart(server: ServiceProcess, ledger: Ledger, dataset: dict[str, str]) -> None:
    index_dir = index_dir_of(server)
    rows = manifest(index_dir)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for image_id, sha in ledger.live.items():
            assert rows.get(image_id) == sha, f"acknowledged upload {image_id} was lost"
            image = http.get(f"/v1/gallery/{image_id}/image")
            assert image.status_code == 200 and sha256(image.content) == sha, image_id
        for image_id in ledger.deleted:
            assert image_id not in rows, f"acknowledged delete of {image_id} was undone"
            assert http.get(f"/v1/gallery/{image_id}").status_code == 404
        for image_id, sha in ledger.uncertain.items():
            if image_id in rows:  # landed: then whole
                assert rows[image_id] == sha
                assert sha256(http.get(f"/v1/gallery/{image_id}/image").content) == sha
        unexplained = set(rows) - set(dataset) - set(ledger.live) - set(ledger.uncertain)
        assert not unexplained, f"items nobody uploaded: {unexplained}"
        everything = http.post("/v1/search", json={"query": "a person", "top_k": 2048}).json()
        assert {hit["image_id"] for hit in everything["results"]} == set(rows)
        assert served_count(http) == faiss_count(index_dir) == len(rows)
    assert orphans(index_dir) == set(), "files no manifest row names survived the restart"
    # Settle the in-flight requests: from here on they are what the index says.
    for image_id, sha in ledger.uncertain.items():
        if image_id in rows:
            ledger.live[image_id] = sha
            ledger.deleted.discard(image_id)
        else:
            ledger.deleted.add(image_id)
    ledger.uncertain.clear()


@contextmanager
def index_write_lock(index_dir: Path) -> Iterator[None]:
    """Hold the index's writer lock (as another writer would), so the server's next commit
    waits: its files are on disk, its manifest rows are not."""
    fd = os.open(index_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def kill_between_files_and_commit(server: ServiceProcess, ledger: Ledger) -> None:
    """The one moment random kills rarely hit: an upload's files written, its commit not."""
    index_dir = index_dir_of(server)
    images = [noise_image(seed) for seed in (1, 2, 3)]
    stored = {sha256(d) for d in images}

    def send() -> None:
        body = multipart([(b"x.jpg", d) for d in images])
        with contextlib.suppress(httpx.TransportError):  # it never gets an answer
            httpx.post(
                f"{server.url}/v1/gallery",
                content=body,
                headers={**KEY, "content-type": MULTIPART},
                timeout=60,
            )

    with index_write_lock(index_dir):
        writer = threading.Thread(target=send, daemon=True)
        writer.start()
        deadline = time.monotonic() + 30
        while stored - {p.name.split(".")[0] for p in store_files(index_dir)}:
            assert time.monotonic() < deadline, "the upload never wrote its files"
            time.sleep(0.01)
        assert server.proc is not None
        server.proc.kill()
        server.proc.wait()
    writer.join(timeout=30)
    assert len(orphans(index_dir)) == len(images)  # what the restart has to clean
    ledger.uncertain.update({sha[:24]: sha for sha in stored})


def test_sigkill_during_writes_loses_nothing_acknowledged(launch: Launch) -> None:
    trials = env_int("TPS_CRASH_TRIALS", 2)
    rng = random.Random(env_int("TPS_CRASH_SEED", 0))
    server = launch(TPS_MAX_TOP_K="2048")
    dataset = manifest(index_dir_of(server))
    ledger = Ledger()
    kill_between_files_and_commit(server, ledger)
    server.start().wait_ready()
    check_after_restart(server, ledger, dataset)
    assert "removed 3 file(s) of interrupted writes" in server.log_path.read_text()
    killed_mid_request = 0
    for trial in range(trials):
        writer = Writer(server.url, ledger, first_seed=10_000 * (trial + 1), rng=rng)
        writer.start()
        time.sleep(rng.uniform(0.3, 1.5))
        assert server.proc is not None and server.proc.poll() is None
        server.proc.kill()  # SIGKILL: no shutdown code runs
        server.proc.wait()
        writer.join(timeout=30)
        assert not writer.is_alive(), "the writer hung on a dead server"
        assert writer.error is None, f"a write failed before the kill: {writer.error!r}"
        killed_mid_request += bool(ledger.uncertain)
        server.start().wait_ready()
        check_after_restart(server, ledger, dataset)
    swept = server.log_path.read_text().count("of interrupted writes from")
    summary = {
        "trials": trials + 1,  # the random kills and the one between files and commit
        "uploads_acknowledged": ledger.uploads,
        "deletes_acknowledged": ledger.deletes,
        "kills_with_a_request_in_flight": killed_mid_request,
        "restarts_that_removed_orphans": swept,
        "acknowledged_writes_lost": 0,  # any loss fails the checks above
    }
    print(json.dumps(summary, indent=2))
    if out := os.environ.get("TPS_RELIABILITY_OUT"):
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "crash-http.json").write_text(json.dumps(summary, indent=2) + "\n")
    assert ledger.uploads > 0 and ledger.deletes > 0
