"""A track's first and last time, kept with each of its crops as two tags, so every store
engine keeps them without a schema change and every reader of an item sees them:
``track-start:2024-05-01T08:00:01.500Z`` and ``track-end:...`` (UTC, milliseconds)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

START = "track-start:"
END = "track-end:"
# Track ids read person_id = "track:CAMERA:RECORDING:N"; anything else is not a track.
TRACK_PREFIX = "track:"


def track_person_id(camera: str, recording: str, number: int) -> str:
    return f"{TRACK_PREFIX}{camera}:{recording}:{number}"


def is_track(person_id: str | None) -> bool:
    return person_id is not None and person_id.startswith(TRACK_PREFIX)


def _stamp(seconds: float) -> str:
    moment = datetime.fromtimestamp(round(seconds, 3), UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def span_tags(first: float, last: float) -> tuple[str, str]:
    """The two tags of a track seen from ``first`` to ``last`` (seconds since the epoch)."""
    return f"{START}{_stamp(first)}", f"{END}{_stamp(last)}"


def span_of(tags: Iterable[str]) -> tuple[float, float] | None:
    """(first, last) seconds since the epoch from an item's tags; None when it has none."""
    found: dict[str, float] = {}
    for tag in tags:
        for prefix in (START, END):
            if tag.startswith(prefix):
                try:
                    text = tag[len(prefix) :].replace("Z", "+00:00")
                    found[prefix] = datetime.fromisoformat(text).timestamp()
                except ValueError:
                    pass
    if START in found and END in found:
        return found[START], found[END]
    return None
