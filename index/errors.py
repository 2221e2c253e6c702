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
