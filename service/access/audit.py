"""The audit trail: who searched for whom, what they saw, what they added and removed.

An append-only SQLite table in WAL mode with ``synchronous=FULL`` (TPS_AUDIT_SYNC): a commit
returns once the entry is in the log on disk, and a request's reply is sent only after its
entry's commit, so an acknowledged request is recorded even if the process (or, with FULL, the
machine) goes down right after.

One writer thread owns the one writing connection (SQLite takes one writer at a time anyway) and
the event loop never touches SQLite: a request hands its entry over and awaits a future. The
writer takes every entry waiting when it wakes and commits them in one transaction (group
commit), so 32 concurrent searches share one fsync instead of queueing for 32.

Rows are never updated (a trigger refuses it) and only the retention sweep deletes, in batches
between entry groups so searches never wait behind one long delete, and records itself as an entry.

A request waits for its entry at most ``timeout`` seconds (TPS_AUDIT_TIMEOUT_S), then fails with
503: a trail that cannot keep up never holds searches for long. A request cancelled while it
waits (its client went away) still has its entry written; only the answer is dropped.

The database file is created 0600: it holds every query text and who searched for whom. Swept
entries are zeroed (``secure_delete``) and the WAL is truncated after a sweep.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MAX_GROUP = 512  # entries per transaction, at most
SWEEP_BATCH = 5000  # entries one retention delete removes before the writer takes new entries
DEFAULT_TIMEOUT_S = 5.0
SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    key_name TEXT NOT NULL,
    role TEXT,
    client TEXT,
    action TEXT NOT NULL,
    details TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_time ON audit (time);
CREATE INDEX IF NOT EXISTS audit_key ON audit (key_name, id);
CREATE TRIGGER IF NOT EXISTS audit_append_only BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
"""
COLUMNS = ("id", "time", "key_name", "role", "client", "action", "details")


class AuditError(RuntimeError):
    """The trail cannot be written: the request that needed the entry fails (503)."""


@dataclass(frozen=True)
class Entry:
    key_name: str
    role: str | None
    client: str | None
    action: str
    details: dict[str, Any]
    time: float = 0.0

    def row(self) -> tuple:
        when = self.time or time.time()
        text = json.dumps(self.details, separators=(",", ":"), default=str)
        return (when, self.key_name, self.role, self.client, self.action, text)


def connect(
    path: Path, sync: str = "full", busy_s: float = DEFAULT_TIMEOUT_S
) -> sqlite3.Connection:
    """The writing connection. ``full``: each commit fsyncs the WAL, so the entry is on disk
    before the reply goes out and survives a power cut; ``normal``: the commit is in the OS's
    cache, which survives the process being killed but not the machine going down."""
    if sync not in ("full", "normal"):
        raise ValueError(f"unknown synchronous mode {sync!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    # Created private before SQLite opens it; its -wal and -shm files take the database's mode.
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    conn = sqlite3.connect(path, timeout=busy_s, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={sync.upper()}")
    conn.execute("PRAGMA secure_delete=ON")  # swept entries are zeroed, not just unlinked
    conn.executescript(SCHEMA)
    return conn


def as_dict(row: tuple) -> dict[str, Any]:
    entry = dict(zip(COLUMNS, row, strict=True))
    entry["details"] = json.loads(entry["details"])
    return entry


def query(
    conn: sqlite3.Connection,
    *,
    since: float | None = None,
    until: float | None = None,
    key: str | None = None,
    action: str | None = None,
    after_id: int = 0,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Entries in id order (the order they were written), after ``after_id``."""
    where, args = ["id > ?"], [after_id]
    for clause, value in (
        ("time >= ?", since),
        ("time < ?", until),
        ("key_name = ?", key),
        ("action = ?", action),
    ):
        if value is not None:
            where.append(clause)
            args.append(value)
    sql = f"SELECT {', '.join(COLUMNS)} FROM audit WHERE {' AND '.join(where)} ORDER BY id"
    if limit is not None:
        sql += " LIMIT ?"
        args.append(limit)
    return [as_dict(r) for r in conn.execute(sql, args)]


Job = Callable[[sqlite3.Connection], Any]


class AuditLog:
    """The trail of one process: a writer thread with group commit, and reads on demand."""

    def __init__(
        self, path: Path, sync: str = "full", timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> None:
        self.path = path
        self.timeout_s = timeout_s
        self._conn = connect(path, sync, busy_s=timeout_s)
        self._jobs: queue.Queue[tuple[Entry | Job, Future] | None] = queue.Queue()
        self._closed = False
        self._thread = threading.Thread(target=self._write_loop, name="audit-writer", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._closed

    def submit(self, entry: Entry | Job) -> Future:
        if self._closed:
            raise AuditError("the audit trail is closed")
        fut: Future = Future()
        self._jobs.put((entry, fut))
        return fut

    async def record(self, entry: Entry) -> int:
        """Append ``entry`` and return its id once it is committed."""
        fut = asyncio.wrap_future(self.submit(entry))
        try:
            # shield: a cancelled request must not cancel the entry (it is still written)
            return await asyncio.wait_for(asyncio.shield(fut), self.timeout_s)
        except TimeoutError:
            raise AuditError(self._too_slow()) from None
        except (sqlite3.Error, AuditError) as err:
            raise AuditError(f"the audit trail cannot be written: {err}") from err

    def record_now(self, entry: Entry) -> int:
        """The blocking form, for worker threads and the CLI."""
        try:
            return self.submit(entry).result(self.timeout_s)
        except FutureTimeout:
            raise AuditError(self._too_slow()) from None
        except (sqlite3.Error, AuditError) as err:
            raise AuditError(f"the audit trail cannot be written: {err}") from err

    def run(self, job: Job) -> Any:
        """Run ``job(connection)`` on the writer thread, between groups (the retention sweep)."""
        try:
            return self.submit(job).result(self.timeout_s)
        except FutureTimeout:
            raise AuditError(self._too_slow()) from None

    def _too_slow(self) -> str:
        state = "is not running" if not self._thread.is_alive() else "did not answer"
        return f"the audit trail {state} within {self.timeout_s:g} s (TPS_AUDIT_TIMEOUT_S)"

    def read(self, **filters: Any) -> list[dict[str, Any]]:
        """A query (see :func:`query`) on its own connection: reads never wait for the writer."""
        conn = sqlite3.connect(self.path, timeout=30)
        try:
            return query(conn, **filters)
        finally:
            conn.close()

    def sweep(self, cutoff: float, key_name: str, role: str | None = None) -> int:
        """Delete entries older than ``cutoff`` (seconds since the epoch) and record that."""

        def delete(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE time < ? LIMIT ?)",
                (cutoff, SWEEP_BATCH),
            ).rowcount

        def checkpoint(conn: sqlite3.Connection) -> None:
            # The WAL still holds the entries as written; a reader elsewhere may keep it (the
            # checkpoint is then partial and the next sweep tries again).
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()

        removed = 0
        while batch := self.run(delete):  # one batch a job: entries are written in between
            removed += batch
        if removed:  # a sweep that found nothing leaves no trace (it runs every hour)
            self.run(checkpoint)
            details = {"removed_entries": removed, "before": cutoff}
            self.record_now(Entry(key_name, role, None, "audit_retention", details))
        return removed

    def close(self) -> None:
        self._closed = True
        self._jobs.put(None)
        self._thread.join()
        self._conn.close()
        while True:  # whatever was queued behind the stop, or by a writer that died
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                _settle(job[1], error=AuditError("the audit trail is closed"))

    def _write_loop(self) -> None:
        while True:
            first = self._jobs.get()
            if first is None:
                return
            group = [first]
            stop = False
            while len(group) < MAX_GROUP:
                try:
                    more = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                group.append(more)
            try:
                self._write_group(group)
            except Exception as err:  # the thread must outlive any one group
                log.exception("audit writer: a group failed")
                for _, fut in group:
                    _settle(fut, error=err)
            if stop:
                return

    def _write_group(self, group: list[tuple[Entry | Job, Future]]) -> None:
        entries = [(e, f) for e, f in group if isinstance(e, Entry)]
        jobs = [(j, f) for j, f in group if not isinstance(j, Entry)]
        if entries:
            try:
                ids = self._append([e for e, _ in entries])
            except sqlite3.Error as err:
                log.error("audit write failed: %s", err)
                for _, fut in entries:
                    _settle(fut, error=err)
            else:
                for (_, fut), entry_id in zip(entries, ids, strict=True):
                    _settle(fut, entry_id)
        for job, fut in jobs:
            try:
                result = job(self._conn)  # type: ignore[operator]
            except Exception as err:
                _settle(fut, error=err)
            else:
                _settle(fut, result)

    def _append(self, entries: list[Entry]) -> list[int]:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            ids = []
            for entry in entries:
                cur = conn.execute(
                    "INSERT INTO audit (time, key_name, role, client, action, details) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    entry.row(),
                )
                ids.append(int(cur.lastrowid or 0))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return ids


def _settle(fut: Future, result: Any = None, error: BaseException | None = None) -> None:
    """Resolve ``fut`` unless its waiter gave up (cancelled or timed out): never raise here."""
    try:
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(result)
    except InvalidStateError:
        pass
