"""Engine registry: one engine class per API, keyed by the API's spec. An API whose engine is switched off
(`[engines.<api>] enabled = false`) answers AIS.0007 (service not enabled).

To add an API: its contract in `schemas/<api>.py`, its engine class here (`spec = <api>.SPEC`, built as
`Engine(registry)`), and a normalizer named by the spec's first table (`imgrec/tasks/normalize.py`);
`tests/test_structure.py` fails while any piece is missing.
"""
from __future__ import annotations

import functools
import logging
import threading
from typing import TYPE_CHECKING, Any

from imgrec import schemas
from imgrec.schemas.errors import ApiError

from .base import Engine
from .bgm_recognition import BgmRecognitionEngine
from .celebrity_recognition import CelebrityRecognitionEngine
from .dark_enhance import DarkEnhanceEngine
from .defog import DefogEngine
from .main_object_detection import MainObjectDetectionEngine
from .recapture_detect import RecaptureDetectEngine
from .super_resolution import SuperResolutionEngine
from .tagging import ImageTaggingEngine, ImageTaggingV1Engine, MediaTaggingDetEngine, MediaTaggingEngine

if TYPE_CHECKING:
    from .analysis import Analyser

log = logging.getLogger("imgrec.engines")

ENGINES: dict[str, type[Engine]] = {
    cls.spec.name: cls
    for cls in (ImageTaggingEngine, MediaTaggingEngine, MediaTaggingDetEngine, CelebrityRecognitionEngine,
                RecaptureDetectEngine, MainObjectDetectionEngine, ImageTaggingV1Engine, DarkEnhanceEngine,
                DefogEngine, SuperResolutionEngine, BgmRecognitionEngine)
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
    """Builds engines lazily (model loading is slow) and once per registry; owns what they share."""

    def __init__(self, settings):
        _keep_large_allocations()
        self.settings = settings
        self._engines: dict[str, Any] = {}
        self._lock = threading.Lock()

    @functools.cached_property  # built under self._lock, by the first analysing engine
    def analyser(self) -> "Analyser":
        """One analysis pass per image for the five APIs that analyse, and one copy of the
        bring-your-own models (analysis.py)."""
        from .analysis import Analyser
        from .plugins import load_plugins

        return Analyser(tuple(load_plugins(self.settings.models)), models_dir=self.settings.models_dir)

    def enabled(self, api: str) -> bool:
        return api in ENGINES and self.settings.engine(api).enabled

    def enabled_apis(self) -> list[str]:
        return [name for name in schemas.SPECS if self.enabled(name)]

    def problems(self, apis: list[str] | None = None) -> dict[str, str]:
        """What keeps enabled engines from working (missing gallery, model files), found without loading
        them: `imgrec serve` and `imgrec run` refuse to start on these, `/ready` reports them."""
        found = {}
        for api in apis if apis is not None else self.enabled_apis():
            check = getattr(ENGINES[api], "problem", None)  # engines that load nothing have none
            if self.enabled(api) and check is not None and (problem := check(self.settings)):
                found[api] = problem
        return found

    def get(self, api: str) -> Engine:
        if not self.enabled(api):
            raise ApiError.of("AIS.0007", f"no engine for {api}")
        engine = self._engines.get(api)
        if engine is None:
            with self._lock:
                engine = self._engines.get(api)
                if engine is None:
                    try:
                        engine = ENGINES[api](self)
                    except ApiError as err:
                        engine = err
                    except Exception as exc:  # a broken gallery, an unreadable model: the engine is off
                        log.error("engine %s could not start: %s", api, exc)
                        engine = ApiError.of("AIS.0007", f"{api} could not start: {type(exc).__name__}")
                    self._engines[api] = engine
        if isinstance(engine, ApiError):  # kept: the same answer on every call, not a reload per image
            raise ApiError.of(engine.code, engine.detail)
        return engine
