"""What the API accepts as gallery metadata (camera, capture time, tags) and how it reads it.

One set of rules for the upload form and the search filters, so a value that can be stored can
also be searched for. Camera ids and tags are plain tokens (letters, digits and a few marks, no
spaces or commas): tags arrive comma-separated in a form field, and both end up inside a store's
filter expression, where a narrow alphabet leaves nothing to escape. Times are ISO 8601; one
without a zone is UTC, and every time the API returns is UTC.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime

from index.metadata_fields import TimeOutOfRangeError, iso_seconds

CAMERA_ID_REGEX = r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}"
TAG_REGEX = r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}"
MAX_TAGS = 16  # per image, and per filter
MAX_FILTER_VALUES = 256  # per list of a search filter

CAMERA_ID_PATTERN = re.compile(CAMERA_ID_REGEX)
TAG_PATTERN = re.compile(TAG_REGEX)

CAMERA_ID_RULE = "1-128 letters, digits, '.', '_', ':', '/' or '-', starting with a letter or digit"
TAG_RULE = "1-64 letters, digits, '.', '_', ':' or '-', starting with a letter or digit"
TIME_RULE = "an ISO 8601 time such as 2024-05-01T12:30:00Z (no zone: UTC)"


class MetadataError(ValueError):
    """A value the API cannot store or filter on; the message names the field."""


def check_camera_id(value: str, field: str = "camera_id") -> str:
    if not CAMERA_ID_PATTERN.fullmatch(value):
        raise MetadataError(f"{field} must be {CAMERA_ID_RULE}")
    return value


def check_tag(value: str, field: str = "tags") -> str:
    if not TAG_PATTERN.fullmatch(value):
        raise MetadataError(f"{field} must each be {TAG_RULE}; got {value[:70]!r}")
    return value


def split_tags(values: Iterable[str], field: str = "tags") -> tuple[str, ...]:
    """Tags from form values, each a comma-separated list: blanks dropped, repeats kept once,
    order kept."""
    tags: dict[str, None] = {}
    for value in values:
        for part in value.split(","):
            tag = part.strip()
            if tag:
                tags[check_tag(tag, field)] = None
    if len(tags) > MAX_TAGS:
        raise MetadataError(f"{field}: at most {MAX_TAGS} tags, got {len(tags)}")
    return tuple(tags)


def parse_time(text: str, field: str = "captured_at") -> float:
    """Seconds since the epoch of an ISO 8601 time; a time with no zone is UTC (the index's
    reading, :func:`index.metadata_fields.iso_seconds`)."""
    try:
        return iso_seconds(text)
    except TimeOutOfRangeError:
        raise MetadataError(f"{field} is outside the years 1-9999 once in UTC") from None
    except ValueError:
        raise MetadataError(f"{field} must be {TIME_RULE}; got {text[:40]!r}") from None


def as_utc(seconds: float | None) -> datetime | None:
    """A stored time as the API returns it (UTC), or None when there is none."""
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC)
