"""Low-light enhancement (deprecated): POST /v1.0/vision/dark-enhance (reference 5.2)."""
from __future__ import annotations

from .common import ApiSpec, ImageSpec, Param
from .shapes import Wire


class Response(Wire):
    result: str  # base64 of the enhanced image


SPEC = ApiSpec(
    name="dark_enhance",
    path="/v1.0/vision/dark-enhance",
    image=ImageSpec(max_side=10000),
    input="image_or_file",
    image_out=True,
    params=(Param("brightness", "float", 0.9, lo=0, hi=1),),
    deprecated=True,
    response=Response,
    empty=Response(result=""),
    tables=("enhanced",),
)
