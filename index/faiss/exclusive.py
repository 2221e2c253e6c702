"""A writer's turn on an index, for work that must see no other write between reading the
committed rows and committing their replacement (a rebuild re-encodes every row meanwhile).

Other writers, in this process or another, wait for the turn to end; searches go on, on the
generation committed before it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from index.encoding import Encoding
from index.errors import IndexStoreError
from index.faiss import backend as faiss_backend
from index.faiss.commit import Committer
from index.faiss.manifest import Manifest, Row
from index.faiss.snapshot import Snapshot
from index.inputs import as_matrix, check_normalised, check_rows, plan_replacement


class ExclusiveWriter:
    """The committed generation as one writer holds it; valid only inside its ``with`` block."""

    def __init__(self, manifest: Manifest, committer: Committer, base: Snapshot) -> None:
        self._manifest = manifest
        self._committer = committer
        self._base = base
        self._rows: list[Row] | None = None
        self._active = True

    @property
    def generation(self) -> int:
        return self._base.generation

    @property
    def fingerprint(self) -> str:
        return self._base.fingerprint

    @property
    def dim(self) -> int:
        return self._base.dim

    @property
    def kind(self) -> str:
        return self._base.kind

    @property
    def next_id(self) -> int:
        """The id the next added item gets; ids below it may have been used already."""
        return self._base.next_id

    def rows(self) -> list[Row]:
        """Every committed row, in id order."""
        self._check_active()
        if self._rows is None:
            self._rows = self._manifest.rows()
        return list(self._rows)

    def replace_all(
        self,
        vectors: np.ndarray,
        rows: Sequence[Row],
        *,
        fingerprint: str | None = None,
        dim: int | None = None,
        kind: str | None = None,
        next_id: int | None = None,
        encoding: Encoding | None = None,
    ) -> None:
        """Commit a generation holding exactly ``rows`` (``vectors[n]`` for ``rows[n]``).

        Unchanged rows stay as they are; ``fingerprint``, ``dim``, ``kind`` and ``encoding``
        default to the current ones, ``next_id`` to the smallest id unused so far. Atomic and
        durable: readers see the old generation or this one.
        """
        self._check_active()
        rows = list(rows)
        fingerprint, dim, kind = self._settings(fingerprint, dim, kind)
        x = as_matrix(vectors, dim, "vectors")
        if len(x) != len(rows):
            raise IndexStoreError(f"{len(x)} vectors for {len(rows)} rows")
        check_normalised(x)
        check_rows(rows)
        next_id = self._next_id(rows, next_id)
        ids = np.array([r.id for r in rows], dtype=np.int64)
        master = faiss_backend.build(kind, dim, x, ids)
        labels = {r.id: (r.item.image_id, r.item.person_id) for r in rows}
        changes = plan_replacement(self.rows(), rows)
        meta = {"fingerprint": fingerprint, "dim": dim, "kind": kind, "next_id": next_id}
        if encoding is not None:
            meta.update(encoding.to_meta())
        self._base = self._committer.commit(self._base, master, labels, changes, meta)
        self._rows = None

    def close(self) -> None:
        self._active = False

    def _settings(
        self, fingerprint: str | None, dim: int | None, kind: str | None
    ) -> tuple[str, int, str]:
        fingerprint = self._base.fingerprint if fingerprint is None else fingerprint
        dim = self._base.dim if dim is None else dim
        kind = faiss_backend.check_kind(self._base.kind if kind is None else kind)
        if not isinstance(fingerprint, str) or not fingerprint:
            raise IndexStoreError("an index needs the bundle fingerprint it is built for")
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise IndexStoreError(f"dimension must be a positive integer, got {dim!r}")
        return fingerprint, dim, kind

    def _next_id(self, rows: list[Row], wanted: int | None) -> int:
        used = max((r.id for r in rows), default=-1) + 1
        if wanted is None:
            return max(self._base.next_id, used)
        if isinstance(wanted, bool) or not isinstance(wanted, int) or wanted < used:
            raise IndexStoreError(f"next_id must be an integer of at least {used}, got {wanted!r}")
        return wanted

    def _check_active(self) -> None:
        if not self._active:
            raise IndexStoreError("this exclusive write has ended; start another")
