"""The one interface the pipeline talks to: cloud / self-hosted over HTTP (`ApiClient`) or in-process.

Both implementations validate with the same `schemas` specs, return the endpoint's typed response model and
raise `ApiError` with the reference's codes, so the pipeline never knows which one it has.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass
class CallResult:
    api: str
    response: Any  # the endpoint's schemas.<api>.Response model
    attempts: int = 1
    latency_s: float = 0.0  # time spent in the backend (network + service), last attempt
    request_id: str = ""
    rate_wait_s: float = 0.0  # time spent waiting for the rate limiter


class Limiter(Protocol):
    async def acquire(self) -> float:
        """Wait for permission to send one request; return the seconds waited."""


class RecognitionBackend(Protocol):
    name: str

    async def call(self, api: str, *, image: bytes | None = None, url: str | None = None,
                   **params: Any) -> CallResult: ...

    async def aclose(self) -> None: ...
