"""Main-object detection: POST /v3/{project_id}/image/main-object-detection (reference 4.4)."""
from __future__ import annotations

from .common import ApiSpec, ImageSpec, Param
from .shapes import BoxFloat, Wire


class MainObject(Wire):
    label: str
    location: BoxFloat
    confidence: str


class Response(Wire):
    result: list[MainObject]


SPEC = ApiSpec(
    name="main_object_detection",
    path="/v3/{project_id}/image/main-object-detection",
    image=ImageSpec(max_side=10000),
    params=(Param("threshold", "float", 30.0, lo=0, hi=100),),
    response=Response,
    empty=Response(result=[]),
    tables=("main_objects",),
)
