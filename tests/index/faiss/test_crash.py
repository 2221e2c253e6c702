"""A writer killed at any moment leaves the last committed state, readable and consistent."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from index.store import GalleryIndex, ItemMeta

DIM = 64
BATCH = 40
ROOT = Path(__file__).resolve().parents[3]

# The writer: adds batches (and now and then removes one item), printing each commit once
# add()/remove() has returned, i.e. once it must be durable.
WRITER = """
import sys
from pathlib import Path
from index.store import GalleryIndex
from tests.index.faiss.test_crash import BATCH, item, vector

index = GalleryIndex.open(Path(sys.argv[1]))
number = int(sys.argv[2])
while True:
    names = [f"item{n:07d}" for n in range(number, number + BATCH)]
    index.add([vector(n) for n in names], [item(n) for n in names])
    print("added", *names, flush=True)
    if number % (3 * BATCH) == 0:
        victim = f"item{number - BATCH // 2:07d}"
        index.remove([victim])
        print("removed", victim, flush=True)
    number += BATCH
"""

# Dies exactly inside one step of the commit protocol.
CRASH_AT = """
import os, sys
from pathlib import Path
from index.faiss import commit, manifest
from index import store
from tests.index.faiss.test_crash import item, vector

index = store.GalleryIndex.open(Path(sys.argv[1]))
if sys.argv[2] == "before_commit":
    manifest.Manifest.commit = lambda *a, **k: os._exit(3)
else:
    commit.write_info_if_stale = lambda *a, **k: os._exit(3)
index.add([vector("crash")], [item("crash")])
"""


def vector(name: str) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")
    x = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return x / np.linalg.norm(x)


def item(name: str) -> ItemMeta:
    return ItemMeta(name, None, f"/cam/{name}.jpg", hashlib.sha256(name.encode()).hexdigest(), 0.0)


def _run(code: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )


def _check_consistent(path: Path, sample: int = 400) -> set[str]:
    """Open, and check faiss and manifest agree and listed items are found by their vectors."""
    with GalleryIndex.open(path) as index:
        names = [i.image_id for i in index.items()]
        stats = index.stats()
        assert stats["count"] == len(names) == len(set(names))
        # All items written by killed writers, plus a sample of the big initial batch.
        probe = [n for n in names if not n.startswith("seed")] + names[
            :: max(1, len(names) // sample)
        ]
        hits = index.search(np.stack([vector(n) for n in probe]), 1)
        assert [h[0].image_id for h in hits] == probe
        assert all(abs(h[0].score - 1.0) < 1e-4 for h in hits)
    files = sorted(p.name for p in path.iterdir() if "faiss" in p.name)
    assert files == [f"vectors.{stats['generation']}.faiss"]
    return set(names)


def _new_index(path: Path, n: int) -> None:
    names = [f"seed{i:05d}" for i in range(n)]
    with GalleryIndex.create(path, "c" * 64, DIM) as index:
        index.add(np.stack([vector(x) for x in names]), [item(x) for x in names])


def test_sigkill_during_writes(tmp_path: Path) -> None:
    path = tmp_path / "idx"
    _new_index(path, 10_000)  # a 2.5 MB faiss file: kills land in every phase of a write
    rng = random.Random(0)
    expected = _check_consistent(path)
    reported = 0
    for trial in range(4):
        first = (trial + 1) * 100_000
        process = _run(WRITER, str(path), str(first))
        time.sleep(rng.uniform(0.4, 1.2))
        process.send_signal(signal.SIGKILL)
        output, _ = process.communicate()
        assert process.returncode == -signal.SIGKILL
        last_batch = None
        for line in output.splitlines():
            verb, *names = line.split()
            if verb == "added":
                expected.update(names)
                last_batch = int(names[0][4:])
                reported += 1
            else:
                expected.difference_update(names)
        present = _check_consistent(path)
        # Every reported commit is there; at most the one write in flight may also have landed:
        # the next batch, or the removal that follows the last reported batch.
        next_batch = first if last_batch is None else last_batch + BATCH
        landed = present - expected
        assert not landed or landed == {
            f"item{n:07d}" for n in range(next_batch, next_batch + BATCH)
        }
        lost = expected - present
        assert not lost or (
            last_batch is not None and lost == {f"item{last_batch - BATCH // 2:07d}"}
        )
        expected = present
    assert reported > 0


@pytest.mark.parametrize("point", ["before_commit", "after_commit"])
def test_death_inside_the_commit(tmp_path: Path, point: str) -> None:
    path = tmp_path / "idx"
    _new_index(path, 50)
    process = _run(CRASH_AT, str(path), point)
    process.communicate()
    assert process.returncode == 3
    names = _check_consistent(path)
    # Before the manifest commit nothing happened; after it the add is complete.
    assert ("crash" in names) == (point == "after_commit")
