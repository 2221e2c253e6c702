"""The micro-batcher: concurrent requests share encoder calls; a full queue answers at once."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from service.batching import (
    BatcherClosedError,
    MicroBatcher,
    QueueFullError,
    Unbatched,
    make_batcher,
)


class FakeEncoder:
    """Records each call; returns one 'vector' per text so callers can check they got theirs."""

    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.delay = delay
        self.fail = fail
        self.release = threading.Event()
        self.release.set()

    def __call__(self, texts: list[str]) -> list[str]:
        self.release.wait(5)
        self.calls.append(list(texts))
        time.sleep(self.delay)
        if self.fail:
            raise RuntimeError("encoder exploded")
        return [f"vec:{t}" for t in texts]


async def _with(encoder, body):
    await encoder.start()
    try:
        return await body()
    finally:
        await encoder.stop()


def test_concurrent_requests_share_encoder_calls() -> None:
    fake = FakeEncoder(delay=0.02)
    batcher = MicroBatcher(fake, max_size=32, max_wait_s=0.01, queue_size=256)

    async def body():
        return await asyncio.gather(*(batcher.submit([f"q{i}"]) for i in range(20)))

    results = asyncio.run(_with(batcher, body))
    assert results == [[f"vec:q{i}"] for i in range(20)]
    assert len(fake.calls) < 20
    assert sum(len(c) for c in fake.calls) == 20


def test_batches_never_exceed_max_size() -> None:
    fake = FakeEncoder()
    batcher = MicroBatcher(fake, max_size=4, max_wait_s=0.01, queue_size=256)

    async def body():
        return await asyncio.gather(*(batcher.submit([f"q{i}", f"r{i}"]) for i in range(10)))

    results = asyncio.run(_with(batcher, body))
    assert results[3] == ["vec:q3", "vec:r3"]
    assert max(len(c) for c in fake.calls) <= 4
    assert sum(len(c) for c in fake.calls) == 20


def test_full_queue_is_refused_immediately() -> None:
    fake = FakeEncoder()
    fake.release.clear()  # the first batch blocks inside the encoder
    batcher = MicroBatcher(fake, max_size=1, max_wait_s=0.0, queue_size=3)

    async def body():
        first = asyncio.create_task(batcher.submit(["busy"]))
        await asyncio.sleep(0.05)  # the worker has taken it and is blocked
        waiting = asyncio.create_task(batcher.submit(["a", "b", "c"]))  # fills the queue
        await asyncio.sleep(0.01)
        assert batcher.depth == 4
        with pytest.raises(QueueFullError, match="queue is full"):
            await batcher.submit(["one too many"])
        fake.release.set()
        return await first, await waiting

    first, waiting = asyncio.run(_with(batcher, body))
    assert first == ["vec:busy"]
    assert waiting == ["vec:a", "vec:b", "vec:c"]


def test_a_request_larger_than_the_queue_is_refused() -> None:
    batcher = MicroBatcher(FakeEncoder(), queue_size=2)

    async def body():
        with pytest.raises(QueueFullError):
            await batcher.submit(["a", "b", "c"])

    asyncio.run(_with(batcher, body))


def test_encoder_errors_reach_every_caller_of_the_batch() -> None:
    batcher = MicroBatcher(FakeEncoder(fail=True), max_wait_s=0.01)

    async def body():
        return await asyncio.gather(
            batcher.submit(["a"]), batcher.submit(["b"]), return_exceptions=True
        )

    results = asyncio.run(_with(batcher, body))
    assert all(isinstance(r, RuntimeError) for r in results)


def test_the_worker_survives_a_failed_batch() -> None:
    fake = FakeEncoder(fail=True)
    batcher = MicroBatcher(fake, max_wait_s=0.0)

    async def body():
        with pytest.raises(RuntimeError):
            await batcher.submit(["a"])
        fake.fail = False
        return await batcher.submit(["b"])

    assert asyncio.run(_with(batcher, body)) == ["vec:b"]


def test_stop_fails_waiting_callers() -> None:
    fake = FakeEncoder()
    fake.release.clear()
    batcher = MicroBatcher(fake, max_size=1, max_wait_s=0.0)

    async def body():
        await batcher.start()
        tasks = [asyncio.create_task(batcher.submit([t])) for t in "abc"]
        await asyncio.sleep(0.05)
        stopping = asyncio.create_task(batcher.stop())
        await asyncio.sleep(0.01)
        fake.release.set()
        await stopping
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(body())
    assert any(isinstance(r, BatcherClosedError) for r in results)
    with pytest.raises(BatcherClosedError):
        asyncio.run(batcher.submit(["late"]))


def test_batch_hook_sees_sizes() -> None:
    seen: list[int] = []
    batcher = MicroBatcher(FakeEncoder(), max_wait_s=0.02, on_batch=lambda n, s: seen.append(n))

    async def body():
        await asyncio.gather(*(batcher.submit(["x"]) for _ in range(5)))

    asyncio.run(_with(batcher, body))
    assert sum(seen) == 5


def test_unbatched_calls_once_per_request() -> None:
    fake = FakeEncoder(delay=0.01)
    direct = make_batcher(fake, enabled=False, max_size=32, max_wait_s=0.01, queue_size=8)
    assert isinstance(direct, Unbatched)

    async def body():
        return await asyncio.gather(*(direct.submit([f"q{i}"]) for i in range(6)))

    results = asyncio.run(_with(direct, body))
    assert results == [[f"vec:q{i}"] for i in range(6)]
    assert len(fake.calls) == 6


def test_unbatched_bounds_work_in_flight() -> None:
    fake = FakeEncoder()
    fake.release.clear()
    direct = Unbatched(fake, queue_size=2)

    async def body():
        busy = asyncio.create_task(direct.submit(["a", "b"]))
        await asyncio.sleep(0.02)
        with pytest.raises(QueueFullError):
            await direct.submit(["c"])
        fake.release.set()
        return await busy

    assert asyncio.run(_with(direct, body)) == ["vec:a", "vec:b"]


def test_batch_search_makes_one_encode_and_one_search() -> None:
    import numpy as np

    from index.items import Hit
    from service.metrics import Metrics
    from service.query import BatchSearch, QueryJob

    encodes: list[list[str]] = []
    searches: list[int] = []

    class Bundle:
        def encode_text(self, texts):
            encodes.append(texts)
            return np.eye(len(texts), 4, dtype=np.float32)

    class Store:
        def search(self, vectors, k, where=None):
            searches.append(k)
            return [[Hit(f"img{i}", None, 1.0 - i / 10) for i in range(k)] for _ in vectors]

    search = BatchSearch(Bundle(), Store(), Metrics())
    answers = search([QueryJob("a", 2), QueryJob("b", 5), QueryJob("c", 1)])
    assert encodes == [["a", "b", "c"]] and searches == [5]
    assert [len(a.hits) for a in answers] == [2, 5, 1]
    assert answers[1].vector.tolist() == [0, 1, 0, 0]


def test_a_lone_query_does_not_wait_for_the_window() -> None:
    fake = FakeEncoder()
    batcher = MicroBatcher(fake, max_size=32, max_wait_s=2.0)

    async def body():
        started = time.perf_counter()
        await batcher.submit(["alone"])
        return time.perf_counter() - started

    assert asyncio.run(_with(batcher, body)) < 1.0


def _fill_while_busy(batcher: MicroBatcher, fake: FakeEncoder, texts: list[str]):
    """Block the encoder on a first query, queue ``texts`` behind it, then let it go."""

    async def body():
        fake.release.clear()
        first = asyncio.create_task(batcher.submit(["busy"]))
        await asyncio.sleep(0.05)  # the worker holds "busy" inside the encoder
        rest = [asyncio.create_task(batcher.submit([t])) for t in texts]
        await asyncio.sleep(0.02)
        fake.release.set()
        return [await first, *[await r for r in rest]]

    return body


def test_an_overfull_queue_is_batched_by_length() -> None:
    """Lengths in the order queued: the oldest leads, and brings those nearest its length."""
    fake = FakeEncoder()
    batcher = MicroBatcher(fake, max_size=3, max_wait_s=0.0, length_of=len)
    texts = ["aaaa", "a" * 20, "aaa", "a" * 21, "aaaaa", "a" * 19]
    results = asyncio.run(_with(batcher, _fill_while_busy(batcher, fake, texts)))
    assert results[1:] == [[f"vec:{t}"] for t in texts]  # everyone gets their own vector
    assert fake.calls[1:] == [["aaaa", "aaa", "aaaaa"], ["a" * 20, "a" * 21, "a" * 19]]


def test_a_queue_that_fits_one_batch_goes_whole_and_in_order() -> None:
    fake = FakeEncoder()
    batcher = MicroBatcher(fake, max_size=8, max_wait_s=0.0, length_of=len)
    texts = ["a" * 30, "b", "c" * 15]
    asyncio.run(_with(batcher, _fill_while_busy(batcher, fake, texts)))
    assert fake.calls[1:] == [texts]


def test_length_grouping_never_strands_the_oldest_query() -> None:
    """An outlier length still goes in the very next batch, because it is the oldest."""
    fake = FakeEncoder()
    batcher = MicroBatcher(fake, max_size=2, max_wait_s=0.0, length_of=len)
    texts = ["x" * 50, "a", "b", "c", "d"]
    asyncio.run(_with(batcher, _fill_while_busy(batcher, fake, texts)))
    assert fake.calls[1][0] == "x" * 50
    assert sorted(t for call in fake.calls[1:] for t in call) == sorted(texts)


def test_the_backlog_counts_against_the_queue() -> None:
    fake = FakeEncoder()
    batcher = MicroBatcher(fake, max_size=1, max_wait_s=0.0, queue_size=3, length_of=len)

    async def body():
        fake.release.clear()
        first = asyncio.create_task(batcher.submit(["busy"]))
        await asyncio.sleep(0.05)
        waiting = asyncio.create_task(batcher.submit(["a", "bb", "ccc"]))
        await asyncio.sleep(0.01)
        with pytest.raises(QueueFullError):
            await batcher.submit(["d"])
        fake.release.set()
        await first
        assert await waiting == ["vec:a", "vec:bb", "vec:ccc"]
        assert batcher.depth == 0

    asyncio.run(_with(batcher, body))
