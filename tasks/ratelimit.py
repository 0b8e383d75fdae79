"""A process-wide token bucket (GCRA virtual scheduling): precise, thread-safe, usable from any event loop.

Every request reserves the next free slot `1/rate` after the previous one and sleeps until it comes, so
the rate is never exceeded even when shards run on several threads.
"""
from __future__ import annotations

import asyncio
import threading
import time

_buckets: dict[float, "TokenBucket"] = {}
_registry_lock = threading.Lock()


class TokenBucket:
    def __init__(self, rate_per_second: float, burst: int = 1):
        if rate_per_second <= 0:
            raise ValueError("rate must be positive")
        self.interval = 1.0 / rate_per_second
        self.burst = max(1, burst)
        self._next = time.monotonic()
        self._lock = threading.Lock()
        self.waited_s = 0.0

    def reserve(self) -> float:
        """Reserve a slot; return how long to wait for it."""
        with self._lock:
            now = time.monotonic()
            # Unused capacity accumulates up to `burst` slots, no more.
            self._next = max(self._next, now - (self.burst - 1) * self.interval)
            wait = max(0.0, self._next - now)
            self._next += self.interval
            self.waited_s += wait
            return wait

    async def acquire(self) -> float:
        wait = self.reserve()
        if wait > 0:
            await asyncio.sleep(wait)
        return wait


def shared_bucket(rate_per_second: float) -> TokenBucket | None:
    """One bucket per rate per process: concurrent shards and flows in a worker share it."""
    if not rate_per_second or rate_per_second <= 0:
        return None
    with _registry_lock:
        bucket = _buckets.get(rate_per_second)
        if bucket is None:
            bucket = _buckets[rate_per_second] = TokenBucket(rate_per_second)
        return bucket
