"""Background-music recognition (deprecated): POST /v1.0/bgm/recognition (reference 5.5)."""
from __future__ import annotations

from .common import MB, ApiSpec, ImageSpec
from .shapes import Wire


class Result(Wire):
    audio_name: str


class Response(Wire):
    result: Result


SPEC = ApiSpec(
    name="bgm_recognition",
    path="/v1.0/bgm/recognition",
    input="url_only",
    params=(),
    image=ImageSpec(formats=frozenset()),
    max_url_bytes=65 * MB,  # mp4 only, at most 65 MB
    deprecated=True,
    response=Response,
    empty=Response(result=Result(audio_name="")),
    tables=(),
)
