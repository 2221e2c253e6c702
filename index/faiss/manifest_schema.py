"""The manifest's tables, how an item becomes a row and back, and the upgrade of older manifests.

The first manifests had no per-image metadata (camera, capture time, tags). Such a manifest still
opens: its readers see the missing columns as NULL (``source`` wraps the table in a sub-select
that supplies them), and the first writer adds them, under the writer lock, in one transaction.
Readers in other processes never break: they ask which columns exist on every read until they
have seen the new ones, and an added column changes nothing an older reader selects.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from index.items import ItemMeta

# Filters on a camera or a time window read these instead of every row.
INDEXES = (
    "CREATE INDEX IF NOT EXISTS items_camera ON items (camera_id)",
    "CREATE INDEX IF NOT EXISTS items_captured ON items (captured_at)",
)
TABLES = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    """CREATE TABLE items (
        id INTEGER PRIMARY KEY,          -- the faiss id
        image_id TEXT NOT NULL UNIQUE,
        person_id TEXT,
        source_path TEXT NOT NULL,
        sha256 TEXT NOT NULL UNIQUE,     -- dedupe by content
        added_at REAL NOT NULL,
        camera_id TEXT,
        captured_at REAL,                -- seconds since the epoch, UTC
        tags TEXT                        -- a JSON list of strings; NULL when there are none
    )""",
    *INDEXES,
)
# Added by the upgrade of a manifest made before per-image metadata existed.
METADATA_COLUMNS = {"camera_id": "TEXT", "captured_at": "REAL", "tags": "TEXT"}
COLUMNS = "id, image_id, person_id, source_path, sha256, added_at, camera_id, captured_at, tags"
INSERT = f"INSERT INTO items ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
# An old manifest read as if it had the new columns; aliased ``items`` so queries need not care.
_OLD_SOURCE = (
    "(SELECT id, image_id, person_id, source_path, sha256, added_at, "
    "NULL AS camera_id, NULL AS captured_at, NULL AS tags FROM items) AS items"
)


def has_metadata(conn: sqlite3.Connection) -> bool:
    """Whether the items table has the metadata columns (False for an older manifest)."""
    names = {row[1] for row in conn.execute("PRAGMA table_info(items)")}
    return set(METADATA_COLUMNS) <= names


def source(with_metadata: bool) -> str:
    """What a SELECT reads items FROM, whichever schema the manifest has."""
    return "items" if with_metadata else _OLD_SOURCE


def add_metadata_columns(conn: sqlite3.Connection) -> bool:
    """Add whatever metadata column is missing; call inside a write transaction. True when the
    schema changed."""
    names = {row[1] for row in conn.execute("PRAGMA table_info(items)")}
    missing = [(n, t) for n, t in METADATA_COLUMNS.items() if n not in names]
    for name, sql_type in missing:
        conn.execute(f"ALTER TABLE items ADD COLUMN {name} {sql_type}")
    if missing:
        for statement in INDEXES:
            conn.execute(statement)
    return bool(missing)


def values(item_id: int, item: ItemMeta) -> tuple:
    """The row stored for ``item`` under faiss id ``item_id``, in ``COLUMNS`` order."""
    tags = json.dumps(list(item.tags)) if item.tags else None
    captured = None if item.captured_at is None else float(item.captured_at)
    return (
        item_id,
        item.image_id,
        item.person_id,
        item.source_path,
        item.sha256,
        item.added_at,
        item.camera_id,
        captured,
        tags,
    )


def item_of(row: Sequence) -> tuple[int, ItemMeta]:
    """(faiss id, item) of a row selected as ``COLUMNS``."""
    tags = tuple(json.loads(row[8])) if row[8] else ()
    return row[0], ItemMeta(*row[1:8], tags=tags)
