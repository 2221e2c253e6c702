"""Cross-request micro-batching: many requests' queries, one encoder (and index) call.

Concurrent requests each put their items (queries) on one queue; a single worker takes up to
``max_size`` of them (waiting at most ``max_wait`` for more after the first), makes ONE call of
``fn`` in a worker thread and hands each request its own results. While that call runs, the next
batch fills up, so under load the encoder sees large batches without any request waiting long.
At low load (a lone query after a lone query) the worker does not wait at all.

Grouping by length: the text tower runs each batch only up to its longest caption
(bundle/towers.py), so a batch costs about its size times its longest length. Whenever more
queries wait than one batch holds, the batch is the OLDEST waiting query plus the waiting queries
nearest to it in token length (``length_of``; ties go to the older), in arrival order; the rest
stay queued for the next batch, which starts as soon as this one returns. The oldest query always
goes, so no query waits for more than ``queue_size / max_size`` batches. When everything waiting
fits in one batch it all goes (an extra call would cost more than the padding saves).

:class:`Unbatched` is the same interface with batching off: every request calls ``fn`` alone,
with the same bound on work in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger(__name__)

BatchFn = Callable[[list[Any]], Sequence[Any]]  # one result per item, in order
BatchHook = Callable[[int, float], None]  # (batch size, seconds in fn)
LengthFn = Callable[[Any], int]  # an item's cost along the sequence (a query's token count)


class QueueFullError(Exception):
    """More work is waiting than the queue holds: the caller should answer 429."""


class BatcherClosedError(Exception):
    """The batcher was stopped while work was still queued."""


class Batcher(Protocol):
    @property
    def depth(self) -> int: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def submit(self, items: list[Any]) -> list[Any]: ...


@dataclass
class _Pending:
    item: Any
    future: asyncio.Future = field(repr=False)
    length: int | None = None  # computed only when the batch has to be chosen by length


class MicroBatcher:
    """Collects items from concurrent callers into batched calls of ``fn``."""

    def __init__(
        self,
        fn: BatchFn,
        max_size: int = 32,
        max_wait_s: float = 0.005,
        queue_size: int = 256,
        on_batch: BatchHook | None = None,
        length_of: LengthFn | None = None,
    ) -> None:
        if max_size < 1 or queue_size < 1:
            raise ValueError("max_size and queue_size must be at least 1")
        self._fn = fn
        self.max_size = max_size
        self.max_wait_s = max_wait_s
        self.queue_size = queue_size
        self._on_batch = on_batch
        self.length_of = length_of
        self._queue: asyncio.Queue[_Pending] | None = None
        # Taken off the queue but not yet batched (only ever more than max_size under load).
        self._backlog: list[_Pending] = []
        self._worker: asyncio.Task | None = None
        # One thread: batches run one after another, which is what lets the next one grow.
        self._executor: ThreadPoolExecutor | None = None
        self._current: list[_Pending] = []
        self._last_size = 0

    @property
    def depth(self) -> int:
        """Items waiting plus those inside the current call."""
        return self._waiting + len(self._current)

    @property
    def _waiting(self) -> int:
        return (self._queue.qsize() if self._queue is not None else 0) + len(self._backlog)

    async def start(self) -> None:
        if self._worker is not None:
            return
        self._queue = asyncio.Queue(maxsize=self.queue_size)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="query-batcher")
        self._worker = asyncio.create_task(self._run(), name="query-batcher")

    async def stop(self) -> None:
        if self._worker is None:
            return
        self._worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._worker
        self._worker = None
        assert self._queue is not None
        leftovers = [*self._current, *self._backlog]
        self._backlog = []
        while not self._queue.empty():
            leftovers.append(self._queue.get_nowait())
        for pending in leftovers:
            if not pending.future.done():
                pending.future.set_exception(BatcherClosedError("the service is shutting down"))
        self._current = []
        if self._executor is not None:
            # Let a call still running finish, without blocking the event loop meanwhile.
            await asyncio.to_thread(self._executor.shutdown, wait=True)
            self._executor = None

    async def submit(self, items: list[Any]) -> list[Any]:
        """One result per item, in order. Raises QueueFullError when the items do not fit."""
        if self._queue is None or self._worker is None:
            raise BatcherClosedError("the query queue is not running")
        # All or nothing: half a request queued would still cost encoder time.
        if self._waiting + len(items) > self.queue_size:
            raise QueueFullError(
                f"the query queue is full ({self._waiting} of {self.queue_size} waiting); "
                "retry shortly"
            )
        loop = asyncio.get_running_loop()
        pending = [_Pending(item, loop.create_future()) for item in items]
        for item in pending:
            self._queue.put_nowait(item)
        return list(await asyncio.gather(*(p.future for p in pending)))

    def _drain(self) -> None:
        """Move everything already queued to the backlog, without waiting."""
        assert self._queue is not None
        while not self._queue.empty():
            self._backlog.append(self._queue.get_nowait())

    async def _collect(self) -> list[_Pending]:
        assert self._queue is not None
        if not self._backlog:
            self._backlog.append(await self._queue.get())
        self._drain()
        # A lone caller after a lone batch means low load: waiting would only add latency.
        # Once calls overlap (they queue up while the encoder runs), the window applies.
        wait = self.max_wait_s if self._last_size > 1 or len(self._backlog) > 1 else 0.0
        deadline = time.monotonic() + wait
        while len(self._backlog) < self.max_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                self._backlog.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
            self._drain()
        # Callers that gave up (client went away) need no encoding.
        self._backlog = [p for p in self._backlog if not p.future.done()]
        return self._take()

    def _take(self) -> list[_Pending]:
        """The next batch out of the backlog: all of it when it fits, else the oldest item and
        the items nearest to it in length (the module docstring has the rule)."""
        waiting = self._backlog
        if len(waiting) <= self.max_size or self.length_of is None:
            batch, self._backlog = waiting[: self.max_size], waiting[self.max_size :]
            return batch
        for pending in waiting:
            if pending.length is None:
                pending.length = self.length_of(pending.item)
        chosen = set(choose_by_length([p.length or 0 for p in waiting], self.max_size))
        self._backlog = [p for i, p in enumerate(waiting) if i not in chosen]
        return [p for i, p in enumerate(waiting) if i in chosen]

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            self._last_size = len(batch)
            if not batch:
                continue
            # Kept on self so that stop() can fail this batch's callers if it cancels us mid-call.
            self._current = batch
            started = time.perf_counter()
            try:
                rows = await loop.run_in_executor(self._executor, self._fn, [p.item for p in batch])
                if len(rows) != len(batch):
                    raise RuntimeError(f"{len(rows)} results for a batch of {len(batch)}")
            except Exception as err:  # handed to every caller of this batch
                log.exception("a batch of %d queries failed", len(batch))
                self._current = []
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(err)
                continue
            self._current = []
            if self._on_batch is not None:
                self._on_batch(len(batch), time.perf_counter() - started)
            for p, row in zip(batch, rows, strict=True):
                if not p.future.done():
                    p.future.set_result(row)


def choose_by_length(lengths: Sequence[int], max_size: int) -> list[int]:
    """Positions (in arrival order) of the next batch from items waiting in arrival order: the
    oldest, then the nearest to its length, ties to the older; everything when it all fits."""
    if len(lengths) <= max_size:
        return list(range(len(lengths)))
    lead = lengths[0]
    nearest = sorted(range(1, len(lengths)), key=lambda i: (abs(lengths[i] - lead), i))
    return sorted([0, *nearest[: max_size - 1]])


class Unbatched:
    """Batching off: each request makes its own call of ``fn`` in a worker thread."""

    def __init__(
        self, fn: BatchFn, queue_size: int = 256, on_batch: BatchHook | None = None
    ) -> None:
        self._fn = fn
        self.queue_size = queue_size
        self._on_batch = on_batch
        self._in_flight = 0

    @property
    def depth(self) -> int:
        return self._in_flight

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def submit(self, items: list[Any]) -> list[Any]:
        if self._in_flight + len(items) > self.queue_size:
            raise QueueFullError(
                f"too many queries in progress ({self._in_flight} of {self.queue_size}); "
                "retry shortly"
            )
        self._in_flight += len(items)
        try:
            started = time.perf_counter()
            rows = await asyncio.to_thread(self._fn, items)
            if self._on_batch is not None:
                self._on_batch(len(items), time.perf_counter() - started)
            return list(rows)
        finally:
            self._in_flight -= len(items)


def make_batcher(
    fn: BatchFn,
    enabled: bool,
    max_size: int,
    max_wait_s: float,
    queue_size: int,
    on_batch: BatchHook | None = None,
    length_of: LengthFn | None = None,
) -> Batcher:
    if enabled:
        return MicroBatcher(fn, max_size, max_wait_s, queue_size, on_batch, length_of)
    return Unbatched(fn, queue_size, on_batch)


def group_by_length(batcher: Batcher, length_of: LengthFn) -> None:
    """Have a micro-batcher choose its batches by ``length_of`` (nothing to do unbatched)."""
    if isinstance(batcher, MicroBatcher):
        batcher.length_of = length_of
