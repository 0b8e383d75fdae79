"""The shared execution path behind the HTTP service and the in-process backend.

parsed request -> engine (AIS.0007 if none) -> input bytes (base64 / upload / URL fetch) -> the image's
header checked against the endpoint's limits, once -> engine in a bounded thread pool -> response model.
"""
from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from imgrec import schemas
from imgrec.connectors.urlfetch import UrlFetcher
from imgrec.schemas.common import ParsedRequest, check_image_info, decode_base64, inspect_image
from imgrec.schemas.errors import ApiError

from .engines import EngineRegistry

log = logging.getLogger("imgrec.recognizer")


class Recognizer:
    def __init__(self, settings, registry: EngineRegistry | None = None, threads: int | None = None):
        self.settings = settings
        self.registry = registry or EngineRegistry(settings)
        fetch = settings.url_fetch
        self.fetcher = UrlFetcher(fetch.allow, fetch.timeout_seconds, fetch.max_redirects)
        self._pool = ThreadPoolExecutor(max_workers=threads or settings.service.engine_threads,
                                        thread_name_prefix="engine")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def input_bytes(self, parsed: ParsedRequest) -> bytes:
        spec = schemas.spec(parsed.api)
        if parsed.image_bytes is not None:
            return parsed.image_bytes
        if parsed.image_b64 is not None:
            if len(parsed.image_b64) >= 64 * 1024:  # megabytes of base64: off the event loop
                return await asyncio.to_thread(decode_base64, parsed.image_b64, spec.image)
            return decode_base64(parsed.image_b64, spec.image)
        assert parsed.url is not None
        return await self.fetcher.fetch(parsed.url, spec.max_url_bytes)

    async def execute(self, parsed: ParsedRequest) -> Any:
        spec = schemas.spec(parsed.api)
        engine = self.registry.get(parsed.api)  # refuse a disabled API before any I/O
        data = await self.input_bytes(parsed)
        if spec.image.formats:  # an image endpoint: its header, once per call path
            if parsed.image_info is None:
                parsed.image_info = inspect_image(data, spec.image)
            else:  # read by the caller (the pipeline's pre-validation): only this endpoint's limits
                check_image_info(parsed.image_info, len(data), spec.image)
        return await self.run_in_pool(engine.run, data, parsed, name=parsed.api)

    async def run_in_pool(self, work, *args, name: str = "fingerprint") -> Any:
        """`work(*args)` on the engine threads; a crash inside is AIS.0505, logged with its traceback."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, work, *args)
        except ApiError:
            raise
        except Exception:
            log.exception("engine %s failed", name)
            raise ApiError.of("AIS.0505") from None
