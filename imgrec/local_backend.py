"""The in-process backend: the service's validation and engines without HTTP (the pipeline's default)."""
from __future__ import annotations

import base64
import time
from typing import Any

from imgrec import schemas
from imgrec.connectors.backend import CallResult, Limiter
from imgrec.schemas.common import encoded_size
from imgrec.schemas.errors import ApiError

from .engines.base import ImageOutput
from .recognizer import Recognizer
from .settings import Settings


class InProcessBackend:
    name = "local"

    def __init__(self, settings: Settings | None = None, limiter: Limiter | None = None,
                 recognizer: Recognizer | None = None):
        self.settings = settings or Settings.load()
        self.recognizer = recognizer or Recognizer(self.settings)
        self.limiter = limiter
        self.retries = 0  # nothing transient happens in-process; kept for the same report columns

    def enabled_apis(self) -> list[str]:
        return self.recognizer.registry.enabled_apis()

    async def call(self, api: str, *, image: bytes | None = None, url: str | None = None,
                   image_b64: str | None = None, **params: Any) -> CallResult:
        spec = schemas.spec(api)
        # Same checks as the wire: a body is built and parsed, with the image's encoded size standing in
        # for the base64 text we do not need to produce.
        placeholder = "x" if image is not None else image_b64
        parsed = spec.parse(spec.body_for(image_b64=placeholder, url=url, **params))
        if image is not None:
            if encoded_size(len(image)) > spec.image.max_encoded_bytes:
                raise ApiError.of("AIS.0020")
            parsed.image_b64, parsed.image_bytes = None, image
        waited = await self.limiter.acquire() if self.limiter is not None else 0.0
        started = time.perf_counter()
        result = await self.recognizer.execute(parsed)
        if isinstance(result, ImageOutput):
            result = schemas.response_model(api)(result=base64.b64encode(result.data).decode("ascii"))
        return CallResult(api=api, response=result, latency_s=time.perf_counter() - started, rate_wait_s=waited)

    async def aclose(self) -> None:
        self.recognizer.close()
