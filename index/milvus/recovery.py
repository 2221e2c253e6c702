"""What a Milvus store does when its server goes away or forgets its collection.

Two faults, two answers:

- **The collection is not loaded** (a server restarted, someone called ``release_collection``):
  the store loads it and retries the request once. One thread loads at a time; the others are
  told the store is unavailable meanwhile rather than queueing behind a load that may take a
  while on a large gallery.
- **The server cannot be reached** (down, restarting, too slow): the request fails at once with
  :class:`StoreUnavailableError` (the service answers 503 with ``Retry-After``), and the store
  backs off: the next attempt waits a bounded, doubling delay (``BACKOFF_S`` up to
  ``MAX_BACKOFF_S``), so a replica does not hammer a server that is starting. The attempt after
  the delay is the reconnect: pymilvus rebuilds its channel on the first call that reaches the
  server again. Success resets the delay.

Messages of these errors name no address and no collection: they reach the service's clients.
"""

from __future__ import annotations

import threading
import time
from functools import partial
from typing import Any

import grpc
from pymilvus import MilvusException

from index.errors import StoreUnavailableError

BACKOFF_S = 0.25  # first delay after a failed attempt
MAX_BACKOFF_S = 2.0  # the longest: a server back is noticed within this
LOAD_WAIT_S = 20.0  # how long one request waits for a load it started
CALL_TIMEOUT_S = 60.0  # any one request: a hung server ties up a worker thread no longer

UNAVAILABLE = "the gallery store is unavailable; retry shortly"
LOADING = "the gallery store is loading; retry shortly"

# Milvus error codes: 101 collection not loaded; 2 cannot connect; 1 an unexpected error
# (what the server answers while its coordinators start).
NOT_LOADED_CODES = frozenset({101})
INPUT_CODES = frozenset({1100})  # a parameter the server refused: our bug, not an outage


def not_loaded(exc: BaseException) -> bool:
    """The collection is not (or no longer) loaded: a load makes the request work."""
    text = str(getattr(exc, "message", "") or exc).lower()
    return getattr(exc, "code", None) in NOT_LOADED_CODES or (
        "not loaded" in text or "state 'released'" in text or "call load()" in text
    )


def unavailable(exc: BaseException) -> bool:
    """Whether the server failed to serve (down, starting, timing out), as opposed to refusing
    what was asked of it."""
    if isinstance(exc, grpc.RpcError | ConnectionError | TimeoutError):
        return True
    if not isinstance(exc, MilvusException):
        return False
    return getattr(exc, "code", None) not in INPUT_CODES


class Backoff:
    """Bounded, doubling delays between attempts on a server that failed; thread-safe."""

    def __init__(self, first_s: float = BACKOFF_S, longest_s: float = MAX_BACKOFF_S) -> None:
        self.first_s = first_s
        self.longest_s = longest_s
        self._lock = threading.Lock()
        self._failures = 0
        self._next = 0.0

    def check(self) -> None:
        """Raise StoreUnavailableError while the delay after the last failure runs."""
        with self._lock:
            wait = self._next - time.monotonic()
        if wait > 0:
            raise StoreUnavailableError(UNAVAILABLE, retry_after_s=max(1.0, wait))

    def failed(self) -> float:
        """Count a failure; returns the delay before the next attempt."""
        with self._lock:
            self._failures += 1
            delay = min(self.longest_s, self.first_s * 2 ** (self._failures - 1))
            self._next = time.monotonic() + delay
            return delay

    def succeeded(self) -> None:
        with self._lock:
            self._failures = 0
            self._next = 0.0

    @property
    def failures(self) -> int:
        return self._failures


class WithTimeout:
    """A client whose every call has a deadline unless the caller gives one: pymilvus waits
    forever by default, retrying a server that does not answer."""

    def __init__(self, client: Any, seconds: float) -> None:
        self._client = client
        self._seconds = seconds

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr
        return partial(_with_deadline, attr, self._seconds)


def _with_deadline(fn: Any, seconds: float, *args: Any, **kwargs: Any) -> Any:
    kwargs.setdefault("timeout", seconds)
    return fn(*args, **kwargs)
