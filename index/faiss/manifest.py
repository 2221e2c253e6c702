"""The SQLite manifest: faiss id ↔ image metadata, plus the committed generation.

The manifest is the index's source of truth. One transaction that writes the rows together with
the new generation number is the commit point of every change (see ``commit.py``). Its tables,
and the upgrade of manifests made before per-image metadata, are in ``manifest_schema.py``.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from index.errors import IndexCorruptError, IndexStoreError
from index.faiss import filter_sql, manifest_schema
from index.filters import GalleryFilter
from index.items import ItemMeta

MANIFEST_FILE = "manifest.sqlite"
REQUIRED_META = ("format", "version", "fingerprint", "dim", "kind", "generation", "next_id")
_CHUNK = 500  # stays under SQLite's bound-parameter limit
_COLUMNS = manifest_schema.COLUMNS


@dataclass(frozen=True)
class Row:
    id: int
    item: ItemMeta


def _row(values: tuple) -> Row:
    return Row(*manifest_schema.item_of(values))


def _chunks(values: Sequence, size: int = _CHUNK) -> Iterator[Sequence]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


class Manifest:
    """A thread-safe wrapper around one SQLite connection (WAL, full fsync on commit)."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self._conn = conn
        self._lock = threading.RLock()
        self._has_metadata = False  # once True, stays True: columns are never dropped

    # --- opening ----------------------------------------------------------------------------

    @classmethod
    def _connect(cls, path: Path) -> Manifest:
        conn = sqlite3.connect(str(path), timeout=30, isolation_level=None, check_same_thread=False)
        manifest = cls(path, conn)
        try:
            with manifest._guard():
                # WAL lets readers in other processes go on while a writer commits.
                conn.execute("PRAGMA journal_mode=WAL").fetchone()
                # FULL: a commit is on disk when it returns (NORMAL may lose it on power loss).
                conn.execute("PRAGMA synchronous=FULL")
                # A removed image's metadata (person, camera, time) is zeroed, not just unlinked.
                conn.execute("PRAGMA secure_delete=ON")
        except BaseException:
            conn.close()
            raise
        return manifest

    @classmethod
    def create(cls, path: Path, meta: Mapping[str, object]) -> Manifest:
        manifest = cls._connect(path)
        try:
            with manifest._guard(), manifest._transaction():
                for statement in manifest_schema.TABLES:
                    manifest._conn.execute(statement)
                manifest._conn.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?)",
                    [(k, str(v)) for k, v in meta.items()],
                )
        except BaseException:
            manifest.close()
            raise
        return manifest

    @classmethod
    def open(cls, path: Path) -> Manifest:
        if not path.is_file():
            raise IndexStoreError(f"{path.parent} is not a gallery index: {path.name} is missing")
        manifest = cls._connect(path)
        try:
            meta = manifest.meta()
            missing = [k for k in REQUIRED_META if k not in meta]
            if missing:
                raise IndexCorruptError(f"{path}: manifest lacks {', '.join(missing)}")
        except BaseException:
            manifest.close()
            raise
        return manifest

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def forget_removed(self) -> None:
        """Copy the WAL into the database and truncate it: until then the WAL still holds the
        removed rows as they were written. Best effort: a reader in another process may hold the
        WAL (the checkpoint then leaves it), and the next removal tries again."""
        with self._guard():
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()

    # --- plumbing ---------------------------------------------------------------------------

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Hold the connection and turn SQLite errors into index errors that name the file."""
        with self._lock:
            try:
                yield
            except sqlite3.OperationalError as err:
                if "locked" in str(err) or "busy" in str(err):
                    raise IndexStoreError(f"{self.path}: manifest is busy ({err})") from None
                raise IndexCorruptError(
                    f"{self.path}: not a valid index manifest ({err})"
                ) from None
            except sqlite3.IntegrityError as err:
                raise IndexStoreError(f"{self.path}: manifest constraint failed ({err})") from None
            except sqlite3.DatabaseError as err:
                raise IndexCorruptError(
                    f"{self.path}: not a valid index manifest ({err})"
                ) from None

    @contextmanager
    def _transaction(self, mode: str = "IMMEDIATE") -> Iterator[None]:
        self._conn.execute(f"BEGIN {mode}")
        try:
            yield
        except BaseException:
            if self._conn.in_transaction:  # SQLite may have rolled back on its own already
                self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """A read transaction: every read inside sees the same committed state."""
        with self._guard(), self._transaction("DEFERRED"):
            yield

    # --- reads ------------------------------------------------------------------------------

    def meta(self) -> dict[str, str]:
        with self._guard():
            return dict(self._conn.execute("SELECT key, value FROM meta").fetchall())

    def generation(self) -> int:
        with self._guard():
            row = self._conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        if row is None:
            raise IndexCorruptError(f"{self.path}: manifest has no generation")
        return int(row[0])

    def labels(self) -> dict[int, tuple[str, str | None]]:
        """faiss id -> (image_id, person_id) for every item: what a search needs per hit."""
        with self._guard():
            cursor = self._conn.execute("SELECT id, image_id, person_id FROM items")
            return {row[0]: (row[1], row[2]) for row in cursor}

    def count(self) -> int:
        with self._guard():
            return int(self._conn.execute("SELECT COUNT(*) FROM items").fetchone()[0])

    def get(self, image_id: str) -> ItemMeta | None:
        with self._guard():
            row = self._conn.execute(
                f"SELECT {_COLUMNS} FROM {self._items()} WHERE image_id = ?", (image_id,)
            ).fetchone()
        return None if row is None else _row(row).item

    def get_many(self, image_ids: Sequence[str]) -> dict[str, ItemMeta]:
        """The rows of the ids present, a bounded number of ids per statement."""
        found: dict[str, ItemMeta] = {}
        with self._guard():
            for chunk in _chunks(list(dict.fromkeys(image_ids))):
                marks = ",".join("?" * len(chunk))
                rows = self._conn.execute(
                    f"SELECT {_COLUMNS} FROM {self._items()} WHERE image_id IN ({marks})",
                    list(chunk),
                ).fetchall()
                found.update((item.image_id, item) for item in (_row(r).item for r in rows))
        return found

    def page(self, after_id: int, limit: int) -> list[Row]:
        with self._guard():
            rows = self._conn.execute(
                f"SELECT {_COLUMNS} FROM {self._items()} WHERE id > ? ORDER BY id LIMIT ?",
                (after_id, limit),
            ).fetchall()
        return [_row(r) for r in rows]

    def rows(self) -> list[Row]:
        with self._guard():
            rows = self._conn.execute(
                f"SELECT {_COLUMNS} FROM {self._items()} ORDER BY id"
            ).fetchall()
        return [_row(r) for r in rows]

    def ids_where(self, where: GalleryFilter) -> tuple[int, np.ndarray]:
        """(committed generation, sorted faiss ids of the items that pass ``where``), read in
        one transaction so the ids belong to that generation."""
        sql, params = filter_sql.condition(where)
        with self.snapshot():
            generation = self.generation()
            cursor = self._conn.execute(
                f"SELECT id FROM {self._items()} WHERE {sql} ORDER BY id", params
            )
            ids = np.fromiter((row[0] for row in cursor), dtype=np.int64)
        return generation, ids

    def _items(self) -> str:
        """The FROM clause of item reads: an older manifest's rows get NULL metadata."""
        if not self._has_metadata:
            self._has_metadata = manifest_schema.has_metadata(self._conn)
        return manifest_schema.source(self._has_metadata)

    def _lookup(self, column: str, values: Sequence[str], out: str) -> dict[str, object]:
        found: dict[str, object] = {}
        unique = list(dict.fromkeys(values))
        with self._guard():
            for chunk in _chunks(unique):
                marks = ",".join("?" * len(chunk))
                query = f"SELECT {column}, {out} FROM items WHERE {column} IN ({marks})"
                found.update(self._conn.execute(query, list(chunk)).fetchall())
        return found

    def sha_by_image_id(self, image_ids: Sequence[str]) -> dict[str, str]:
        return self._lookup("image_id", image_ids, "sha256")  # type: ignore[return-value]

    def image_id_by_sha(self, shas: Sequence[str]) -> dict[str, str]:
        return self._lookup("sha256", shas, "image_id")  # type: ignore[return-value]

    def id_by_image_id(self, image_ids: Sequence[str]) -> dict[str, int]:
        return self._lookup("image_id", image_ids, "id")  # type: ignore[return-value]

    # --- schema and the commit point --------------------------------------------------------

    def upgrade(self) -> bool:
        """Give a manifest made before per-image metadata its columns, in one transaction.
        Only a writer holding the index's writer lock may call it. True when it changed."""
        if self._has_metadata:
            return False
        with self._guard(), self._transaction():
            changed = manifest_schema.add_metadata_columns(self._conn)
        self._has_metadata = True  # only once committed: a rolled-back upgrade added nothing
        return changed

    def commit(
        self,
        expected_generation: int,
        meta: Mapping[str, object],
        inserts: Sequence[Row] = (),
        deletes: Sequence[int] = (),
        sha_updates: Sequence[tuple[int, str]] = (),
    ) -> None:
        """Apply row changes and meta (including the new generation) in one transaction.

        Fails without writing if another writer committed since ``expected_generation`` was read.
        """
        with self._guard(), self._transaction():
            current = self._conn.execute(
                "SELECT value FROM meta WHERE key = 'generation'"
            ).fetchone()
            if current is None or int(current[0]) != expected_generation:
                raise IndexStoreError(
                    f"{self.path}: generation moved from {expected_generation} to "
                    f"{current and current[0]} during a write; retry"
                )
            for chunk in _chunks(list(deletes)):
                marks = ",".join("?" * len(chunk))
                self._conn.execute(f"DELETE FROM items WHERE id IN ({marks})", list(chunk))
            self._conn.executemany(
                "UPDATE items SET sha256 = ? WHERE id = ?", [(s, i) for i, s in sha_updates]
            )
            if inserts:  # a safety net: writers upgrade first (``upgrade``), under their lock
                manifest_schema.add_metadata_columns(self._conn)
            self._conn.executemany(
                manifest_schema.INSERT, [manifest_schema.values(r.id, r.item) for r in inserts]
            )
            self._conn.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [(k, str(v)) for k, v in meta.items()],
            )
        if inserts:
            self._has_metadata = True
