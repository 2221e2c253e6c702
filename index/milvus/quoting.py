"""String literals and id lists in Milvus boolean expressions.

Why a module of its own: ids and names go into expressions as text, and the engines disagree
on escapes. milvus-lite's expression parser rejects ``\\uXXXX`` escapes, so non-ASCII stays as
it is; and pymilvus's query iterator does not quote the ids it resumes from, so the store pages
with expressions built here rather than with that iterator (see
:func:`index.milvus.paging.iter_items`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence


def quote(text: str) -> str:
    """A Milvus string literal. Non-ASCII stays as it is: milvus-lite rejects ``\\u`` escapes."""
    return json.dumps(text, ensure_ascii=False)


def literal_list(values: Sequence[str]) -> str:
    """A Milvus list of string literals: ``["a", "b"]``."""
    return f"[{', '.join(quote(v) for v in values)}]"


def in_list(field: str, values: Sequence[str]) -> str:
    """``field in [...]``: rows whose ``field`` is one of ``values``."""
    return f"{field} in {literal_list(values)}"


def after(field: str, value: str) -> str:
    """``field > value``: the rows after ``value``, for keyset pagination."""
    return f"{field} > {quote(value)}"
