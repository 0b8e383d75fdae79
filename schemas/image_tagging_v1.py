"""Image tagging V1 (deprecated): POST /v1.0/image/tagging (reference 5.1)."""
from __future__ import annotations

from .common import ApiSpec, ImageSpec, Param
from .shapes import I18n, Wire


class Tag(Wire):
    confidence: float  # a number here, unlike V2's strings
    tag: str
    type: str  # object / scene / concept
    i18n_tag: I18n


class Result(Wire):
    tags: list[Tag]


class Response(Wire):
    result: Result


SPEC = ApiSpec(
    name="image_tagging_v1",
    path="/v1.0/image/tagging",
    image=ImageSpec(min_side=15, max_side=4096),
    params=(
        Param("language", "str", "zh", choices=("zh", "en")),
        Param("limit", "int", 30, lo=1, hi=150),
        # "a value outside (0~100) makes the algorithm take the default".
        Param("threshold", "float", 0.0, lo=0, hi=100, out_of_range="default"),
    ),
    deprecated=True,
    response=Response,
    empty=Response(result=Result(tags=[])),
    tables=("tags",),
)
