"""The data contract: request/response schemas of every Image Recognition API, and the pipeline's tables."""
from __future__ import annotations

from types import ModuleType

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

MODULES: dict[str, ModuleType] = {
    m.SPEC.name: m
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
SPECS: dict[str, ApiSpec] = {name: m.SPEC for name, m in MODULES.items()}
# APIs that take an image and answer with recognition results: what a catalog run calls by default.
IMAGE_APIS = tuple(n for n, s in SPECS.items() if s.input != "url_only" and not s.image_out)


def spec(name: str) -> ApiSpec:
    try:
        return SPECS[name]
    except KeyError:
        raise ApiError.of("APIG.0101", f"unknown API {name!r}") from None


def response_model(name: str):
    return MODULES[name].Response


__all__ = ["ApiError", "ApiSpec", "ImageSpec", "Param", "ParsedRequest", "SPECS", "MODULES", "IMAGE_APIS",
           "spec", "response_model"]
