"""Connections to Milvus: a client for a URI, the engine behind it, Milvus errors as
:class:`IndexStoreError`, and the handle on one collection every request of a store goes
through.

A URI ending in ``.db`` is a milvus-lite file: the embedded engine, run as one in-process
server per file.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlparse

from pymilvus import MilvusClient, MilvusException

from index.errors import IndexStoreError, StoreUnavailableError
from index.milvus.recovery import (
    CALL_TIMEOUT_S,
    LOAD_WAIT_S,
    LOADING,
    UNAVAILABLE,
    Backoff,
    WithTimeout,
    not_loaded,
    unavailable,
)

T = TypeVar("T")
RECONNECT_PAUSE_S = 0.2  # before the one retry of a refused new connection

# The store's one logger name, as before it was split into modules (service logs show it).
log = logging.getLogger("index.milvus_store")

# milvus-lite: one in-process server per file, shared by the stores of this process that use
# it; the last one to close stops it, which releases the file for another process.
_lite_lock = threading.Lock()
_lite_users: dict[str, int] = {}


def is_lite(uri: str) -> bool:
    return uri.endswith(".db")


def location(uri: str, collection: str) -> str:
    if is_lite(uri):
        return uri
    return f"milvus://{urlparse(uri).netloc}/{collection}"


def reason(exc: MilvusException) -> str:
    return str(getattr(exc, "message", "") or exc).strip().rstrip(".")


@contextmanager
def errors(what: str) -> Iterator[None]:
    """Milvus errors as IndexStoreError, saying what was being done where."""
    try:
        yield
    except MilvusException as exc:
        raise IndexStoreError(f"could not {what}: {reason(exc)}") from exc


def connect(uri: str, *, must_exist: bool) -> MilvusClient:
    if is_lite(uri):
        if must_exist and not Path(uri).exists():
            raise IndexStoreError(f"{uri} is not a gallery: no such milvus-lite file")
        with _lite_lock:
            _lite_users[uri] = _lite_users.get(uri, 0) + 1
    try:
        with errors(f"connect to {uri}"):
            try:
                return MilvusClient(uri)
            except MilvusException:
                if is_lite(uri):
                    raise
                # A server may drop a fresh channel (gRPC's GOAWAY "too many pings" when
                # another client of this process had pinged it too often): one more try.
                time.sleep(RECONNECT_PAUSE_S)
            return MilvusClient(uri)
    except BaseException:
        if is_lite(uri):
            _release_lite(uri)
        raise


def engine(client: MilvusClient) -> str:
    """``milvus-lite`` (a file, or `milvus-lite server`) or ``milvus``, from the version."""
    with errors("ask the server its version"):
        version = str(client.get_server_version())
    return "milvus-lite" if version.startswith("milvus_lite") else "milvus"


def version(client: MilvusClient) -> tuple[int, ...]:
    """The server's version as numbers (``v2.3.5-lite`` → (2, 3, 5)); () for milvus-lite."""
    with errors("ask the server its version"):
        text = str(client.get_server_version())
    if text.startswith("milvus_lite"):
        return ()
    numbers = re.findall(r"\d+", text.split("-")[0])
    return tuple(int(n) for n in numbers[:3])


def nullable_fields(client: MilvusClient) -> bool:
    """Whether the server keeps null values (Milvus 2.5 and later, and milvus-lite); older
    servers take the nullable flag and drop it, so the store writes "" for None there."""
    found = version(client)
    return found == () or found >= (2, 5)


def inverted_indexes(client: MilvusClient) -> bool:
    """Whether the server builds INVERTED scalar indexes (2.4 and later, and milvus-lite);
    older ones take Trie for strings and STL_SORT for numbers."""
    found = version(client)
    return found == () or found >= (2, 4)


def disconnect(client: MilvusClient, uri: str) -> None:
    try:
        client.close()
    finally:
        if is_lite(uri):
            _release_lite(uri)


def _release_lite(uri: str) -> None:
    with _lite_lock:
        left = _lite_users.get(uri, 1) - 1
        if left > 0:
            _lite_users[uri] = left
            return
        _lite_users.pop(uri, None)
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(uri)


class MilvusCollection:
    """One client's handle on one collection: every request goes through :meth:`call`, which
    refuses once the handle is detached, loads a collection the server released and retries
    once, backs off from a server that cannot be reached (index/milvus/recovery.py), and
    reports Milvus errors as IndexStoreError (StoreUnavailableError for an outage)."""

    def __init__(
        self, client: MilvusClient, uri: str, name: str, backoff: Backoff | None = None
    ) -> None:
        self._client: MilvusClient | None = client
        self.uri = uri
        self.name = name
        self.location = location(uri, name)
        self.engine = engine(client)
        self.lite = self.engine == "milvus-lite"
        self.nullable = nullable_fields(client)
        self.backoff = backoff or Backoff()  # shared by the handles of one store
        self._loading = threading.Lock()

    def live(self) -> MilvusClient:
        if self._client is None:
            raise IndexStoreError(f"{self.location} is closed")
        return self._client

    def sibling(self, name: str) -> MilvusCollection:
        """A handle on another collection of the same server, client and backoff."""
        return MilvusCollection(self.live(), self.uri, name, self.backoff)

    def call(self, what: str, fn: Callable[[MilvusClient], T]) -> T:
        client = self.live()
        self.backoff.check()
        try:
            timed = WithTimeout(client, CALL_TIMEOUT_S)
            try:
                result = fn(timed)  # type: ignore[arg-type]
            except MilvusException as exc:
                if not not_loaded(exc):
                    raise
                self._load(client)
                result = fn(timed)  # type: ignore[arg-type]  # once: again is an outage
        except StoreUnavailableError:
            self.backoff.failed()
            raise
        except Exception as exc:
            if not_loaded(exc) or unavailable(exc):
                self.backoff.failed()
                log.warning("%s on %s failed: %s", what, self.location, _reason(exc))
                raise StoreUnavailableError(UNAVAILABLE) from exc
            if isinstance(exc, MilvusException):
                where = f"{what} on {self.location}"
                raise IndexStoreError(f"could not {where}: {reason(exc)}") from exc
            raise
        self.backoff.succeeded()
        return result

    def _load(self, client: MilvusClient) -> None:
        """Load the collection the server says is not loaded; one thread at a time, the others
        are told to come back."""
        if not self._loading.acquire(blocking=False):
            raise StoreUnavailableError(LOADING)
        try:
            log.warning("%s is not loaded (a server restart?): loading it", self.location)
            client.load_collection(self.name, timeout=LOAD_WAIT_S)
        except MilvusException as exc:
            log.warning("loading %s failed: %s", self.location, reason(exc))
            raise StoreUnavailableError(LOADING) from exc
        finally:
            self._loading.release()

    def detach(self) -> MilvusClient | None:
        """Refuse every later request; the client to disconnect, or None when detached already."""
        client, self._client = self._client, None
        return client


def _reason(exc: BaseException) -> str:
    return reason(exc) if isinstance(exc, MilvusException) else repr(exc)
