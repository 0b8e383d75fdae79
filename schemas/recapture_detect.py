"""Recapture detection: POST /v2/{project_id}/image/recapture-detect (reference 4.5)."""
from __future__ import annotations

from .common import ApiSpec, ImageSpec, Param
from .shapes import Wire

# The wire's `suggestion` is whether the photo may be trusted as first-hand: "true" means NOT recaptured.
# What a reader of a report or gallery is told instead:
RECAPTURED = {"true": "no", "false": "yes", "uncertainty": "uncertain"}


class Detail(Wire):
    label: str
    confidence: str


class Result(Wire):
    suggestion: str
    category: str
    score: str
    detail: list[Detail]


class Response(Wire):
    result: Result


SPEC = ApiSpec(
    name="recapture_detect",
    path="/v2/{project_id}/image/recapture-detect",
    # JPG, PNG, BMP only (no WEBP here, unlike the other endpoints).
    image=ImageSpec(max_side=10000, formats=frozenset({"JPEG", "PNG", "BMP"})),
    # "(0~1), a value outside that range falls back to the default".
    params=(Param("threshold", "float", 0.95, lo=0, hi=1, lo_open=True, hi_open=True, out_of_range="default"),),
    response=Response,
    empty=Response(result=Result(suggestion="true", category="", score="0.5000", detail=[])),
    tables=("recapture",),
)
