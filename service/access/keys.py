"""Named API keys with roles, kept in a JSON keys file that holds only their hashes.

A key is 32 random bytes (``secrets.token_urlsafe``), so it is stored as a plain SHA-256: a salt
and a slow hash (scrypt, PBKDF2) defend guessable passwords against a dictionary; a 256-bit
random token has no dictionary, and a fast hash keeps the per-request check to microseconds.

The file is rewritten atomically (bundle/fsio.py) with mode 0600, so a reader never sees half a
file; :class:`KeyRing` re-reads it when its inode, size or mtime changes, checked by one ``stat``
per request, so a key revoked by ``python -m service keys revoke`` is refused on the very next
request without a restart. A keys file that group or others may write is refused (at start-up,
and with 503 while running): anyone who can write it can give themselves a key.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from bundle.fsio import replace_atomic

ROLES = ("reader", "writer", "admin")
RANK = {role: i for i, role in enumerate(ROLES)}  # each role can do what the ones before can
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
# TPS_API_KEY's name in logs and the audit trail: an admin key kept for compatibility.
ENV_KEY_NAME = "env:TPS_API_KEY"
# Names the trail gives callers that hold no key: open reads, the scheduled retention sweep.
RESERVED_NAMES = frozenset({"anonymous", "retention"})


class KeysFileError(ValueError):
    """A keys file that cannot be read or a key operation that cannot be done."""


@dataclass(frozen=True)
class KeyRecord:
    name: str
    role: str
    sha256: str
    created_at: float
    revoked: bool = False
    revoked_at: float | None = None


@dataclass(frozen=True)
class Principal:
    """Who made a request: a key's name and role (``anonymous`` with no role on open reads)."""

    name: str
    role: str | None

    def can(self, role: str) -> bool:
        return self.role is not None and RANK[self.role] >= RANK[role]


ANONYMOUS = Principal("anonymous", None)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def read_keys(path: Path) -> list[KeyRecord]:
    """The keys in ``path``; a missing file is no keys."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    except OSError as err:
        raise KeysFileError(f"cannot read the keys file {path}: {err}") from None
    try:
        data = json.loads(text)
        records = [KeyRecord(**entry) for entry in data["keys"]]
    except (ValueError, KeyError, TypeError) as err:
        raise KeysFileError(f"the keys file {path} is not valid: {err}") from None
    for r in records:
        if r.role not in ROLES:
            raise KeysFileError(f"the keys file {path} gives {r.name!r} an unknown role {r.role!r}")
    return records


def write_keys(path: Path, records: list[KeyRecord]) -> None:
    text = json.dumps({"version": 1, "keys": [asdict(r) for r in records]}, indent=2) + "\n"

    def write(tmp: Path) -> None:
        os.chmod(tmp, 0o600)  # before a byte of it is written
        tmp.write_text(text)

    path.parent.mkdir(parents=True, exist_ok=True)
    replace_atomic(path, write)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialize read-modify-write of the keys file across processes (two CLIs at once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def create_key(path: Path, name: str, role: str) -> str:
    """Add a key; returns the key itself, which is stored nowhere."""
    if name.lower() in RESERVED_NAMES:
        raise KeysFileError(
            f"the key name {name!r} is reserved: the audit trail uses it for "
            "requests without a key and for the service's own sweeps"
        )
    if not NAME.match(name):
        raise KeysFileError(
            f"bad key name {name!r}: 1-64 letters, digits and . _ @ -, starting with a letter "
            "or digit"
        )
    if role not in ROLES:
        raise KeysFileError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    key = "tps_" + secrets.token_urlsafe(32)
    with _locked(path):
        records = read_keys(path)
        if any(r.name == name for r in records):
            raise KeysFileError(f"a key named {name!r} exists already (names stay unique)")
        records.append(KeyRecord(name, role, hash_key(key), time.time()))
        write_keys(path, records)
    return key


def revoke_key(path: Path, name: str) -> KeyRecord:
    with _locked(path):
        records = read_keys(path)
        found = [r for r in records if r.name == name]
        if not found:
            raise KeysFileError(f"no key named {name!r} in {path}")
        if found[0].revoked:
            return found[0]
        revoked = KeyRecord(**{**asdict(found[0]), "revoked": True, "revoked_at": time.time()})
        write_keys(path, [revoked if r.name == name else r for r in records])
    return revoked


class KeyRing:
    """The keys of the keys file, re-read when it changes (TPS_API_KEY is checked apart, in
    security.py)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._seen: tuple[int, int, int] | None = None
        self._keys: list[tuple[str, Principal]] = []
        self._any_file_key = False
        self._refresh()

    def _signature(self) -> tuple[int, int, int] | None:
        assert self.path is not None
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        if st.st_mode & 0o022:  # whoever may write it may give themselves an admin key
            raise KeysFileError(
                f"the keys file {self.path} is writable by group or others "
                f"(mode {stat.S_IMODE(st.st_mode):04o}): chmod 600 it"
            )
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _refresh(self) -> None:
        if self.path is None:
            return
        signature = self._signature()
        if signature == self._seen and self._seen is not None:
            return
        with self._lock:
            if signature == self._seen and self._seen is not None:
                return
            records = read_keys(self.path)
            self._keys = [(r.sha256, Principal(r.name, r.role)) for r in records if not r.revoked]
            self._any_file_key = bool(self._keys)
            self._seen = signature

    @property
    def has_keys(self) -> bool:
        self._refresh()
        return self._any_file_key

    @property
    def knows_keys(self) -> bool:
        """``has_keys`` as of the last look at the file (no new ``stat``)."""
        return self._any_file_key

    def lookup(self, supplied: str) -> Principal | None:
        """The principal of a key, or None. Every stored hash is compared, each in constant
        time, so the time taken says nothing about which key (or how much of one) matched."""
        self._refresh()
        digest = hash_key(supplied)
        found: Principal | None = None
        for stored, principal in self._keys:
            if hmac.compare_digest(digest, stored) and found is None:
                found = principal
        return found
