"""The GPU-copy wiring and its locking, on any machine: a CPU copier stands in for FAISS's GPU
cloner (the one seam where a stand-in is used, since no GPU is here), so the choice of searcher,
the k cap, the copy per commit, the one lock around copies, searches and frees, and what a
failing copy leaves behind are all checked without a GPU (tests/index/faiss/test_gpu.py runs the
same workload on a real GPU copy where one is visible)."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import faiss
import numpy as np
import pytest

from index.faiss import backend as faiss_backend
from index.faiss.gpu_copies import GpuCopies
from index.faiss.snapshot import Snapshot
from index.store import GalleryIndex, IndexStoreError
from tests.index.conftest import fake_items, random_unit
from tests.index.faiss import gpu_workload

DIM = 8
N = faiss_backend.GPU_MAX_K + 100


class CloneCopier:
    """Records what it copies; the 'GPU copy' is a CPU clone."""

    def __init__(self) -> None:
        self.copies: list[int] = []

    def copy(self, index: faiss.Index) -> faiss.Index:
        self.copies.append(int(index.ntotal))
        return faiss.clone_index(index)


class OwnedLock:
    """A lock that knows which thread holds it (threading.Lock does not)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.owner: int | None = None

    def __enter__(self) -> None:
        self._lock.acquire()
        self.owner = threading.get_ident()

    def __exit__(self, *exc: object) -> None:
        self.owner = None
        self._lock.release()


def watch_lock(copies: GpuCopies, gpu: Exclusive) -> None:
    """Give ``copies`` a lock whose holder ``gpu`` can check (before any use of it)."""
    gpu.lock = copies._lock = OwnedLock()  # type: ignore[assignment]


class Exclusive:
    """Stands for the GPU resources: records operations on them that overlap, or that run in
    a thread not holding the GpuCopies lock (once :func:`watch_lock` gave it one)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self.active = 0
        self.overlaps: list[str] = []
        self.unlocked: list[str] = []
        self.lock: OwnedLock | None = None
        self.counts = {"copy": 0, "search": 0, "free": 0}

    def op(self, name: str) -> None:
        with self._guard:
            self.active += 1
            self.counts[name] += 1
            if self.active > 1:
                self.overlaps.append(name)
            if self.lock is not None and self.lock.owner != threading.get_ident():
                self.unlocked.append(name)
        time.sleep(0.001)  # widen the window a race would need
        with self._guard:
            self.active -= 1


class InstrumentedCopy:
    """A 'GPU index': searches its CPU clone, and tells the resources when it is searched and
    when it is freed (the garbage collector destroys it: a real GPU copy frees memory then)."""

    def __init__(self, index: faiss.Index, gpu: Exclusive) -> None:
        self._index = index
        self._gpu = gpu

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        self._gpu.op("search")
        return self._index.search(queries, k)

    def __del__(self) -> None:
        self._gpu.op("free")


class InstrumentedCopier:
    def __init__(self) -> None:
        self.gpu = Exclusive()

    def copy(self, index: faiss.Index) -> InstrumentedCopy:
        self.gpu.op("copy")
        return InstrumentedCopy(faiss.clone_index(index), self.gpu)


class FailingCopier(CloneCopier):
    """Copies until ``fail`` is set, then fails as FAISS does when the GPU is out of memory."""

    def __init__(self) -> None:
        super().__init__()
        self.fail = False

    def copy(self, index: faiss.Index) -> faiss.Index:
        if self.fail:
            raise RuntimeError(
                "Error in virtual void* faiss::gpu::StandardGpuResourcesImpl::allocMemory at "
                "faiss/gpu/StandardGpuResources.cpp:530: Error: 'err == cudaSuccess' failed: "
                "out of memory"
            )
        return super().copy(index)


def test_searches_and_writes_go_through_the_copy(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    names = [f"g{i:05d}" for i in range(N)]
    vectors = random_unit(N, DIM, 0)
    copier = CloneCopier()
    with GalleryIndex.create(tmp_path / "idx", "9" * 64, DIM, use_gpu="never") as index:
        index.add(vectors, fake_items(names))
    with GalleryIndex.open(tmp_path / "idx", use_gpu="always", gpu_copier=copier) as gpu:
        assert gpu.stats()["gpu"] is True and copier.copies == [N]
        with caplog.at_level(logging.WARNING):
            hits = gpu.search(vectors[:2], 5000)
            gpu.search(vectors[:2], 5000)
        assert [len(h) for h in hits] == [faiss_backend.GPU_MAX_K] * 2
        assert [h[0].image_id for h in hits] == names[:2]
        assert caplog.text.count("GPU limit") == 1
        gpu.add(random_unit(1, DIM, 1), fake_items(["new"]))
        gpu.remove(["g00000"])
        assert copier.copies == [N, N + 1, N]
        assert gpu.search(vectors[0], 1)[0][0].image_id != "g00000"


def test_hnsw_stays_on_the_cpu(tmp_path: Path) -> None:
    copier = CloneCopier()
    with GalleryIndex.create(
        tmp_path / "idx", "9" * 64, DIM, "hnsw", "auto", gpu_copier=copier
    ) as index:
        index.add(random_unit(3, DIM, 2), fake_items(["a", "b", "c"]))
        assert index.stats()["gpu"] is False and copier.copies == []
    with pytest.raises(IndexStoreError, match="HNSW"):
        GalleryIndex.open(tmp_path / "idx", use_gpu="always", gpu_copier=copier)


def test_one_copier_on_the_bundle_device_unless_sharding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real copier is made once per open index, for one device unless sharding is asked."""
    made: list[dict[str, object]] = []

    class Recording(CloneCopier):
        def __init__(self, **options: object) -> None:
            super().__init__()
            made.append(options)

    monkeypatch.setattr(faiss_backend, "gpu_count", lambda: 2)
    monkeypatch.setattr(faiss_backend, "GpuCopier", Recording)
    with GalleryIndex.create(tmp_path / "idx", "9" * 64, DIM, gpu_device=1) as index:
        for step in range(3):
            index.add(random_unit(2, DIM, step), fake_items([f"a{step}", f"b{step}"]))
        index.remove(["a0"])
    assert made == [{"fp16": False, "device": 1, "shards": False}]
    with GalleryIndex.open(tmp_path / "idx", gpu_shards=True) as index:
        index.remove(["a1"])
    assert made[1:] == [{"fp16": False, "device": 0, "shards": True}]


def test_copies_searches_and_frees_never_overlap(tmp_path: Path) -> None:
    """Threads add, remove and search one index searched on a 'GPU' copy: no two operations
    on the shared resources overlap, every retired copy is freed, results stay right."""
    copier = InstrumentedCopier()
    index = GalleryIndex.create(tmp_path / "idx", "9" * 64, gpu_workload.DIM, gpu_copier=copier)
    watch_lock(index._gpu, copier.gpu)
    base = gpu_workload.fill(index)
    searches = gpu_workload.run(index, base)
    gpu = copier.gpu
    assert searches > 0 and gpu.counts["search"] > 0
    assert gpu.overlaps == [] and gpu.unlocked == []
    assert gpu.counts["free"] == gpu.counts["copy"] - 1  # all but the generation served
    index.close()
    assert gpu.counts["free"] == gpu.counts["copy"]
    assert gpu.overlaps == [] and gpu.unlocked == []


def test_a_retired_copy_is_freed_and_its_searches_use_the_master() -> None:
    """A search holding a snapshot whose copy was freed meanwhile answers from that snapshot's
    CPU master: the same generation, the same hits."""
    copier = InstrumentedCopier()
    copies = GpuCopies("always", copier=copier)
    watch_lock(copies, copier.gpu)
    vectors = random_unit(50, DIM, 3)
    master = faiss_backend.build("flat", DIM, vectors, np.arange(50))
    gpu = copies.copy(master, "flat")
    snap = Snapshot(0, "9" * 64, DIM, "flat", 50, master, gpu, {})
    on_copy = copies.search(snap, vectors[:3], 4)
    copies.free(snap)
    assert snap.gpu is not None and snap.gpu.index is None and copier.gpu.counts["free"] == 1
    on_master = copies.search(snap, vectors[:3], 4)
    np.testing.assert_array_equal(on_copy[1], on_master[1])
    assert copier.gpu.counts["search"] == 1 and copier.gpu.unlocked == []


def test_a_failed_gpu_search_leaves_no_reference_that_outlives_the_free() -> None:
    """The error of a failed search must not carry the copy (in its traceback's frames) past
    the free: it would then be destroyed outside the lock, wherever the error is dropped."""
    copier = InstrumentedCopier()
    copies = GpuCopies("always", copier=copier)
    watch_lock(copies, copier.gpu)
    vectors = random_unit(20, DIM, 5)
    master = faiss_backend.build("flat", DIM, vectors, np.arange(20))
    snap = Snapshot(0, "9" * 64, DIM, "flat", 20, master, copies.copy(master, "flat"), {})

    def out_of_memory(self: InstrumentedCopy, queries: np.ndarray, k: int) -> tuple:
        raise RuntimeError("cudaMalloc error out of memory")

    original = InstrumentedCopy.search
    InstrumentedCopy.search = out_of_memory  # type: ignore[method-assign]
    try:
        with pytest.raises(IndexStoreError, match="GPU search failed") as caught:
            copies.search(snap, vectors[:1], 3)
    finally:
        InstrumentedCopy.search = original  # type: ignore[method-assign]
    assert caught.value.__context__ is None and caught.value.__cause__ is None
    copies.free(snap)  # the caught error is still alive here: the copy must go now regardless
    assert copier.gpu.counts["free"] == 1 and copier.gpu.unlocked == []


def test_a_free_waits_for_the_search_in_flight() -> None:
    """A free asked for while a search runs on the copy waits for it, then destroys the copy
    under the lock."""
    copier = InstrumentedCopier()
    copies = GpuCopies("always", copier=copier)
    watch_lock(copies, copier.gpu)
    vectors = random_unit(10, DIM, 7)
    master = faiss_backend.build("flat", DIM, vectors, np.arange(10))
    snap = Snapshot(0, "9" * 64, DIM, "flat", 10, master, copies.copy(master, "flat"), {})
    entered, go_on = threading.Event(), threading.Event()
    search = InstrumentedCopy.search

    def slow_search(self: InstrumentedCopy, queries: np.ndarray, k: int) -> tuple:
        entered.set()
        go_on.wait(5)
        return search(self, queries, k)

    InstrumentedCopy.search = slow_search  # type: ignore[method-assign]
    try:
        searching = threading.Thread(target=copies.search, args=(snap, vectors[:1], 1))
        searching.start()
        assert entered.wait(5)
        freeing = threading.Thread(target=copies.free, args=(snap,))
        freeing.start()
        time.sleep(0.05)
        assert copier.gpu.counts["free"] == 0  # waits for the search
        go_on.set()
        searching.join(5)
        freeing.join(5)
    finally:
        InstrumentedCopy.search = search  # type: ignore[method-assign]
    assert copier.gpu.counts["free"] == 1 and copier.gpu.unlocked == []


def test_a_failing_copy_fails_the_write_and_keeps_the_last_good_state(tmp_path: Path) -> None:
    copier = FailingCopier()
    vectors = random_unit(20, DIM, 4)
    names = [f"i{i}" for i in range(20)]
    with GalleryIndex.create(tmp_path / "idx", "9" * 64, DIM, gpu_copier=copier) as index:
        index.add(vectors, fake_items(names))
        copier.fail = True
        with pytest.raises(IndexStoreError, match=r"cannot copy the index.*out of memory"):
            index.add(random_unit(1, DIM, 5), fake_items(["late"]))
        assert index.count() == 20 and index.stats()["generation"] == 1
        assert index.get("late") is None
        assert sorted(p.name for p in (tmp_path / "idx").glob("vectors.*")) == ["vectors.1.faiss"]
        assert index.search(vectors[3], 1)[0][0].image_id == "i3"
        copier.fail = False
        index.add(random_unit(1, DIM, 5), fake_items(["late"]))  # the GPU has room again
        assert index.count() == 21


def test_a_failing_copy_on_refresh_keeps_serving(tmp_path: Path) -> None:
    copier = FailingCopier()
    vectors = random_unit(20, DIM, 6)
    with GalleryIndex.create(tmp_path / "idx", "9" * 64, DIM, use_gpu="never") as writer:
        writer.add(vectors[:10], fake_items([f"i{i}" for i in range(10)]))
        served = GalleryIndex.open(tmp_path / "idx", gpu_copier=copier)
        writer.add(vectors[10:], fake_items([f"i{i}" for i in range(10, 20)]))
    copier.fail = True
    with served:
        with pytest.raises(IndexStoreError, match="cannot copy the index"):
            served.refresh()
        assert served.count() == 10 and served.search(vectors[2], 1)[0][0].image_id == "i2"
        copier.fail = False
        assert served.refresh() is True and served.count() == 20
