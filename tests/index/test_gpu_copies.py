"""The GPU-copy wiring, on any machine: a fake copier stands in for FAISS's GPU cloner, so the
choice of searcher, the k cap and the fresh copy per commit are checked without a GPU
(tests/index/test_gpu.py checks real GPU results where one is visible)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import ClassVar

import faiss
import pytest

from index import faiss_backend
from index.store import GalleryIndex, IndexStoreError
from tests.index.conftest import fake_items, random_unit

DIM = 8
N = faiss_backend.GPU_MAX_K + 100


class FakeCopier:
    """Records what it copies; the 'GPU copy' is a CPU clone."""

    copies: ClassVar[list[int]] = []

    def __init__(self, fp16: bool = False) -> None:
        self.fp16 = fp16

    def copy(self, index: faiss.Index) -> faiss.Index:
        FakeCopier.copies.append(int(index.ntotal))
        return faiss.clone_index(index)


@pytest.fixture
def fake_gpu(monkeypatch: pytest.MonkeyPatch) -> type[FakeCopier]:
    FakeCopier.copies = []
    monkeypatch.setattr(faiss_backend, "gpu_count", lambda: 1)
    monkeypatch.setattr(faiss_backend, "GpuCopier", FakeCopier)
    return FakeCopier


def test_searches_and_writes_go_through_the_copy(
    tmp_path: Path, fake_gpu: type[FakeCopier], caplog: pytest.LogCaptureFixture
) -> None:
    names = [f"g{i:05d}" for i in range(N)]
    vectors = random_unit(N, DIM, 0)
    with GalleryIndex.create(tmp_path / "idx", "9" * 64, DIM, use_gpu="never") as index:
        index.add(vectors, fake_items(names))
    assert fake_gpu.copies == []
    with GalleryIndex.open(tmp_path / "idx", use_gpu="always") as gpu:
        assert gpu.stats()["gpu"] is True and fake_gpu.copies == [N]
        with caplog.at_level(logging.WARNING):
            hits = gpu.search(vectors[:2], 5000)
            gpu.search(vectors[:2], 5000)
        assert [len(h) for h in hits] == [faiss_backend.GPU_MAX_K] * 2
        assert [h[0].image_id for h in hits] == names[:2]
        assert caplog.text.count("GPU limit") == 1
        gpu.add(random_unit(1, DIM, 1), fake_items(["new"]))
        gpu.remove(["g00000"])
        assert fake_gpu.copies == [N, N + 1, N]
        assert gpu.search(vectors[0], 1)[0][0].image_id != "g00000"


def test_hnsw_stays_on_the_cpu(tmp_path: Path, fake_gpu: type[FakeCopier]) -> None:
    with GalleryIndex.create(tmp_path / "idx", "9" * 64, DIM, "hnsw", "auto") as index:
        index.add(random_unit(3, DIM, 2), fake_items(["a", "b", "c"]))
        assert index.stats()["gpu"] is False and fake_gpu.copies == []
    with pytest.raises(IndexStoreError, match="HNSW"):
        GalleryIndex.open(tmp_path / "idx", use_gpu="always")
