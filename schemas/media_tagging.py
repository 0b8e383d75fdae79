"""Media image tagging (classification): POST /v2/{project_id}/image/media-tagging (reference 4.1)."""
from __future__ import annotations

from .common import ApiSpec, ImageSpec, Param
from .shapes import I18n, InstanceInt, Wire


class Tag(Wire):
    confidence: str
    type: str
    tag: str
    i18n_tag: I18n
    i18n_type: I18n
    instances: list[InstanceInt] = []  # always empty here: kept for V2 compatibility, per the reference


class Result(Wire):
    tags: list[Tag]


class Response(Wire):
    result: Result


SPEC = ApiSpec(
    name="media_tagging",
    path="/v2/{project_id}/image/media-tagging",
    image=ImageSpec(max_side=10000),
    params=(
        Param("language", "str", "zh", choices=("zh", "en")),
        Param("threshold", "float", 40.0, lo=0, hi=100),
        Param("limit", "int", 10, lo=1, hi=150),
    ),
    response=Response,
    empty=Response(result=Result(tags=[])),
    tables=("tags",),
)
