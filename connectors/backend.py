"""The one interface the pipeline talks to: cloud / self-hosted over HTTP (`ApiClient`) or in-process.

Both implementations validate with the same `schemas` specs, return the endpoint's typed response model and
raise `ApiError` with the reference's codes, so the pipeline never knows which one it has.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from imgrec.schemas.common import ImageInfo
from imgrec.schemas.errors import ApiError
from imgrec.schemas.similar import Fingerprint


@dataclass
class CallResult:
    api: str
    response: Any  # the endpoint's response model (its ApiSpec.response)
    attempts: int = 1
    latency_s: float = 0.0  # time spent in the backend (network + service), last attempt
    request_id: str = ""
    rate_wait_s: float = 0.0  # time spent waiting for the rate limiter


class Limiter(Protocol):
    """Implementations: `ratelimit.TokenBucket` (one process), `ratelimit.GlobalRateLimiter` (all workers)."""

    async def acquire(self) -> float:
        """Wait for permission to send one request; return the seconds waited."""


class CallWatch(Protocol):
    """Told about every attempt of a call, so that a run stops on an endpoint that cannot answer
    (`tasks/breaker.py`); once `open`, a call in its retry loop stops retrying and raises `refusal()`."""

    @property
    def open(self) -> bool: ...

    @property
    def outage(self) -> bool:
        """Every attempt is failing, and the run still waits for the endpoint: retry past the usual attempts."""

    def success(self) -> None: ...

    def attempt_failed(self, err: ApiError) -> None: ...

    def refusal(self) -> ApiError: ...


class RecognitionBackend(Protocol):
    name: str

    async def call(self, api: str, *, image: bytes | None = None, url: str | None = None,
                   image_info: ImageInfo | None = None, watch: CallWatch | None = None,
                   **params: Any) -> CallResult:
        """`image_info`: the image's header when the caller has read it already (it is not parsed again
        in-process; over HTTP the service reads it on its side). `watch`: told of each attempt."""

    async def aclose(self) -> None: ...


class Fingerprinter(Protocol):
    """Makes an image's fingerprint for near-duplicate search (schemas/similar.py), in this process whatever
    the backend: the in-process one reuses the tagging pass's analysis of the same bytes."""

    async def fingerprint(self, image: bytes, image_info: ImageInfo) -> Fingerprint: ...
