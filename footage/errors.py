"""The one error of the footage package: a recording or detector file that cannot be used."""

from __future__ import annotations

from typing import Literal

from index.ingest.sources import GallerySourceError

# not_video: not a video FFmpeg reads, or of a format not accepted; too_large: frames over the
# pixel limit; damaged: truncated, no frames, undecodable; unreachable: a live stream that cannot
# be opened; invalid: anything else (values, detector files).
Reason = Literal["not_video", "too_large", "damaged", "unreachable", "invalid"]


class FootageError(GallerySourceError):
    """A recording that cannot be read (not a video, truncated, no frames, too large) or a
    detector file of the wrong layout. Raised before anything is written."""

    def __init__(self, message: str, reason: Reason = "invalid") -> None:
        super().__init__(message)
        self.reason = reason
