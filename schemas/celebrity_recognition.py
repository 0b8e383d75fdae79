"""Celebrity recognition: POST /v2/{project_id}/image/celebrity-recognition (reference 4.3)."""
from __future__ import annotations

from .common import ApiSpec, ImageSpec, Param
from .shapes import Wire

# Faces must be at least 40x40 px (reference); that is the engine's concern, not an input check.
MIN_FACE_SIDE = 40


class FaceDetail(Wire):
    h: int
    w: int
    x: int
    y: int


class Celebrity(Wire):
    confidence: float
    face_detail: FaceDetail
    label: str


class Response(Wire):
    result: list[Celebrity]


SPEC = ApiSpec(
    name="celebrity_recognition",
    path="/v2/{project_id}/image/celebrity-recognition",
    image=ImageSpec(max_side=10000),
    params=(Param("threshold", "float", 0.9, lo=0, hi=1),),
    response=Response,
    empty=Response(result=[]),
    tables=("faces",),
)
