"""A concurrent workload on one open index: writer threads add and remove while reader threads
search, every result checked. Run on a real GPU copy (test_gpu.py) and on a CPU stand-in copier
that also checks the locking (test_gpu_copies.py)."""

from __future__ import annotations

import threading

import numpy as np

from index.store import GalleryIndex
from tests.index.conftest import fake_items, random_unit

DIM = 16
BASE = 200


def fill(index: GalleryIndex) -> np.ndarray:
    """The base items every reader checks: ``base{i}`` under ``random_unit(BASE, DIM, 0)[i]``."""
    vectors = random_unit(BASE, DIM, 0)
    index.add(vectors, fake_items([f"base{i}" for i in range(BASE)]))
    return vectors


def run(index: GalleryIndex, base: np.ndarray, writers: int = 2, readers: int = 3) -> int:
    """Add and remove batches while searching; returns the number of checked searches.

    Base items are never removed, so each base vector's best hit is itself in every generation
    a reader may see; a batch added and removed by a writer must be wholly absent afterwards.
    """
    errors: list[str] = []
    done = threading.Event()
    checked = [0]
    count_lock = threading.Lock()

    def writer(w: int) -> None:
        try:
            for step in range(6):
                names = [f"w{w}s{step}_{i}" for i in range(5)]
                index.add(random_unit(5, DIM, 1000 * (w + 1) + step), fake_items(names))
                if index.remove(names[:3]) != names[:3]:
                    errors.append(f"writer {w}: removed something else")
                for hits in index.search(random_unit(4, DIM, 7 + step), 50):
                    if {h.image_id for h in hits} & set(names[:3]):
                        errors.append(f"writer {w}: a removed item is still found")
        except Exception as err:  # reported by the test
            errors.append(f"writer {w}: {type(err).__name__}: {err}")

    def reader(r: int) -> None:
        rng = np.random.default_rng(r)
        try:
            while not done.is_set():
                rows = rng.choice(BASE, size=4, replace=False)
                for row, hits in zip(rows, index.search(base[rows], 5), strict=True):
                    if not hits or hits[0].image_id != f"base{row}":
                        errors.append(f"reader {r}: base{row} is not its own best hit: {hits[:1]}")
                with count_lock:
                    checked[0] += 1
        except Exception as err:  # reported by the test
            errors.append(f"reader {r}: {type(err).__name__}: {err}")

    threads = [threading.Thread(target=reader, args=(r,)) for r in range(readers)]
    for t in threads:
        t.start()
    write = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
    for t in write:
        t.start()
    for t in write:
        t.join(timeout=120)
    done.set()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors[:5]
    assert index.count() == BASE + writers * 6 * 2
    return checked[0]
