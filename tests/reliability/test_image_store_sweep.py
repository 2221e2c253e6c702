"""The start-up sweep of the image store: it removes what killed writes left, and only that.

Two ImageStore objects over one folder hold separate open files, so their flocks conflict as
two processes' would.
"""

from __future__ import annotations

import fcntl
import hashlib
from pathlib import Path

from service.storage import ImageStore


def stored(store: ImageStore, content: bytes) -> Path:
    path, created = store.write(hashlib.sha256(content).hexdigest(), ".jpg", content)
    assert created
    return path


def test_sweep_removes_orphans_and_partial_writes_only(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    kept, orphan = stored(store, b"kept"), stored(store, b"orphan")
    partial = orphan.parent / ".upload-abc123.part"
    partial.write_bytes(b"half")
    unrelated = [store.root / "notes.txt", store.root / "zz" / ("0" * 64 + ".jpg")]
    for path in unrelated:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"not ours")
    misplaced = kept.parent.parent / "00" / kept.name  # a name of ours in the wrong shard
    misplaced.parent.mkdir(exist_ok=True)
    misplaced.write_bytes(b"kept")

    removed = store.sweep(lambda shas: {hashlib.sha256(b"kept").hexdigest()} & set(shas))

    assert set(removed or []) == {orphan, partial}
    assert kept.is_file() and all(p.is_file() for p in [*unrelated, misplaced])


def test_sweep_waits_for_no_writer_and_touches_nothing_while_one_writes(tmp_path: Path) -> None:
    server, restarted = ImageStore(tmp_path / "images"), ImageStore(tmp_path / "images")
    with server.writing():
        written = stored(server, b"written, not yet committed")
        assert restarted.sweep(lambda shas: set()) is None
        assert written.is_file()
    assert restarted.sweep(lambda shas: set()) == [written]


def test_the_deciding_look_up_is_made_under_the_exclusive_lock(tmp_path: Path) -> None:
    """The store is asked about every file before the lock (a large gallery takes a while), so
    a commit can land in between: the files that looked unnamed are asked about again, under
    the lock, and a commit that landed saves its file."""
    store, writer = ImageStore(tmp_path / "images"), ImageStore(tmp_path / "images")
    path = stored(store, b"x")
    sha = hashlib.sha256(b"x").hexdigest()
    asked: list[bool] = []

    def named(shas) -> set[str]:
        try:
            fcntl.flock(writer._lock(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            fcntl.flock(writer._lock(), fcntl.LOCK_UN)
            asked.append(False)
            return set()  # before the lock: not committed yet
        except BlockingIOError:
            asked.append(True)
            return {sha} & set(shas)  # under the lock: the commit has landed

    assert store.sweep(named) == [] and path.is_file()
    assert asked == [False, True]
