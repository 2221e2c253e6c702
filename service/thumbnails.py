"""A small in-memory LRU of rendered thumbnails, so a results grid is not re-rendered per view."""

from __future__ import annotations

import threading
from collections import OrderedDict


class ThumbnailCache:
    def __init__(self, max_bytes: int = 32 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, sha256: str, size: int) -> bytes | None:
        with self._lock:
            data = self._items.get((sha256, size))
            if data is not None:
                self._items.move_to_end((sha256, size))
            return data

    def put(self, sha256: str, size: int, data: bytes) -> None:
        if len(data) > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop((sha256, size), None)
            self._bytes -= len(old) if old is not None else 0
            self._items[(sha256, size)] = data
            self._bytes += len(data)
            while self._bytes > self.max_bytes:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= len(dropped)
