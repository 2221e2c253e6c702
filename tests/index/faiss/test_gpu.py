"""GPU search equals CPU search; skipped visibly where FAISS has no GPU or none is visible."""

from __future__ import annotations

import logging
from pathlib import Path

import faiss
import numpy as np
import pytest

from index.faiss import backend as faiss_backend
from index.store import GalleryIndex, IndexStoreError
from tests.index.conftest import fake_items, random_unit
from tests.index.faiss import gpu_workload

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        faiss_backend.gpu_count() == 0, reason="no CUDA GPU / faiss without GPU support"
    ),
]

DIM = 64
N = 20_000


@pytest.fixture
def cpu_and_gpu(tmp_path: Path):
    names = [f"g{i:06d}" for i in range(N)]
    with GalleryIndex.create(tmp_path / "idx", "9" * 64, DIM, use_gpu="never") as index:
        index.add(random_unit(N, DIM, 0), fake_items(names))
    cpu = GalleryIndex.open(tmp_path / "idx", use_gpu="never")
    gpu = GalleryIndex.open(tmp_path / "idx", use_gpu="always")
    yield cpu, gpu
    cpu.close()
    gpu.close()


def _same(a: list, b: list, tol: float) -> None:
    assert len(a) == len(b)
    for hits_a, hits_b in zip(a, b, strict=True):
        np.testing.assert_allclose([h.score for h in hits_a], [h.score for h in hits_b], atol=tol)
        # ids may only differ where scores tie within the tolerance
        for ha, hb in zip(hits_a, hits_b, strict=True):
            assert ha.image_id == hb.image_id or abs(ha.score - hb.score) <= tol


def test_gpu_search_equals_cpu(cpu_and_gpu) -> None:
    cpu, gpu = cpu_and_gpu
    assert gpu.stats()["gpu"] is True and cpu.stats()["gpu"] is False
    queries = random_unit(64, DIM, 1)
    for k in (1, 10, 100):
        _same(gpu.search(queries, k), cpu.search(queries, k), 1e-5)


def test_writes_refresh_the_gpu_copy(cpu_and_gpu) -> None:
    cpu, gpu = cpu_and_gpu
    fresh = random_unit(3, DIM, 2)
    gpu.add(fresh, fake_items(["new0", "new1", "new2"]))
    assert [h[0].image_id for h in gpu.search(fresh, 1)] == ["new0", "new1", "new2"]
    assert gpu.remove(["new1", "g000007"]) == ["new1", "g000007"]
    assert gpu.search(fresh[1], 1)[0][0].image_id != "new1"
    cpu.refresh()
    queries = random_unit(16, DIM, 3)
    _same(gpu.search(queries, 10), cpu.search(queries, 10), 1e-5)


def test_k_is_capped_on_gpu(cpu_and_gpu, caplog: pytest.LogCaptureFixture) -> None:
    _, gpu = cpu_and_gpu
    with caplog.at_level(logging.WARNING):
        hits = gpu.search(random_unit(2, DIM, 4), 5000)
    assert [len(h) for h in hits] == [faiss_backend.GPU_MAX_K] * 2
    assert "GPU limit" in caplog.text


def test_fp16_storage_is_close(cpu_and_gpu) -> None:
    cpu, _ = cpu_and_gpu
    with GalleryIndex.open(cpu.path, use_gpu="always", gpu_fp16=True) as half:
        queries = random_unit(32, DIM, 5)
        got, want = half.search(queries, 10), cpu.search(queries, 10)
    np.testing.assert_allclose(
        [[h.score for h in row] for row in got], [[h.score for h in row] for row in want], atol=2e-3
    )
    overlap = np.mean(
        [
            len({h.image_id for h in a} & {h.image_id for h in b}) / 10
            for a, b in zip(got, want, strict=True)
        ]
    )
    assert overlap >= 0.9


def test_concurrent_adds_removes_and_searches_on_a_gpu_copy(tmp_path: Path) -> None:
    """Writers add and remove while readers search one GPU copy, all sharing one set of GPU
    resources (the same workload runs on a CPU stand-in in test_gpu_copies.py)."""
    with GalleryIndex.create(
        tmp_path / "idx", "9" * 64, gpu_workload.DIM, use_gpu="always"
    ) as index:
        base = gpu_workload.fill(index)
        assert index.stats()["gpu"] is True
        assert gpu_workload.run(index, base, writers=3, readers=4) > 0
        assert index.stats()["gpu"] is True


def test_the_copy_goes_to_one_device_unless_sharding_is_asked() -> None:
    vectors = random_unit(1000, DIM, 6)
    master = faiss_backend.build("flat", DIM, vectors, np.arange(1000))
    copier = faiss_backend.GpuCopier()
    assert copier.device == 0 and copier.shards is False
    copy = copier.copy(master)
    assert not isinstance(copy, faiss.IndexShards)
    _, on_gpu = copy.search(vectors[:8], 5)
    _, on_cpu = master.search(vectors[:8], 5)
    np.testing.assert_array_equal(on_gpu[:, 0], on_cpu[:, 0])


def test_a_device_faiss_cannot_see_is_refused(tmp_path: Path) -> None:
    GalleryIndex.create(tmp_path / "idx", "9" * 64, DIM, use_gpu="never").close()
    with pytest.raises(IndexStoreError, match="not visible"):
        GalleryIndex.open(tmp_path / "idx", use_gpu="always", gpu_device=faiss_backend.gpu_count())
