"""The data contract: request/response schemas of every Image Recognition API, and the pipeline's tables.

One module per API, each ending in its `SPEC` (path, parameters, limits, response model, empty answer,
tables). `SPECS` lists them in the reference's order; every other layer keys on these objects.
"""
from __future__ import annotations

from . import (
    bgm_recognition,
    celebrity_recognition,
    dark_enhance,
    defog,
    image_tagging,
    image_tagging_v1,
    main_object_detection,
    media_tagging,
    media_tagging_det,
    recapture_detect,
    super_resolution,
)
from .common import ApiSpec, ImageSpec, Param, ParsedRequest
from .errors import ApiError

SPECS: dict[str, ApiSpec] = {
    m.SPEC.name: m.SPEC
    for m in (
        image_tagging,
        media_tagging,
        media_tagging_det,
        celebrity_recognition,
        recapture_detect,
        main_object_detection,
        image_tagging_v1,
        dark_enhance,
        defog,
        super_resolution,
        bgm_recognition,
    )
}
# APIs that take an image and answer with recognition results: what a catalog run calls by default.
IMAGE_APIS = tuple(n for n, s in SPECS.items() if s.input != "url_only" and not s.image_out)
# APIs a catalog run can call at all: those whose results land in a table.
CATALOG_APIS = tuple(n for n, s in SPECS.items() if s.tables)


def spec(name: str) -> ApiSpec:
    try:
        return SPECS[name]
    except KeyError:
        raise ApiError.of("APIG.0101", f"unknown API {name!r} (known: {', '.join(SPECS)})") from None


__all__ = ["ApiError", "ApiSpec", "ImageSpec", "Param", "ParsedRequest", "SPECS", "IMAGE_APIS", "CATALOG_APIS",
           "spec"]
