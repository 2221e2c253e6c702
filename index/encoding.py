"""How a gallery's vectors were encoded, recorded with the index so queries are encoded alike.

A bf16 encode and an fp32 encode of the same image differ in the last bits, and a part-level
layout is not comparable with a global vector at all: scores across the two are meaningless
while still looking plausible. So every store records its :class:`Encoding` (the folder index
in its manifest meta, Milvus in its collection properties) and refuses, on open, a runtime that
encodes queries another way. Indexes made before the record existed have no part-level layout
(global) but an ``unknown`` precision: before it was recorded, a GPU encoded in bf16 and a CPU in
fp32, and nothing says which one built them. Any runtime may search those, with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from index.errors import EncodingMismatchError, IndexMismatchError, IndexStoreError

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16")
UNKNOWN = "unknown"  # only ever read from an index made before precisions were recorded
GLOBAL = "global"
PRECISION_KEY = "encoding_precision"
LAYOUT_KEY = "encoding_layout"


@dataclass(frozen=True)
class Encoding:
    """``precision``: the dtype the towers ran in (``fp32`` | ``bf16``; ``unknown`` for an index
    made before it was recorded). ``layout``: ``global`` (one vector per image) or an opaque
    description of a part-level layout, compared as is."""

    precision: str = "fp32"
    layout: str = GLOBAL

    def __post_init__(self) -> None:
        if self.precision not in (*PRECISIONS, UNKNOWN):
            raise IndexStoreError(
                f"unknown encoding precision {self.precision!r}: use one of {', '.join(PRECISIONS)}"
            )
        if not isinstance(self.layout, str) or not self.layout:
            raise IndexStoreError(f"an encoding layout is a non-empty string, got {self.layout!r}")

    def to_meta(self) -> dict[str, str]:
        """The keys recorded with the index (manifest meta, Milvus properties)."""
        return {PRECISION_KEY: self.precision, LAYOUT_KEY: self.layout}

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> Encoding:
        """The recorded encoding; keys an older index lacks mean unknown / global."""
        try:
            return cls(
                precision=str(meta.get(PRECISION_KEY) or UNKNOWN),
                layout=str(meta.get(LAYOUT_KEY) or GLOBAL),
            )
        except IndexStoreError as err:
            raise IndexMismatchError(
                f"the index records an encoding this code cannot use: {err}"
            ) from None

    def describe(self) -> str:
        return f"{self.precision}/{self.layout}"


def encoding_of(bundle: Any) -> Encoding:
    """How ``bundle`` (a bundle.encoders.Bundle, in the mode it was opened in) encodes."""
    return Encoding(bundle.precision, bundle.layout)


def check(recorded: Encoding, expected: Encoding | None, where: str = "the gallery") -> None:
    """Refuse a runtime whose queries are encoded otherwise than ``where``'s vectors
    (``expected`` None: accept any)."""
    if expected is None or expected == recorded:
        return
    if recorded.layout != expected.layout:
        raise EncodingMismatchError(
            f"{where} holds {_layout_words(recorded.layout)} but the bundle is used in "
            f"{_mode_words(expected.layout)}: use the bundle in the mode the gallery was built "
            "with, or re-encode the gallery"
        )
    if recorded.precision == UNKNOWN:
        log.warning(
            "%s does not record its encode precision (made before it was recorded): it is "
            "searched with %s queries; re-encode it to record one",
            where,
            expected.precision,
        )
        return
    raise EncodingMismatchError(
        f"{where} was encoded in {recorded.precision} but this runtime encodes queries in "
        f"{expected.precision}: set TPS_PRECISION={recorded.precision} (--precision "
        f"{recorded.precision} on the index CLI), or re-encode the gallery"
    )


def _layout_words(layout: str) -> str:
    return "global vectors" if layout == GLOBAL else f"part-level vectors ({layout})"


def _mode_words(layout: str) -> str:
    return "global mode" if layout == GLOBAL else f"parts mode ({layout})"
