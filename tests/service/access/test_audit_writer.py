"""The audit writer's guarantees under trouble: a waiter that goes away, a trail held by another
process, a long retention sweep, a closed trail; and the file's privacy."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
import time
from pathlib import Path

import pytest

from service.access import audit
from service.access.audit import AuditError, AuditLog, Entry


def _entry(action: str = "search", when: float = 0.0) -> Entry:
    return Entry("rita", "reader", "127.0.0.1", action, {"query": "a man"}, time=when)


def test_a_cancelled_waiter_neither_loses_its_entry_nor_stops_the_writer(tmp_path: Path) -> None:
    trail = AuditLog(tmp_path / "a.sqlite")

    async def cancel_one() -> None:
        task = asyncio.create_task(trail.record(_entry("cancelled")))
        await asyncio.sleep(0)  # submitted, not yet answered
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    try:
        for _ in range(20):  # the race with the writer thread, many times
            asyncio.run(cancel_one())
        assert trail.record_now(_entry("after")) > 0
        assert trail.alive
        actions = [e["action"] for e in trail.read()]
        assert actions.count("cancelled") == 20 and actions[-1] == "after"
    finally:
        trail.close()


def test_a_held_trail_fails_the_request_in_time_then_recovers(tmp_path: Path) -> None:
    trail = AuditLog(tmp_path / "a.sqlite", timeout_s=0.5)
    other = sqlite3.connect(tmp_path / "a.sqlite", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process holding the write lock
        started = time.monotonic()
        with pytest.raises(AuditError, match=r"TPS_AUDIT_TIMEOUT_S|cannot be written"):
            trail.record_now(_entry())
        assert time.monotonic() - started < 5
        other.execute("ROLLBACK")
        time.sleep(1.0)  # the writer's own busy wait on the held group ends
        assert trail.record_now(_entry("later")) > 0
        assert trail.alive
    finally:
        other.close()
        trail.close()


def test_the_sweep_deletes_in_batches_and_records_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit, "SWEEP_BATCH", 2)
    trail = AuditLog(tmp_path / "a.sqlite")
    jobs: list[object] = []
    run = trail.run
    monkeypatch.setattr(trail, "run", lambda job: jobs.append(job) or run(job))
    try:
        for n in range(5):
            trail.record_now(_entry("old", when=1000.0 + n))
        trail.record_now(_entry("new"))
        assert trail.sweep(cutoff=2000.0, key_name="retention") == 5
        assert len(jobs) == 5  # 2 + 2 + 1, an empty batch ends it, then the checkpoint
        actions = [e["action"] for e in trail.read()]
        assert actions == ["new", "audit_retention"]
    finally:
        trail.close()


def test_a_closed_trail_refuses_at_once(tmp_path: Path) -> None:
    trail = AuditLog(tmp_path / "a.sqlite")
    trail.close()
    with pytest.raises(AuditError, match="closed"):
        trail.record_now(_entry())


def test_the_trail_is_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        trail = AuditLog(tmp_path / "a.sqlite")
        trail.record_now(_entry())
        files = [p for p in tmp_path.iterdir() if p.name.startswith("a.sqlite")]
        assert {p.name for p in files} >= {"a.sqlite", "a.sqlite-wal"}
        for path in files:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
        trail.close()
    finally:
        os.umask(old)
