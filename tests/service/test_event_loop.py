"""No blocking store call runs on the event loop: while one request waits on a slow store call
(a manifest read, a write holding the manifest, a Milvus server slow to answer), searches are
still answered.

The first call of any store method a route may reach, other than search itself, is held until
the test lets it go. A route that called one directly in its ``async def`` body would stop the
event loop, and with it every other request, for as long as the call takes. Later calls pass:
the search itself reads its hits' metadata with ``get``, in a worker thread of its own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

import pytest
from fastapi.testclient import TestClient

from tests.service.support import KEY, jpeg

HELD = ("get", "items", "stats", "count", "add", "remove", "refresh")
SEARCH_TIMEOUT_S = 10.0  # a search takes milliseconds here: this is only a bound for a hang

REQUESTS = {
    "gallery item": ("GET", "/v1/gallery/p0020/p0020_01.jpg", {}),
    "gallery image": ("GET", "/v1/gallery/p0020/p0020_01.jpg/image?thumb=1", {}),
    "info": ("GET", "/v1/info", {}),
    "metrics": ("GET", "/metrics", {}),
    "upload": ("POST", "/v1/gallery", {"files": {"files": ("a.jpg", jpeg((8, 9, 10)))}}),
    "delete": ("DELETE", "/v1/gallery/p0024/p0024_03.jpg", {}),
}


class Gate:
    """Holds the first call it wraps until released, and says when it arrived."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self._first = threading.Lock()

    def wrap(self, real: Callable) -> Callable:
        def held(*args, **kwargs):
            if self._first.acquire(blocking=False):
                self.entered.set()
                self.release.wait(timeout=60)
            return real(*args, **kwargs)

        return held


@pytest.fixture
def held(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gate]:
    store = client.app.state.runtime.store
    gate = Gate()
    for name in HELD:
        monkeypatch.setattr(store, name, gate.wrap(getattr(store, name)))
    yield gate
    gate.release.set()


@pytest.mark.parametrize("name", list(REQUESTS))
def test_searches_are_answered_while_a_store_call_is_held(
    client: TestClient, held: Gate, name: str
) -> None:
    method, url, extra = REQUESTS[name]
    with ThreadPoolExecutor(2) as pool:
        slow = pool.submit(client.request, method, url, headers=KEY, **extra)
        assert held.entered.wait(30), f"{name} never reached the store"
        search = pool.submit(client.post, "/v1/search", json={"query": "a person"})
        try:
            reply = search.result(timeout=SEARCH_TIMEOUT_S)
        except FutureTimeout:
            pytest.fail(f"a search waited for the store call of {name}: it ran on the event loop")
        finally:
            held.release.set()
        assert reply.status_code == 200 and reply.json()["results"]
        assert slow.result(timeout=60).status_code < 300
