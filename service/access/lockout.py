"""Lock-out: a client that sends too many wrong keys is answered 429 for a while.

Keys are 256-bit random tokens, so guessing one is hopeless; the lock-out bounds what guessing a
weak TPS_API_KEY could achieve, and how much a guesser costs the server. It applies to clients
off this machine (security.py decides which): a same-host reverse proxy would otherwise
lock every client out at once; behind one, set TPS_TRUSTED_PROXIES so each client is counted
apart. Only wrong keys count: a request with no key is asking what the server needs.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque

MAX_TRACKED = 10_000  # clients remembered; the oldest go first


class Lockout:
    def __init__(self, failures: int, window_s: float, lock_s: float) -> None:
        self.failures = failures
        self.window_s = window_s
        self.lock_s = lock_s
        self._failed: OrderedDict[str, deque[float]] = OrderedDict()
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.failures > 0

    def retry_after(self, client: str, now: float | None = None) -> float | None:
        """Seconds until ``client`` may try again, or None when it is not locked out."""
        now = time.monotonic() if now is None else now
        with self._lock:
            until = self._until.get(client)
            if until is None:
                return None
            if now >= until:
                del self._until[client]
                return None
            return until - now

    def failed(self, client: str, now: float | None = None) -> bool:
        """Count a wrong key from ``client``; True when this one locks it out."""
        if not self.enabled:
            return False
        now = time.monotonic() if now is None else now
        with self._lock:
            times = self._failed.setdefault(client, deque())
            self._failed.move_to_end(client)
            times.append(now)
            while times and now - times[0] > self.window_s:
                times.popleft()
            while len(self._failed) > MAX_TRACKED:
                self._failed.popitem(last=False)
            if len(times) < self.failures:
                return False
            times.clear()
            self._until[client] = now + self.lock_s
            while len(self._until) > MAX_TRACKED:
                self._until.pop(next(iter(self._until)))
            return True
