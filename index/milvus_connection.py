"""Connections to Milvus: a client for a URI, the engine behind it, Milvus errors as
:class:`IndexStoreError`, and the handle on one collection every request of a store goes
through.

A URI ending in ``.db`` is a milvus-lite file: the embedded engine, run as one in-process
server per file.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlparse

from pymilvus import MilvusClient, MilvusException

from index.errors import IndexStoreError

T = TypeVar("T")

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
    refuses once the handle is detached and reports Milvus errors as IndexStoreError."""

    def __init__(self, client: MilvusClient, uri: str, name: str) -> None:
        self._client: MilvusClient | None = client
        self.uri = uri
        self.name = name
        self.location = location(uri, name)
        self.engine = engine(client)
        self.lite = self.engine == "milvus-lite"

    def live(self) -> MilvusClient:
        if self._client is None:
            raise IndexStoreError(f"{self.location} is closed")
        return self._client

    def call(self, what: str, fn: Callable[[MilvusClient], T]) -> T:
        client = self.live()
        with errors(f"{what} on {self.location}"):
            return fn(client)

    def detach(self) -> MilvusClient | None:
        """Refuse every later request; the client to disconnect, or None when detached already."""
        client, self._client = self._client, None
        return client
