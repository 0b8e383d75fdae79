"""The in-process backend: the service's validation and engines without HTTP (the pipeline's default)."""
from __future__ import annotations

import base64
import time
from typing import Any

from imgrec import schemas
from imgrec.connectors.backend import CallResult, CallWatch, Limiter
from imgrec.schemas.common import ImageInfo
from imgrec.schemas.errors import ApiError
from imgrec.schemas.similar import Fingerprint

from .engines.base import ImageOutput
from .recognizer import Recognizer


class InProcessBackend:
    name = "local"

    def __init__(self, recognizer: Recognizer, limiter: Limiter | None = None):
        self.recognizer = recognizer  # shared by the process's backends (run_backend.py): not closed here
        self.limiter = limiter

    async def call(self, api: str, *, image: bytes | None = None, url: str | None = None,
                   image_info: ImageInfo | None = None, watch: CallWatch | None = None,
                   **params: Any) -> CallResult:
        spec = schemas.spec(api)
        parsed = spec.request(params, image=image, url=url)  # the wire's checks, without building a body
        parsed.image_info = image_info
        waited = await self.limiter.acquire() if self.limiter is not None else 0.0
        started = time.perf_counter()
        if watch is not None and watch.open:
            raise watch.refusal()
        try:
            result = await self.recognizer.execute(parsed)
        except ApiError as err:
            if watch is not None:
                watch.attempt_failed(err)
            raise
        if watch is not None:
            watch.success()
        if isinstance(result, ImageOutput):
            result = spec.response(result=base64.b64encode(result.data).decode("ascii"))
        return CallResult(api=api, response=result, latency_s=time.perf_counter() - started, rate_wait_s=waited)

    async def aclose(self) -> None:
        pass  # the recognizer (engines, models, threads) lives as long as the process


class LocalFingerprinter:
    """Fingerprints on the recognizer's engine threads, from its analyser: an image a tagging API of the
    same process just analysed is not classified again."""

    def __init__(self, recognizer: Recognizer):
        self.recognizer = recognizer

    async def fingerprint(self, image: bytes, image_info: ImageInfo) -> Fingerprint:
        analyser = self.recognizer.registry.analyser
        return await self.recognizer.run_in_pool(analyser.fingerprint, image, image_info)
