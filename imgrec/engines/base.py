"""What an engine is: one per API, `run(data, request)` on raw input bytes, returning the endpoint's result."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol

import numpy as np

from imgrec.schemas.common import ParsedRequest, decode_image, encode_image, inspect_image


@dataclass
class ImageOutput:
    """An image-out endpoint's answer; the caller decides between base64 JSON and a raw file response."""

    data: bytes
    format: str  # PIL format name

    @property
    def media_type(self) -> str:
        return {"JPEG": "image/jpeg", "PNG": "image/png", "BMP": "image/bmp", "WEBP": "image/webp"}[self.format]


def transform_image(data: bytes, spec, fn: Callable[[np.ndarray], np.ndarray]) -> ImageOutput:
    """The image-out endpoints: check, decode, transform, and answer in the input's own format."""
    info = inspect_image(data, spec.image)
    out = fn(decode_image(data, spec.image))
    return ImageOutput(encode_image(out, info.format), info.format)


class Engine(Protocol):
    api: str

    def run(self, data: bytes, request: ParsedRequest) -> Any:
        """Return the endpoint's `Response` model (or an `ImageOutput`). Raise ApiError for bad input."""
