"""Where a followed stream's finished tracks go: their crops on disk, then the store, then one
line each in the session's ``tracks.jsonl``.

The manifest is appended to, never rewritten: a follower runs for weeks, and rewriting a file
that grows with every track would cost more with each one. A track the store cannot take yet
(StoreUnavailableError: a Milvus server restarting) waits in memory, in order, and is tried
again after the store's retry delay.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from footage.analysis import Track
from footage.job import add_entries, crop_file, crop_image_id, save_crop
from footage.spans import span_tags, track_person_id
from index.errors import StoreUnavailableError
from index.ingest.sources import GalleryEntry

if TYPE_CHECKING:
    from bundle.encoders import Bundle
    from index.gallery_store import GalleryStore

log = logging.getLogger(__name__)

STREAM_MANIFEST = "tracks.jsonl"


def read_stream_tracks(folder: Path) -> list[dict[str, Any]]:
    """The tracks a session wrote to ``folder``, in order (each with ``added``)."""
    lines = (Path(folder) / STREAM_MANIFEST).read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


class StreamSession:
    def __init__(
        self,
        camera: str,
        key: str,
        folder: Path,
        store: GalleryStore,
        bundle: Bundle,
        guard: Callable[[], AbstractContextManager[Any]],
        batch_size: int = 64,
    ) -> None:
        self.camera, self.key, self.folder = camera, key, folder
        self.store, self.bundle, self.guard = store, bundle, guard
        self.batch_size = batch_size
        self.tracks: list[dict[str, Any]] = []  # what the report says of each track
        self.added = 0
        self.crops = 0
        self.pending: list[tuple[dict[str, Any], list[GalleryEntry]]] = []
        self._next_try = 0.0

    def add(self, track: Track, anchor: float) -> None:
        """Write ``track``'s crops (times from ``anchor``, the clock time of the connection's
        first frame) and add them to the store, after any track still waiting."""
        number = len(self.tracks) + 1
        person = track_person_id(self.camera, self.key, number)
        first, last = anchor + track.first_time, anchor + track.last_time
        self.folder.mkdir(parents=True, exist_ok=True)
        crops, entries = [], []
        for crop in track.crops:
            name = crop_file(number, crop.frame)
            save_crop(self.folder / name, crop.rgb)
            taken = anchor + crop.time
            crops.append({"file": name, "frame": crop.frame, "captured_at": taken, "box": crop.box})
            entries.append(
                GalleryEntry(
                    path=self.folder / name,
                    image_id=crop_image_id(self.key, number, crop.frame),
                    person_id=person,
                    camera_id=self.camera,
                    captured_at=taken,
                    tags=span_tags(first, last),
                )
            )
        record = {"track": number, "person_id": person, "first": first, "last": last}
        self.tracks.append({**record, "crops": len(entries)})
        self.crops += len(entries)
        self.pending.append(({**record, "crops": crops}, entries))
        self.flush()

    def flush(self, now: float | None = None) -> None:
        """Add the waiting tracks, oldest first; with ``now`` (time.monotonic), only once the
        store's retry delay after its last refusal is over."""
        if not self.pending or (now is not None and now < self._next_try):
            return
        while self.pending:
            record, entries = self.pending[0]
            try:
                added, _ = add_entries(
                    self.store, self.bundle, entries, self.batch_size, False, guard=self.guard
                )
            except StoreUnavailableError as err:
                self._next_try = time.monotonic() + err.retry_after_s
                log.warning(
                    "%s: the store is unavailable (%s): %d track(s) wait to be added",
                    self.camera,
                    err,
                    len(self.pending),
                )
                return
            self.pending.pop(0)
            self.added += added
            self._write({**record, "added": True})
            log.info(
                "%s: track %d added (%s to %s, %d crops)",
                self.camera,
                record["track"],
                _clock_time(record["first"]),
                _clock_time(record["last"]),
                len(entries),
            )

    def write_pending(self) -> None:
        """Record the tracks that never reached the store (``added: false``), for the operator
        who adds them later."""
        for record, _ in self.pending:
            self._write({**record, "added": False})

    def _write(self, record: dict[str, Any]) -> None:
        with open(self.folder / STREAM_MANIFEST, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())


def _clock_time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%H:%M:%S")
