"""Defog (deprecated): POST /v1.0/vision/defog (reference 5.3)."""
from __future__ import annotations

from .common import ApiSpec, ImageSpec, Param
from .shapes import Wire


class Response(Wire):
    result: str


SPEC = ApiSpec(
    name="defog",
    path="/v1.0/vision/defog",
    image=ImageSpec(max_side=10000),
    input="image_or_file",
    image_out=True,
    params=(
        Param("gamma", "float", 1.5, lo=0.1, hi=10),
        Param("natural_look", "bool", True),
    ),
    deprecated=True,
    response=Response,
    empty=Response(result=""),
    tables=("enhanced",),
)
