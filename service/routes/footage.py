"""Recordings into the gallery: ``POST /v1/footage`` takes one recording and runs the footage
job (detect, track, keep the best crops, add them with the track as the person) in the
background; ``GET /v1/footage/{job}`` reports its progress and the tracks it added."""

from __future__ import annotations

import asyncio
import shutil
from datetime import datetime
from pathlib import Path

from fastapi import APIRouter, Depends, HTTPException, Request, status
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from footage.errors import FootageError
from footage.video import scan
from index.metadata_fields import iso_seconds, normalise_id
from service.access import audit_events
from service.access.retention import past_retention
from service.access.security import require_read_key, require_write_key
from service.deps import RuntimeDep
from service.footage_jobs import FootageJobs, JobsFullError, JobState, footage_root, job_for
from service.metadata import MetadataError, as_utc, check_camera_id
from service.runtime import Runtime
from service.schemas import FOOTAGE_REQUEST_BODY, ErrorResponse

router = APIRouter(prefix="/v1/footage", tags=["footage"])

FOOTAGE_PATH = "/v1/footage"
FORM_FIELDS = ("file", "camera_id", "start")
# What a refused recording is answered with (footage/errors.py's reasons).
STATUS_OF = {
    "not_video": status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
    "too_large": status.HTTP_413_CONTENT_TOO_LARGE,
    "damaged": status.HTTP_422_UNPROCESSABLE_CONTENT,
    "invalid": status.HTTP_422_UNPROCESSABLE_CONTENT,
}


class FootageTrack(BaseModel):
    track: int = Field(description="The track's number in its recording, from 1.")
    person_id: str = Field(description="The track's id: its crops' person_id.")
    first_seen: datetime = Field(description="When the track was first seen (UTC).")
    last_seen: datetime = Field(description="When it was last seen (UTC).")
    crops: int = Field(description="Crops of the track added to the gallery.")


class FootageJobStatus(BaseModel):
    job_id: str
    status: str = Field(description="queued, running, done or failed.")
    phase: str = Field(description="waiting, detecting, encoding or finished.")
    done: int = Field(description="Frames analysed, or crops encoded, so far in this phase.")
    total: int = Field(description="Of how many (an estimate while detecting).")
    camera_id: str
    recording: str | None = Field(description="The recording's key (file and settings hash).")
    tracks: list[FootageTrack]
    added: int = Field(description="Crops added to the gallery.")
    already_present: int = Field(description="Crops the gallery already held (a re-sent file).")
    error: str | None = Field(description="Why the job failed; nothing of it was added.")


ERRORS = {
    401: {"model": ErrorResponse, "description": "Missing, unknown or revoked API key."},
    403: {"model": ErrorResponse, "description": "The key's role may not do this."},
    413: {"model": ErrorResponse, "description": "File, or its frames, too large."},
    415: {"model": ErrorResponse, "description": "Not a video, or not an accepted format."},
    422: {"model": ErrorResponse, "description": "Damaged or truncated video, or bad fields."},
    429: {"model": ErrorResponse, "description": "Too many footage jobs queued."},
}


def _jobs(request: Request, runtime: Runtime) -> FootageJobs:
    jobs = getattr(request.app.state, "footage_jobs", None)
    if jobs is None:
        jobs = request.app.state.footage_jobs = FootageJobs(runtime.settings.footage_max_jobs)
    return jobs


def _text(form, name: str) -> str:
    value = form.get(name)
    if not isinstance(value, str) or not normalise_id(value):
        raise HTTPException(422, f"the form field '{name}' is required, as text")
    return normalise_id(value)


async def _save(part: UploadFile, to: Path) -> int:
    def copy() -> int:
        to.parent.mkdir(parents=True, exist_ok=True)
        part.file.seek(0)
        with open(to, "wb") as out:
            shutil.copyfileobj(part.file, out, 1 << 20)
        return to.stat().st_size

    return await asyncio.to_thread(copy)


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=FootageJobStatus,
    summary="Add the people of a recording to the gallery (in the background)",
    description="A `multipart/form-data` body: the recording in `file`, the camera's id in "
    "`camera_id` and when its first frame was taken in `start` (ISO 8601; no zone means UTC). "
    "The file is checked first (size, format, frame size, every packet readable): a refused "
    "one changes nothing. Then the job detects and tracks the people in the background and "
    "adds each track's best crops with `person_id` = the track's id; poll "
    "`GET /v1/footage/{job}`. Needs a writer key.",
    responses={400: {"model": ErrorResponse, "description": "The multipart body cannot be parsed."}}
    | ERRORS,
    openapi_extra={"requestBody": FOOTAGE_REQUEST_BODY},
    dependencies=[Depends(require_write_key)],
)
async def post_footage(request: Request, runtime: RuntimeDep):
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise HTTPException(415, "send the recording as multipart/form-data, in the field 'file'")
    try:
        form = await request.form(max_files=1, max_fields=4, max_part_size=4096)
    except StarletteHTTPException as err:
        raise HTTPException(400, f"the multipart body cannot be parsed: {err.detail}") from None
    try:
        extra = sorted(k for k in form if k not in FORM_FIELDS)
        if extra:
            raise HTTPException(422, f"unknown form field(s): {', '.join(extra)}")
        part = form.get("file")
        if not isinstance(part, UploadFile):
            raise HTTPException(422, "the field 'file' must hold the recording")
        camera = _text(form, "camera_id")
        try:
            check_camera_id(camera)
            start = iso_seconds(_text(form, "start"))
        except (MetadataError, ValueError) as err:
            raise HTTPException(422, str(err)) from None
        if (why := past_retention(start, runtime.settings)) is not None:
            raise HTTPException(422, why.replace("captured_at", "start"))
        state = _new_job(request, runtime, camera)
        video = footage_root(runtime) / "incoming" / f"{state.job_id}.video"
        try:
            size = await _save(part, video)
        except BaseException:
            await asyncio.to_thread(video.unlink, True)
            _jobs(request, runtime).forget(state.job_id)
            raise
    finally:
        await form.close()
    try:
        s = runtime.settings
        await asyncio.to_thread(scan, video, tuple(s.footage_formats), s.footage_max_pixels)
    except FootageError as err:
        await asyncio.to_thread(video.unlink, True)
        _jobs(request, runtime).forget(state.job_id)
        message = str(err).replace(str(video), "the recording")
        raise HTTPException(STATUS_OF[err.reason], message) from None
    name = (part.filename or "recording")[:100]
    details = {"job": state.job_id, "camera_id": camera, "bytes": size, "file": name}
    await audit_events.record(request, "footage_upload", details)
    _jobs(request, runtime).start(runtime, state, video, job_for(runtime, video, camera, start))
    return _status(state)


def _new_job(request: Request, runtime: Runtime, camera: str) -> JobState:
    try:
        return _jobs(request, runtime).new(camera)
    except JobsFullError as err:
        raise HTTPException(429, str(err), headers={"Retry-After": "10"}) from None


@router.get(
    "/{job_id}",
    response_model=FootageJobStatus,
    summary="A footage job's progress and the tracks it added",
    responses={404: {"model": ErrorResponse}} | ERRORS,
    dependencies=[Depends(require_read_key)],
)
async def get_footage(job_id: str, request: Request, runtime: RuntimeDep) -> FootageJobStatus:
    state = _jobs(request, runtime).get(job_id)
    if state is None:
        raise HTTPException(404, f"no footage job {job_id[:40]!r} (jobs are kept until a restart)")
    await audit_events.record(request, "footage_status", {"job": job_id})
    return _status(state)


def _status(state: JobState) -> FootageJobStatus:
    return FootageJobStatus(
        job_id=state.job_id,
        status=state.status,
        phase=state.phase,
        done=state.done,
        total=state.total,
        camera_id=state.camera_id,
        recording=state.recording,
        tracks=[
            FootageTrack(
                track=t["track"],
                person_id=t["person_id"],
                first_seen=as_utc(t["first"]),
                last_seen=as_utc(t["last"]),
                crops=t["crops"],
            )
            for t in state.tracks
        ],
        added=state.added,
        already_present=state.already_present,
        error=state.error,
    )
