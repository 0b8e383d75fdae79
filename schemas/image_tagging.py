"""Image tagging V2: POST /v2/{project_id}/image/tagging (reference 4.6)."""
from __future__ import annotations

from .common import ApiSpec, ImageSpec, Param
from .shapes import I18n, InstanceFloat, Wire


class Tag(Wire):
    confidence: str
    type: str
    tag: str
    i18n_tag: I18n
    i18n_type: I18n
    instances: list[InstanceFloat] = []


class Result(Wire):
    tags: list[Tag]


class Response(Wire):
    result: Result


SPEC = ApiSpec(
    name="image_tagging",
    path="/v2/{project_id}/image/tagging",
    image=ImageSpec(max_side=4096),
    params=(
        Param("language", "str", "zh", choices=("zh", "en")),
        Param("threshold", "float", 60.0, lo=0, hi=100),
        # The reference gives the range 1-150 but no default; we return up to the maximum.
        Param("limit", "int", 150, lo=1, hi=150),
    ),
    response=Response,
    empty=Response(result=Result(tags=[])),
    tables=("tags", "detections"),
)
