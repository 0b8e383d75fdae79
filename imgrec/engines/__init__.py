"""Engine registry: one slot per API. An API without an engine answers AIS.0007 (service not enabled)."""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable

import schemas
from schemas.errors import ApiError

log = logging.getLogger("imgrec.engines")


def _dark_enhance(settings) -> Any:
    from .dark_enhance import DarkEnhanceEngine

    return DarkEnhanceEngine()


def _defog(settings) -> Any:
    from .defog import DefogEngine

    return DefogEngine()


def _celebrity(settings) -> Any:
    from .celebrity_recognition import CelebrityRecognitionEngine

    return CelebrityRecognitionEngine(settings.celebrity.gallery, settings.celebrity.match_distance)


# API name -> factory(settings). APIs missing here have no engine yet and answer AIS.0007.
FACTORIES: dict[str, Callable[[Any], Any]] = {
    "dark_enhance": _dark_enhance,
    "defog": _defog,
    "celebrity_recognition": _celebrity,
}


class EngineRegistry:
    """Builds engines lazily (model loading is slow) and once per process."""

    def __init__(self, settings):
        self.settings = settings
        self._engines: dict[str, Any] = {}
        self._lock = threading.Lock()

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
                    engine = FACTORIES[api](self.settings)
                    self._engines[api] = engine
        return engine

    def warm_up(self, apis: list[str] | None = None) -> None:
        for api in apis or self.enabled_apis():
            self.get(api)
