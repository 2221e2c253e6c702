"""Footage jobs of this process: a recording sent to ``POST /v1/footage`` is checked, then
analysed and added in the background, one job at a time; ``GET /v1/footage/{job}`` reads its
state. Jobs live in memory: a restart forgets them (the tracks they added stay in the gallery,
and sending the recording again adds nothing)."""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from footage.analysis import AnalysisOptions
from footage.errors import FootageError
from footage.job import FootageJob, add_entries, prepare, summary
from service.runtime import Runtime

log = logging.getLogger(__name__)

# Finished jobs kept for their status, the oldest forgotten first.
KEEP_FINISHED = 200


@dataclass
class JobState:
    job_id: str
    camera_id: str
    created_at: float
    status: str = "queued"  # queued | running | done | failed
    phase: str = "waiting"  # waiting | detecting | encoding | finished
    done: int = 0
    total: int = 0
    recording: str | None = None
    tracks: list[dict[str, Any]] = field(default_factory=list)
    added: int = 0
    already_present: int = 0
    error: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def progress(self, phase: str, done: int, total: int) -> None:
        with self._lock:
            self.phase, self.done, self.total = phase, done, total


class JobsFullError(Exception):
    pass


class FootageJobs:
    def __init__(self, max_jobs: int) -> None:
        self.max_jobs = max_jobs
        self._jobs: dict[str, JobState] = {}
        self._one_at_a_time = asyncio.Semaphore(1)
        self._tasks: set[asyncio.Task] = set()

    def get(self, job_id: str) -> JobState | None:
        return self._jobs.get(job_id)

    def new(self, camera_id: str) -> JobState:
        active = sum(j.status in ("queued", "running") for j in self._jobs.values())
        if active >= self.max_jobs:
            raise JobsFullError(f"{active} footage jobs are queued or running; try again later")
        finished = [j for j in self._jobs.values() if j.status in ("done", "failed")]
        for old in finished[: max(0, len(finished) - KEEP_FINISHED + 1)]:
            del self._jobs[old.job_id]
        state = JobState(secrets.token_hex(8), camera_id, time.time())
        self._jobs[state.job_id] = state
        return state

    def forget(self, job_id: str) -> None:
        """A job refused before it started: as if never made."""
        self._jobs.pop(job_id, None)

    def start(self, runtime: Runtime, state: JobState, video: Path, job: FootageJob) -> None:
        task = asyncio.create_task(self._run(runtime, state, video, job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, runtime: Runtime, state: JobState, video: Path, job: FootageJob) -> None:
        try:
            async with self._one_at_a_time:
                state.status = "running"
                await _work(runtime, state, job)
            state.status, state.phase = "done", "finished"
        except FootageError as err:
            state.status, state.error = "failed", str(err)
        except Exception as err:  # the job fails, the service goes on
            log.exception("footage job %s failed", state.job_id)
            state.status, state.error = "failed", f"{type(err).__name__}: {err}"
        finally:
            await asyncio.to_thread(video.unlink, True)


async def _work(runtime: Runtime, state: JobState, job: FootageJob) -> None:
    crops = footage_root(runtime) / "crops"
    key, entries, tracks, _ = await asyncio.to_thread(prepare, job, crops, False, state.progress)
    state.recording = key
    # One writer at a time in this process (uploads, deletes); the image folder's lock across
    # processes, held per batch.
    async with runtime.write_lock:
        added, already = await asyncio.to_thread(
            add_entries,
            runtime.store,
            runtime.bundle,
            entries,
            32,
            False,
            state.progress,
            runtime.images.writing,
        )
    state.tracks, state.added, state.already_present = summary(tracks), added, already


def footage_root(runtime: Runtime) -> Path:
    """Recordings being processed and the crops kept of them, in the image folder (never in
    its hash-named shards, which the orphan sweep owns)."""
    return runtime.images.root / "footage"


def job_for(runtime: Runtime, video: Path, camera_id: str, start: float) -> FootageJob:
    s = runtime.settings
    options = AnalysisOptions(
        sample_fps=s.footage_sample_fps,
        crops_per_track=s.footage_crops_per_track,
        max_pixels=s.footage_max_pixels,
    )
    return FootageJob(video, camera_id, start, s.footage_detector, options, s.device)
