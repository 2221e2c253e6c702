"""The one error of the footage package: a recording or detector file that cannot be used."""

from __future__ import annotations

from index.gallery_sources import GallerySourceError


class FootageError(GallerySourceError):
    """A recording that cannot be read (not a video, truncated, no frames, too large) or a
    detector file of the wrong layout. Raised before anything is written."""
