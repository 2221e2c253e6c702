"""The service's refresh loop when the GPU cannot take a new generation (out of memory): it
logs, keeps serving the last good state, and picks the generation up once the copy works.

The GPU copier is replaced by a CPU stand-in that fails on demand (the one seam where a
stand-in is used: no GPU is here); the index, its files and the loop are the real ones.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import faiss
import pytest

from index.store import GalleryIndex
from service.app import _refresh_loop
from tests.index.conftest import fake_items, random_unit

DIM = 8


class OutOfMemoryCopier:
    def __init__(self) -> None:
        self.fail = False

    def copy(self, index: faiss.Index) -> faiss.Index:
        if self.fail:
            raise RuntimeError("Error in allocMemory at StandardGpuResources.cpp:1: out of memory")
        return faiss.clone_index(index)


async def _until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


def test_refresh_logs_and_keeps_serving(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    copier = OutOfMemoryCopier()
    vectors = random_unit(20, DIM, 0)
    writer = GalleryIndex.create(tmp_path / "idx", "9" * 64, DIM, use_gpu="never")
    writer.add(vectors[:10], fake_items([f"i{i}" for i in range(10)]))
    served = GalleryIndex.open(tmp_path / "idx", gpu_copier=copier)
    app = SimpleNamespace(state=SimpleNamespace(runtime=SimpleNamespace(store=served)))

    async def scenario() -> None:
        loop = asyncio.create_task(_refresh_loop(app, 0.01))  # type: ignore[arg-type]
        copier.fail = True
        writer.add(vectors[10:], fake_items([f"i{i}" for i in range(10, 20)]))  # another process
        await _until(lambda: "index refresh failed" in caplog.text)
        assert "out of memory" in caplog.text and not loop.done()
        assert served.count() == 10 and served.search(vectors[4], 1)[0][0].image_id == "i4"
        copier.fail = False
        await _until(lambda: served.count() == 20)
        assert served.search(vectors[15], 1)[0][0].image_id == "i15"
        app.state.runtime = None  # the loop ends with the runtime
        await asyncio.wait_for(loop, 5)

    with caplog.at_level(logging.INFO, logger="service"):
        asyncio.run(scenario())
    writer.close()
    served.close()
