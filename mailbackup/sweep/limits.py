"""What the accounts of one server share during a sweep: a connection
limit and a bandwidth limit.

Public API: `TokenBucket`, a bytes/second limit shared by threads;
`ServerLimits`, per server host a connection semaphore
(``max_connections_per_server``) and a shared `TokenBucket`
(``max_bytes_per_second``); `server_key`, what counts as one server.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    """At most `rate` bytes per second on average, shared by threads.

    `take(n)` charges n bytes after they arrived and sleeps off any debt, so
    a burst of one FETCH is followed by a pause; `burst` bytes may pass
    without waiting.
    """

    def __init__(self, rate: float, *, burst: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0 bytes per second")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else rate)
        self._clock = clock
        self._tokens = self.burst
        self._stamp = clock()
        self._lock = threading.Lock()

    def charge(self, amount: int) -> float:
        """Take `amount` bytes; the seconds to wait before going on."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= amount
            return -self._tokens / self.rate if self._tokens < 0 else 0.0

    def take(self, amount: int, stop: threading.Event | None = None) -> float:
        """Charge and sleep off the debt (cut short when `stop` is set); the seconds waited."""
        delay = self.charge(amount)
        if delay > 0:
            if stop is not None:
                stop.wait(delay)
            else:
                time.sleep(delay)
        return delay


def server_key(host: str) -> str:
    """One server, whatever the port or the letter case of its name."""
    return host.strip().strip("[]").lower()


class ServerLimits:
    """Per server host: at most `max_connections` at once, and one shared
    bandwidth limit (None: unlimited)."""

    def __init__(self, max_connections: int, max_bytes_per_second: int | None = None) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be >= 1")
        self.max_connections = max_connections
        self.max_bytes_per_second = max_bytes_per_second
        self._lock = threading.Lock()
        self._slots: dict[str, threading.BoundedSemaphore] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self._active: dict[str, int] = {}
        self.peak: dict[str, int] = {}  # most connections held at once, per server

    def _slot(self, key: str) -> threading.BoundedSemaphore:
        with self._lock:
            if key not in self._slots:
                self._slots[key] = threading.BoundedSemaphore(self.max_connections)
            return self._slots[key]

    def try_acquire(self, host: str) -> bool:
        """Take a connection slot toward `host` if one is free, without waiting."""
        key = server_key(host)
        if not self._slot(key).acquire(blocking=False):
            return False
        with self._lock:
            self._active[key] = self._active.get(key, 0) + 1
            self.peak[key] = max(self.peak.get(key, 0), self._active[key])
        return True

    def release(self, host: str) -> None:
        key = server_key(host)
        with self._lock:
            self._active[key] -= 1
        self._slot(key).release()

    def bucket(self, host: str) -> TokenBucket | None:
        if not self.max_bytes_per_second:
            return None
        key = server_key(host)
        with self._lock:
            if key not in self._buckets:
                self._buckets[key] = TokenBucket(self.max_bytes_per_second)
            return self._buckets[key]
