"""Media image tagging (detection): POST /v2/{project_id}/image/media-tagging-det (reference 4.2)."""
from __future__ import annotations

from .common import ApiSpec, ImageSpec, Param
from .shapes import I18n, InstanceInt, Wire


class Tag(Wire):
    """No i18n_type on this endpoint (the SDK's item model has none)."""

    confidence: str
    type: str
    tag: str
    i18n_tag: I18n
    instances: list[InstanceInt] = []


class Result(Wire):
    tags: list[Tag]


class Response(Wire):
    result: Result


SPEC = ApiSpec(
    name="media_tagging_det",
    path="/v2/{project_id}/image/media-tagging-det",
    image=ImageSpec(max_side=10000),
    params=(
        Param("language", "str", "zh", choices=("zh", "en")),
        Param("threshold", "float", 20.0, lo=0, hi=100),
        Param("limit", "int", 10, lo=1, hi=50),
    ),
    response=Response,
    empty=Response(result=Result(tags=[])),
    tables=("tags", "detections"),
)
