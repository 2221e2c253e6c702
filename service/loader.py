"""Loading the runtime in the background, so /healthz answers while /readyz still says 503."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from service.metrics import Metrics
from service.runtime import Runtime, StartupError, load_runtime, warm_up
from service.settings import Settings

log = logging.getLogger(__name__)

FatalHook = Callable[[str], None]


class Loader:
    """Tracks loading; ``on_fatal`` (set by ``python -m service``) stops the server when the
    configuration cannot work, instead of leaving a process that never becomes ready."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.state = "loading"
        self.error: str | None = None
        self.on_fatal: FatalHook | None = None

    def describe(self) -> str:
        if self.state == "failed":
            return f"loading failed: {self.error}"
        if self.state == "loading":
            return "the model and index are loading"
        return self.state

    async def load(self) -> Runtime | None:
        started = time.perf_counter()
        job = asyncio.ensure_future(asyncio.to_thread(load_runtime, self.settings, self.metrics))
        try:
            runtime = await asyncio.shield(job)
        except asyncio.CancelledError:
            # Shut down mid-load: close the index once the loading thread is done with it.
            job.add_done_callback(_close_when_loaded)
            raise
        except StartupError as err:
            self.fail(str(err))
            return None
        except Exception as err:
            log.exception("loading failed")
            self.fail(f"{type(err).__name__}: {err}")
            return None
        try:
            await runtime.searcher.start()
            await warm_up(runtime)
            stats = await asyncio.to_thread(runtime.store.stats)
        except Exception as err:
            log.exception("warm-up failed")
            await close_runtime(runtime)
            self.fail(f"warm-up failed: {type(err).__name__}: {err}")
            return None
        self.state = "ready"
        _log_ready(runtime, stats, time.perf_counter() - started)
        return runtime

    def fail(self, message: str) -> None:
        self.state = "failed"
        self.error = message
        log.error("cannot start: %s", message)
        if self.on_fatal is not None:
            self.on_fatal(message)


def _close_when_loaded(job: asyncio.Future) -> None:
    """Runs on the event loop, so the blocking close goes to a thread of its own (not the
    loop's executor, which may be shutting down with the loop)."""
    if not job.cancelled() and job.exception() is None:
        runtime: Runtime = job.result()
        threading.Thread(target=runtime.close_files, name="close-runtime").start()


async def close_runtime(runtime: Runtime) -> None:
    await runtime.searcher.stop()
    await asyncio.to_thread(runtime.close_files)


def _log_ready(runtime: Runtime, stats: dict[str, Any], seconds: float) -> None:
    s = runtime.settings
    batching = (
        f"on (up to {s.batch_max_size} queries, {s.batch_max_wait_ms:g} ms window)"
        if s.batching
        else "off"
    )
    log.info(
        "ready in %.1f s: model %s (dim %d) on %s with the %s runtime (%s)%s; %s store %s with %d "
        "images (%s%s); "
        "batching %s; writes %s; reads %s",
        seconds,
        runtime.fingerprint[:12],
        runtime.bundle.dim,
        runtime.bundle.device,
        runtime.bundle.runtime_name,
        runtime.bundle.precision,
        "" if runtime.bundle.trim_text else " (full-context text)",
        s.store_kind,
        runtime.store.location,
        stats.get("count", 0),
        stats.get("kind", "?"),
        ", GPU" if stats.get("gpu") else "",
        batching,
        "need the API key" if s.writes_enabled else "disabled (no API key configured)",
        "need the API key" if s.read_requires_key else "open",
    )
