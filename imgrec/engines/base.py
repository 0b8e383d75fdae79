"""What an engine is: one per API, `run(data, request)` on raw input bytes, returning the endpoint's result."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from schemas.common import ParsedRequest


@dataclass
class ImageOutput:
    """An image-out endpoint's answer; the caller decides between base64 JSON and a raw file response."""

    data: bytes
    format: str  # PIL format name

    @property
    def media_type(self) -> str:
        return {"JPEG": "image/jpeg", "PNG": "image/png", "BMP": "image/bmp", "WEBP": "image/webp"}[self.format]


class Engine(Protocol):
    api: str

    def run(self, data: bytes, request: ParsedRequest) -> Any:
        """Return the endpoint's `Response` model (or an `ImageOutput`). Raise ApiError for bad input."""
