"""Service modes for benchmarks and failure tests: gateway throttling, latency simulation, fault injection.

- `[service] rate_limit_per_second`: a gateway-style limit; requests over it get 429 APIG.0308 (a real
  feature: protects a self-hosted service's engines).
- `[simulate]`: no model work. Each request waits the configured latency and answers the endpoint's
  valid empty result (`ApiSpec.empty`: {"result": {"tags": []}}, {"result": []}, ...). For measuring pipelines and clients
  against a known service time, never for real answers: the service logs a warning when it is on.
- `[faults]`: chosen shares of requests answer 429 APIG.0308, 500 AIP.0500, hang past the client's timeout,
  drop the connection, or return truncated JSON.
"""
from __future__ import annotations

import asyncio
import random
import threading
import time

from ..settings import FaultSettings, SimulateSettings


class GatewayLimiter:
    """Token bucket with a one-second burst: a request either gets a token now or is throttled."""

    def __init__(self, rate: float):
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.tokens = self.capacity
        self.updated = time.monotonic()
        self._lock = threading.Lock()

    def allow(self) -> bool:
        with self._lock:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return True
            return False


class FaultInjector:
    def __init__(self, settings: FaultSettings):
        self.settings = settings
        self.random = random.Random(settings.seed)

    def pick(self) -> str | None:
        s = self.settings
        roll = self.random.random()
        for kind, rate in (("429", s.rate_429), ("500", s.rate_500), ("slow", s.rate_slow),
                           ("reset", s.rate_reset), ("bad_json", s.rate_bad_json)):
            if roll < rate:
                return kind
            roll -= rate
        return None


async def simulated_latency(settings: SimulateSettings, rng: random.Random) -> None:
    delay = settings.latency_ms + (rng.uniform(-settings.jitter_ms, settings.jitter_ms) if settings.jitter_ms else 0)
    if delay > 0:
        await asyncio.sleep(delay / 1000.0)
