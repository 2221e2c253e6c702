"""Errors of the gallery index, so callers can tell a wrong model from a damaged index."""

from __future__ import annotations


class IndexStoreError(Exception):
    """Base class: the index cannot do what was asked (missing, closed, bad input, busy)."""


class IndexMismatchError(IndexStoreError):
    """The index was built by another model (fingerprint) or for another vector dimension."""


class IndexCorruptError(IndexStoreError):
    """A file of the index is damaged, truncated or disagrees with the manifest."""


class ItemExistsError(IndexStoreError):
    """An image_id is already taken by a file with different content."""


class EncodingMismatchError(IndexMismatchError):
    """The index's vectors were encoded in another precision or layout than the caller's."""


class StoreUnavailableError(IndexStoreError):
    """The store's server cannot be reached or cannot serve now (down, restarting, loading);
    the same request may work shortly. Its message names no address: it may reach clients."""

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
