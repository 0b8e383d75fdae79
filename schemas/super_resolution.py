"""Super-resolution (deprecated): POST /v1.0/vision/super-resolution (reference 5.4)."""
from __future__ import annotations

from .common import ApiSpec, ImageSpec, Param
from .shapes import Wire


class Response(Wire):
    result: str


SPEC = ApiSpec(
    name="super_resolution",
    path="/v1.0/vision/super-resolution",
    # JPEG/PNG/BMP only. The reference states no side limit; the output is scale^2 larger, so we bound the
    # input at 2048 px to keep a x4 result (8192 px) within memory.
    image=ImageSpec(max_side=2048, formats=frozenset({"JPEG", "PNG", "BMP"})),
    input="image_or_file",
    image_out=True,
    params=(
        Param("scale", "int", 3, choices=(3, 4)),
        Param("model", "str", "ESPCN", choices=("ESPCN", "SRCNN")),
    ),
    deprecated=True,
    response=Response,
    empty=Response(result=""),
    tables=("enhanced",),
)
