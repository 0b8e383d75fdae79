"""Rate limiters, implementations of `backend.Limiter`: a process-wide token bucket, and one rate across
many workers through a Prefect global concurrency limit.

The token bucket (GCRA virtual scheduling) is precise, thread-safe and usable from any event loop: every
request reserves the next free slot `1/rate` after the previous one and sleeps until it comes, so the rate
is never exceeded even when shards run on several threads.
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

    def reserve(self) -> float:
        """Reserve a slot; return how long to wait for it."""
        with self._lock:
            now = time.monotonic()
            # Unused capacity accumulates up to `burst` slots, no more.
            self._next = max(self._next, now - (self.burst - 1) * self.interval)
            wait = max(0.0, self._next - now)
            self._next += self.interval
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


class GlobalRateLimiter:
    """One request rate across many worker processes and machines.

    Slots of a Prefect global concurrency limit (capacity = rate, slot decay = rate per second) are taken a
    block at a time (`occupy=block`); the process's token bucket then spaces the block's requests evenly.
    The limit caps the aggregate; the bucket removes the bursts a block would otherwise send at once.
    """

    def __init__(self, name: str, rate_per_second: float, block: int | None = None):
        self.name = name
        self.bucket = shared_bucket(rate_per_second)
        self.block = block or max(1, min(10, int(rate_per_second)))
        self._allowance = 0
        self._lock: asyncio.Lock | None = None

    async def acquire(self) -> float:
        from prefect.concurrency.asyncio import rate_limit

        if self._lock is None:
            self._lock = asyncio.Lock()
        started = time.monotonic()
        async with self._lock:
            if self._allowance == 0:
                await rate_limit(self.name, occupy=self.block, strict=True)
                self._allowance = self.block
            self._allowance -= 1
        waited = time.monotonic() - started
        waited += await self.bucket.acquire() if self.bucket else 0.0
        return waited


async def ensure_global_limit(name: str, rate_per_second: float) -> None:
    """Create or update the limit (idempotent): capacity one second's worth, decaying at the rate."""
    import math

    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectAlreadyExists

    async with get_client() as client:
        for attempt in (1, 2):
            try:
                await client.upsert_global_concurrency_limit_by_name(
                    name, max(1, math.ceil(rate_per_second)), slot_decay_per_second=rate_per_second)
                return
            except ObjectAlreadyExists:
                # Prefect's upsert reads, then creates: a worker starting at the same moment created it in
                # between. The second attempt finds it and updates it.
                if attempt == 2:
                    raise


def limiter_for(rate_per_second: float, global_limit: str | None = None):
    """The limiter a run asks for: none, this process's bucket, or a rate shared by every worker."""
    if global_limit and rate_per_second > 0:
        return GlobalRateLimiter(global_limit, rate_per_second)
    return shared_bucket(rate_per_second)
