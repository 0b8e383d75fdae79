"""Engine registry: one slot per API. An API without an engine answers AIS.0007 (service not enabled)."""
from __future__ import annotations

import functools
import logging
import threading
from typing import Any, Callable

from imgrec import schemas
from imgrec.schemas.errors import ApiError

log = logging.getLogger("imgrec.engines")


def _celebrity(registry: "EngineRegistry") -> Any:
    from .celebrity_recognition import CelebrityRecognitionEngine

    celebrity = registry.settings.celebrity
    return CelebrityRecognitionEngine(celebrity.gallery, celebrity.match_distance)


def _simple(module: str, cls: str) -> Callable[["EngineRegistry"], Any]:
    def factory(registry: "EngineRegistry") -> Any:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{module}"), cls)()

    return factory


def _bgm(registry: "EngineRegistry") -> Any:
    from .bgm_recognition import BgmRecognitionEngine

    return BgmRecognitionEngine(registry.settings.bgm.library)


def _analysing(module: str, cls: str) -> Callable[["EngineRegistry"], Any]:
    """Engines built on analysis.py share the registry's Analyser (one pass per image, one copy of the
    bring-your-own models)."""
    def factory(registry: "EngineRegistry") -> Any:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{module}"), cls)(registry.analyser)

    return factory


# API name -> factory(registry). APIs missing here have no engine yet and answer AIS.0007.
FACTORIES: dict[str, Callable[["EngineRegistry"], Any]] = {
    "dark_enhance": _simple("dark_enhance", "DarkEnhanceEngine"),
    "defog": _simple("defog", "DefogEngine"),
    "celebrity_recognition": _celebrity,
    "image_tagging": _analysing("image_tagging", "ImageTaggingEngine"),
    "media_tagging": _analysing("media_tagging", "MediaTaggingEngine"),
    "media_tagging_det": _analysing("media_tagging_det", "MediaTaggingDetEngine"),
    "image_tagging_v1": _analysing("image_tagging_v1", "ImageTaggingV1Engine"),
    "main_object_detection": _analysing("main_object_detection", "MainObjectDetectionEngine"),
    "bgm_recognition": _bgm,
    "super_resolution": _simple("super_resolution", "SuperResolutionEngine"),
    "recapture_detect": _simple("recapture_detect", "RecaptureDetectEngine"),
}


@functools.cache  # once per process: every registry would otherwise reload libc to set the same option
def _keep_large_allocations() -> None:
    """Engines allocate and free multi-megabyte arrays on every image; glibc serves those with mmap/munmap,
    so each image paid fresh page faults. Keeping them in the heap (up to 64 MB) saves that work."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 64 << 20)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 128 << 20)  # M_TRIM_THRESHOLD: give memory back past 128 MB of free heap
    except (OSError, AttributeError):
        pass  # not glibc: nothing to tune


class EngineRegistry:
    """Builds engines lazily (model loading is slow) and once per process."""

    def __init__(self, settings):
        _keep_large_allocations()
        self.settings = settings
        self._engines: dict[str, Any] = {}
        self._lock = threading.Lock()

    @functools.cached_property  # built under self._lock, by the first analysing engine's factory
    def analyser(self) -> Any:
        from .analysis import Analyser
        from .plugins import load_plugins

        return Analyser(tuple(load_plugins(self.settings.models)))

    def enabled(self, api: str) -> bool:
        options = self.settings.engines.get(api, {})
        return api in FACTORIES and options.get("enabled", True)

    def enabled_apis(self) -> list[str]:
        return [name for name in schemas.SPECS if self.enabled(name)]

    def get(self, api: str) -> Any:
        if not self.enabled(api):
            raise ApiError.of("AIS.0007", f"no engine for {api}")
        engine = self._engines.get(api)
        if engine is None:
            with self._lock:
                engine = self._engines.get(api)
                if engine is None:
                    engine = FACTORIES[api](self)
                    self._engines[api] = engine
        return engine

    def warm_up(self, apis: list[str] | None = None) -> None:
        for api in apis or self.enabled_apis():
            self.get(api)
