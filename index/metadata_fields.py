"""Reading per-image metadata values as people write them: ids, capture times and tags.

One set of rules for every place a value comes in (a metadata sidecar, a ``jsonl``/CSV data set,
the search command's time bounds), so a time that parses in one parses in all. Each parser
raises :class:`ValueError` with a message that names what was expected; the caller adds where.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

TIME_HELP = (
    "ISO 8601 (e.g. 2024-05-01T14:00:00+02:00; without a timezone it is UTC) "
    "or seconds since the epoch"
)
CSV_TAG_SEPARATOR = ";"


def is_missing(value: Any) -> bool:
    """An absent field, JSON null and an empty CSV cell all mean "not known"."""
    return value is None or (isinstance(value, str) and not value.strip())


# The white space around an id that is not part of it: ASCII only, the set the API's documented
# patterns allow around a filter value (a JSON Schema regex's \s is wider than str.strip's).
ID_PADDING = " \t\n\r\x0b\x0c"


def normalise_id(text: str) -> str:
    """The one form of a person id, camera id or tag, for storing it and for filtering on it
    alike: surrounding white space is not part of an id (" spaced " is "spaced")."""
    return text.strip(ID_PADDING)


def parse_id(value: Any) -> str:
    """A person or camera id: a string or an integer, kept as its (normalised) text."""
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).strip():
        raise ValueError(f"expected a string or an integer, got {value!r}")
    return normalise_id(str(value))


def parse_time(value: Any) -> float:
    """Seconds since the epoch (UTC) from a number or a string: ISO 8601, or a number."""
    if isinstance(value, bool):
        raise ValueError(f"expected a time ({TIME_HELP}), got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _time_from_text(value.strip())
    else:
        raise ValueError(f"expected a time ({TIME_HELP}), got {value!r}")
    if not math.isfinite(seconds):
        raise ValueError(f"expected a finite time, got {value!r}")
    return seconds


def _time_from_text(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return iso_seconds(text)
    except ValueError:
        raise ValueError(f"cannot read {text!r} as a time ({TIME_HELP})") from None


def iso_seconds(text: str) -> float:
    """Seconds since the epoch of an ISO 8601 time; no zone means UTC. The one reading of a
    time for the CLI, sidecars and the API. ValueError when unreadable or outside the years
    1-9999 once in UTC."""
    value = text.strip()
    if len(value) > 10:  # the date-time separator and a Z zone may be lower case in RFC 3339
        value = value[:10] + value[10:].upper()
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        # In range once in UTC, so it can be given back as a UTC time.
        return moment.astimezone(UTC).timestamp()
    except (OverflowError, ValueError):
        raise TimeOutOfRangeError(f"{text!r} is outside the years 1-9999 once in UTC") from None


class TimeOutOfRangeError(ValueError):
    """A readable time that falls outside the years 1-9999 once converted to UTC."""


def parse_tags(value: Any, csv: bool) -> tuple[str, ...]:
    """Tags: a JSON list of strings, or in a CSV cell a ``;``-separated list."""
    if csv:
        if not isinstance(value, str):
            raise ValueError(f"expected tags separated by {CSV_TAG_SEPARATOR!r}, got {value!r}")
        parts = [t.strip() for t in value.split(CSV_TAG_SEPARATOR)]
        return tuple(dict.fromkeys(t for t in parts if t))
    if not isinstance(value, list) or not all(isinstance(t, str) and t.strip() for t in value):
        raise ValueError(f"expected a JSON list of non-empty strings, got {value!r}")
    return tuple(dict.fromkeys(t.strip() for t in value))
